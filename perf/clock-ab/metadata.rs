//! What per-event metadata costs an insert and the store's memory (issue
//! 14, rule 33): one-event `Any` inserts of a `u64` into one stream of a
//! fresh store, alternating in one process, ROUNDS rounds of INSERTS each:
//!
//! - `none`: `Transaction::new().append(stream, Any, [i])`;
//! - `plain`: `append_with` of an `EventData` without metadata (the path
//!   of `append_with` when unused);
//! - `causation`: `append_with`, the event with a causation id;
//! - `headers`: `append_with`, the event with two headers (`"user": "ada"`,
//!   `"source": "api"`), the `Metadata` built in the loop as a caller does.
//!
//! Prints every timing and the medians in nanoseconds per insert, and for
//! each kind the heap bytes the store holds per event once INSERTS are in
//! (live bytes of a counting global allocator, after minus before; the
//! same in every round, printed once). The counting allocator is on for the
//! timings too: it adds two relaxed atomic adds per allocation, which only
//! the kinds with metadata make.
//!
//! `cargo run --release --example metadata_cost -- [ROUNDS] [INSERTS]`,
//! after copying this file to `examples/metadata_cost.rs`.

use hindsight::{
    CausationId, EventData, ExpectedVersion, MemoryStore, Metadata, StreamId, Transaction,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

/// The system allocator, counting live bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; the count is a
// side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Relaxed: a statistic, read on this thread after the work.
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Relaxed: as above.
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Clone, Copy, Debug)]
enum Kind {
    None,
    Plain,
    Causation,
    Headers,
}

const KINDS: [Kind; 4] = [Kind::None, Kind::Plain, Kind::Causation, Kind::Headers];

/// Nanoseconds per insert, and heap bytes per event the store holds.
fn run(kind: Kind, inserts: u64) -> (f64, f64) {
    let before = LIVE.load(Ordering::Relaxed);
    let store = MemoryStore::<u64>::new();
    let stream = StreamId::new();
    let cause = CausationId::new();
    let started = Instant::now();
    for i in 0..inserts {
        let tx = match kind {
            Kind::None => Transaction::new().append(stream, ExpectedVersion::Any, [i]),
            Kind::Plain => {
                Transaction::new().append_with(stream, ExpectedVersion::Any, [EventData::new(i)])
            }
            Kind::Causation => Transaction::new().append_with(
                stream,
                ExpectedVersion::Any,
                [EventData::new(i).with_causation_id(cause)],
            ),
            Kind::Headers => {
                let metadata = Metadata::new()
                    .with_header("user", "ada")
                    .and_then(|m| m.with_header("source", "api"))
                    .expect("valid headers");
                Transaction::new().append_with(
                    stream,
                    ExpectedVersion::Any,
                    [EventData::new(i).with_metadata(metadata)],
                )
            }
        };
        black_box(store.insert(tx).unwrap());
    }
    let ns = started.elapsed().as_nanos() as f64 / inserts as f64;
    let bytes = (LIVE.load(Ordering::Relaxed) - before) as f64 / inserts as f64;
    drop(store);
    (ns, bytes)
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
    let inserts: u64 = args.next().map_or(1_000_000, |n| n.parse().expect("inserts"));
    let mut timings: Vec<Vec<f64>> = vec![Vec::new(); KINDS.len()];
    let mut bytes = vec![0.0; KINDS.len()];
    for round in 1..=rounds {
        let mut line = format!("round {round}");
        for (k, kind) in KINDS.iter().enumerate() {
            let (ns, held) = run(*kind, inserts);
            line += &format!(", {kind:?} {ns:.1} ns");
            timings[k].push(ns);
            bytes[k] = held;
        }
        println!("{line}");
    }
    for (k, kind) in KINDS.iter().enumerate() {
        println!(
            "{kind:?}: median {:.1} ns/insert, {:.1} heap bytes/event",
            median(timings[k].clone()),
            bytes[k]
        );
    }
}
