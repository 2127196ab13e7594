//! A principal is stored as its actor's kind and id columns plus a JSON
//! column with its delegation chain; rows written before hold the whole
//! principal in that column, and both read back the same.

use governance_abstractions::provider::{StoredPrincipal, stored_delegation};
use governance_abstractions::{Actor, ActorKind, Principal};
use serde_json::json;

fn read(column: serde_json::Value, kind: &str, id: &str) -> Result<Principal, String> {
    let stored: StoredPrincipal = serde_json::from_value(column).map_err(|e| e.to_string())?;
    stored.into_principal(kind, id.to_owned())
}

#[test]
fn the_column_holds_only_the_delegation_chain() {
    let direct = Principal::direct(Actor::user("ann"));
    assert_eq!(serde_json::to_value(stored_delegation(&direct)).unwrap(), json!({}));
    assert_eq!(read(json!({}), "user", "ann").unwrap(), direct);
    assert_eq!(read(json!({"delegation": []}), "user", "ann").unwrap(), direct);

    let chain = vec![Actor::user("ann"), Actor::new(ActorKind::Agent, "planner")];
    let delegated = Principal::delegated(Actor::service("bot"), chain);
    let column = serde_json::to_value(stored_delegation(&delegated)).unwrap();
    assert_eq!(column, json!({"delegation": [{"kind": "user", "id": "ann"}, {"kind": "agent", "id": "planner"}]}));
    assert_eq!(read(column, "service", "bot").unwrap(), delegated, "the chain in order, the actor from the columns");
}

#[test]
fn a_whole_principal_written_before_reads_back_when_the_columns_agree() {
    let delegated = Principal::delegated(Actor::service("bot"), vec![Actor::user("ann")]);
    let whole = serde_json::to_value(&delegated).unwrap();
    assert_eq!(read(whole.clone(), "service", "bot").unwrap(), delegated);
    // Direct principals were stored without a chain at all in some rows.
    assert_eq!(
        read(json!({"actor": {"kind": "user", "id": "ann"}}), "user", "ann").unwrap(),
        Actor::user("ann").into()
    );

    // The columns are what filters and counts read: a row whose columns name
    // someone else was changed behind the store.
    let other_id = read(whole.clone(), "service", "mallory").unwrap_err();
    assert!(other_id.contains("service:mallory") && other_id.contains("service:bot"), "{other_id}");
    let other_kind = read(whole, "user", "bot").unwrap_err();
    assert!(other_kind.contains("user:bot"), "{other_kind}");
}

#[test]
fn the_delegation_only_form_is_refused_where_a_whole_principal_is_expected() {
    // What a reader from before this form does with it: an error, not the
    // delegator taken for the actor.
    let column =
        serde_json::to_value(stored_delegation(&Principal::delegated(Actor::service("bot"), vec![Actor::user("ann")])))
            .unwrap();
    assert!(serde_json::from_value::<Principal>(column).is_err());
    let direct = serde_json::to_value(stored_delegation(&Actor::user("ann").into())).unwrap();
    assert!(serde_json::from_value::<Principal>(direct).is_err(), "nor a direct one");
}

#[test]
fn a_column_that_is_neither_is_refused() {
    assert!(read(json!({"delegation": []}), "robot", "x").is_err(), "an unknown actor kind");
    assert!(read(json!("ann"), "user", "ann").is_err(), "a string");
    assert!(read(json!(null), "user", "ann").is_err(), "null");
    assert!(read(json!({"delegation": [{"kind": "user"}]}), "user", "ann").is_err(), "a chain entry without an id");
    assert!(read(json!({"delegation": [], "extra": 1}), "user", "ann").is_err(), "an unknown field");
    assert!(read(json!({"delegation": "ann"}), "user", "ann").is_err(), "a chain that is not a list");
}
