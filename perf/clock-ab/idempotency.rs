//! What client event ids (idempotent appends, issue 14, rule 29) cost an
//! insert and the store's memory: one-event inserts of a `u64` into one
//! stream of a fresh store, alternating in one process, ROUNDS rounds of
//! INSERTS each:
//!
//! - `none`: `Transaction::new().append(stream, Any, [i])`, no id;
//! - `exact`: `append_with` of `EventData::new(i).with_event_id(id)`,
//!   expecting `Exact` of the previous insert's head (the id checked at
//!   the place the expectation names: nothing stored there, no lookup);
//! - `any`: the same with `Any` (the id looked up in the stream's window
//!   and added to it, evicting one once the window is full);
//! - `resend`: every insert re-sends the store's first transaction (`Any`,
//!   one event with an id): found in the window, compared, the original
//!   `Committed` rebuilt; nothing written.
//!
//! Ids are `Uuid::from_u64_pair(round, i)`, made in the loop. Prints every
//! timing and the medians in nanoseconds per insert, and for each kind the
//! heap bytes the store holds per event once INSERTS are in (live bytes of
//! a counting global allocator, after minus before; the same in every
//! round, printed once; for `resend` per insert, of a store of one event).
//!
//! `cargo run --release --example idempotency_cost -- [ROUNDS] [INSERTS]`,
//! after copying this file to `examples/idempotency_cost.rs`.

use hindsight::{EventData, EventId, ExpectedVersion, MemoryStore, StreamId, Transaction, Uuid};
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
    Exact,
    Any,
    Resend,
}

const KINDS: [Kind; 4] = [Kind::None, Kind::Exact, Kind::Any, Kind::Resend];

/// Nanoseconds per insert, and heap bytes per event the store holds.
fn run(kind: Kind, inserts: u64, round: u64) -> (f64, f64) {
    let before = LIVE.load(Ordering::Relaxed);
    let store = MemoryStore::<u64>::new();
    let stream = StreamId::new();
    let id = |i: u64| EventId::from_uuid(Uuid::from_u64_pair(round, i));
    let with_id = |i: u64, expected| {
        Transaction::new().append_with(stream, expected, [EventData::new(i).with_event_id(id(i))])
    };
    if let Kind::Resend = kind {
        store.insert(with_id(0, ExpectedVersion::Any)).unwrap();
    }
    let started = Instant::now();
    let mut head = None;
    for i in 0..inserts {
        let tx = match kind {
            Kind::None => Transaction::new().append(stream, ExpectedVersion::Any, [i]),
            Kind::Exact => with_id(
                i,
                head.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact),
            ),
            Kind::Any => with_id(i, ExpectedVersion::Any),
            Kind::Resend => with_id(0, ExpectedVersion::Any),
        };
        let committed = black_box(store.insert(tx).unwrap());
        head = committed.stream(stream).map(|head| head.version);
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
            let (ns, held) = run(*kind, inserts, round as u64);
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
