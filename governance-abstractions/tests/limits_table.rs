//! The limits in code and in docs/schema.md must be the same: users size
//! their input by the documented table.

use std::collections::BTreeMap;

use governance_abstractions::limits::*;

fn documented_limits() -> BTreeMap<String, u64> {
    let doc = include_str!("../../docs/schema.md");
    let section = doc.split("## Limits").nth(1).expect("docs/schema.md has a 'Limits' section");
    section
        .lines()
        .skip_while(|line| !line.starts_with("| limit"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let value = cells[2].parse().unwrap_or_else(|_| panic!("{:?} is not a number", cells[2]));
            (cells[1].trim_matches('`').to_owned(), value)
        })
        .collect()
}

#[test]
fn docs_list_exactly_the_limits_in_code() {
    let code: BTreeMap<String, u64> = [
        ("MAX_IDENTIFIER_BYTES", MAX_IDENTIFIER_BYTES as u64),
        ("MAX_TEXT_BYTES", MAX_TEXT_BYTES as u64),
        ("MAX_JSON_BYTES", MAX_JSON_BYTES as u64),
        ("MAX_LIST_ITEMS", MAX_LIST_ITEMS as u64),
        ("MAX_DELEGATION_DEPTH", MAX_DELEGATION_DEPTH as u64),
        ("MAX_JSON_DEPTH", MAX_JSON_DEPTH as u64),
        ("MAX_BATCH_RECORDS", MAX_BATCH_RECORDS as u64),
        ("MAX_BATCH_BYTES", MAX_BATCH_BYTES as u64),
        ("MAX_SAFE_INTEGER", MAX_SAFE_INTEGER as u64),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    assert_eq!(documented_limits(), code);
}
