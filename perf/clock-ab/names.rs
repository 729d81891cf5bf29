//! What appending by name costs an insert (issue 14): one-event `Any`
//! inserts into one stream of a fresh store, by id (`append`) and by name
//! (`append_named`), both built the same way (`Transaction::new()` and one
//! append of one event), alternating in one process, ROUNDS rounds of INSERTS
//! each; prints every timing and the medians, in nanoseconds per insert.
//!
//! `cargo run --release --example names_cost -- [ROUNDS] [INSERTS]`, after
//! copying this file to `examples/names_cost.rs` (see `run.sh` for the
//! same treatment across commits).

use hindsight::{ExpectedVersion, MemoryStore, StreamId, StreamName, Transaction};
use std::hint::black_box;
use std::time::Instant;

fn by_id(inserts: u64) -> f64 {
    let store = MemoryStore::<u64>::new();
    let stream = StreamId::new();
    let started = Instant::now();
    for i in 0..inserts {
        black_box(
            store
                .insert(Transaction::new().append(stream, ExpectedVersion::Any, [i]))
                .unwrap(),
        );
    }
    started.elapsed().as_nanos() as f64 / inserts as f64
}

fn by_name(inserts: u64) -> f64 {
    let store = MemoryStore::<u64>::new();
    let name = StreamName::new("order-42").unwrap();
    let started = Instant::now();
    for i in 0..inserts {
        black_box(
            store
                .insert(Transaction::new().append_named(&name, ExpectedVersion::Any, [i]))
                .unwrap(),
        );
    }
    started.elapsed().as_nanos() as f64 / inserts as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(9, |n| n.parse().expect("rounds"));
    let inserts: u64 = args.next().map_or(2_000_000, |n| n.parse().expect("inserts"));
    let (mut ids, mut names) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (id, name) = (by_id(inserts), by_name(inserts));
        println!("round {round} by id {id:.1} ns/insert, by name {name:.1} ns/insert");
        ids.push(id);
        names.push(name);
    }
    println!(
        "median by id {:.1} ns/insert, by name {:.1} ns/insert",
        median(ids),
        median(names)
    );
}
