//! The conformance kit (`hindsight::testkit`) against `MemoryStore`: one
//! `#[test]` per case, each with fresh stores from the factory below.
//!
//! `cargo test` builds this with the `testkit` feature on: the crate's
//! dev-dependency on itself turns it on for its own tests (Cargo.toml).
//! The kit's cases and the rules of the contract (`src/contract.md`) each
//! checks are listed in `hindsight::testkit::CASES`.

use hindsight::testkit::TestEvent;
use hindsight::MemoryStore;

hindsight::conformance_tests!(|| async { MemoryStore::<TestEvent>::new() });

/// The kit knows every case this file runs: `CASES` and the macro are made
/// from one list, and together they cover rules 1 to 25, 27 to 30, 32 and 33, the
/// ones every backend keeps. (Rules 26 and 29 to 31 are newer: the contract
/// says which are kept, and the memory store's own tests check those.)
#[test]
fn the_kit_covers_every_rule_every_backend_keeps() {
    let cases = hindsight::testkit::CASES;
    let covered: std::collections::BTreeSet<u8> = cases
        .iter()
        .flat_map(|case| case.rules.iter().copied())
        .collect();
    assert_eq!(covered, (1..=25).chain([27, 28, 29, 30, 32, 33]).collect());
    assert!(cases.len() >= 30);
}
