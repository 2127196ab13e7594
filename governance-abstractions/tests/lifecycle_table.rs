//! The lifecycle table in code and in docs/lifecycle.md must be the same.

use std::collections::BTreeSet;

use governance_abstractions::RequestStatus;
use governance_abstractions::lifecycle::{MOVES, is_allowed_move};

fn documented_moves() -> BTreeSet<(String, String)> {
    let doc = include_str!("../../docs/lifecycle.md");
    let section = doc.split("## Allowed moves").nth(1).expect("docs/lifecycle.md has an 'Allowed moves' section");
    section
        .lines()
        .skip_while(|line| !line.starts_with("| from"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            (cells[1].to_owned(), cells[2].to_owned())
        })
        .collect()
}

#[test]
fn docs_list_exactly_the_moves_in_code() {
    let code: BTreeSet<(String, String)> =
        MOVES.iter().map(|(from, to)| (from.as_str().to_owned(), to.as_str().to_owned())).collect();
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
        for (from, to) in MOVES {
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
