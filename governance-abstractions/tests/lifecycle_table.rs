//! The lifecycle table in code and in docs/lifecycle.md must be the same.

use std::collections::BTreeSet;

use governance_abstractions::ActionKind;
use governance_abstractions::RequestStatus;
use governance_abstractions::lifecycle::{MOVES, is_allowed, is_allowed_move};

/// The action names of a table cell: "submit (re-route), decide (not the last
/// approval), annotate" → submit, decide, annotate.
fn actions_of(cell: &str) -> BTreeSet<String> {
    let mut plain = String::new();
    let mut depth = 0;
    for c in cell.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    plain.split(',').filter_map(|item| item.split_whitespace().next()).map(str::to_owned).collect()
}

fn documented_moves() -> BTreeSet<(String, String, BTreeSet<String>)> {
    let doc = include_str!("../../docs/lifecycle.md");
    let section = doc.split("## Allowed moves").nth(1).expect("docs/lifecycle.md has an 'Allowed moves' section");
    section
        .lines()
        .skip_while(|line| !line.starts_with("| from"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells[1].to_owned(), cells[2].to_owned(), actions_of(cells[3]))
        })
        .collect()
}

#[test]
fn docs_list_exactly_the_moves_in_code() {
    let code: BTreeSet<(String, String, BTreeSet<String>)> = MOVES
        .iter()
        .map(|(from, to, actions)| {
            let actions = actions.iter().map(|a| a.as_str().to_owned()).collect();
            (from.as_str().to_owned(), to.as_str().to_owned(), actions)
        })
        .collect();
    assert_eq!(documented_moves(), code);
}

#[test]
fn nothing_leaves_a_terminal_status() {
    for from in RequestStatus::ALL.iter().copied().filter(|s| s.is_terminal()) {
        for to in RequestStatus::ALL {
            assert!(!is_allowed_move(from, *to), "{from} → {to} must not be allowed");
        }
    }
}

#[test]
fn every_status_is_reachable_from_created() {
    let mut reached = BTreeSet::from([RequestStatus::Created]);
    loop {
        let before = reached.len();
        for (from, to, _) in MOVES {
            if reached.contains(from) {
                reached.insert(*to);
            }
        }
        if reached.len() == before {
            break;
        }
    }
    assert_eq!(reached.len(), RequestStatus::ALL.len());
}

#[test]
fn every_action_of_the_table_is_a_known_kind_and_moves_are_listed_once() {
    let mut seen = BTreeSet::new();
    for (from, to, actions) in MOVES {
        assert!(seen.insert((*from, *to)), "{from} → {to} listed twice");
        assert!(!actions.is_empty(), "{from} → {to} names no action");
        for action in *actions {
            assert!(is_allowed(*from, *to, *action));
            assert!(ActionKind::ALL.contains(action));
        }
    }
    assert!(!is_allowed(RequestStatus::Approved, RequestStatus::Pending, ActionKind::Submit));
    assert!(is_allowed(RequestStatus::Approved, RequestStatus::Pending, ActionKind::Execute));
}

#[test]
fn a_move_is_allowed_exactly_when_some_action_of_the_table_makes_it() {
    for from in RequestStatus::ALL {
        for to in RequestStatus::ALL {
            let by_some_action = ActionKind::ALL.iter().any(|action| is_allowed(*from, *to, *action));
            assert_eq!(is_allowed_move(*from, *to), by_some_action, "{from} → {to}");
        }
    }
    assert!(is_allowed_move(RequestStatus::Created, RequestStatus::Pending));
    assert!(!is_allowed_move(RequestStatus::Pending, RequestStatus::Created));
}
