//! One timing of the insert path, for `perf/clock-ab/run.sh`: one-event
//! `Any` inserts into one stream of a fresh store with the default clock,
//! printed as nanoseconds per insert. Uses only API that exists both
//! before and after the monotone `created_at` (commit a550304), so the
//! same file builds against either tree.

use hindsight::{ExpectedVersion, MemoryStore, StreamId, Transaction};
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let inserts: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("the number of inserts"))
        .unwrap_or(2_000_000);
    let store = MemoryStore::<u64>::new();
    let stream = StreamId::new();
    let started = Instant::now();
    for i in 0..inserts {
        black_box(
            store
                .insert(Transaction::single(stream, ExpectedVersion::Any, i))
                .unwrap(),
        );
    }
    let elapsed = started.elapsed();
    println!("{:.1}", elapsed.as_nanos() as f64 / inserts as f64);
}
