//! What a maximum age (rule 30 of the contract, `set_max_age`) costs `read_all` on the
//! memory store: 1,000,000 events in 100-event transactions round-robin
//! over 100 streams (the catch-up benchmark's shape, without its hot
//! stream), read in full, in four stores built the same way:
//!
//! - `nothing removed`: no stream was ever limited (the store-wide flag is
//!   0: no event's stream is looked at);
//! - `one truncation`: one extra stream was truncated, so every event's
//!   stream floor is checked (what the lifecycle costs without an age);
//! - `age on one stream`: one extra stream has a maximum age, so every
//!   event's floor and stream age are checked (one more load);
//! - `age on every stream`: every stream has a maximum age (one hour: no
//!   event is hidden), so every event also reads its `created_at` and the
//!   clock.
//!
//! ```sh
//! cargo run --release --example max_age_cost          # 21 reads per store
//! cargo run --release --example max_age_cost -- 51    # more
//! ```
//!
//! It prints each store's median read time and rate, and the ratios of the
//! medians to the first row's. The stores' reads are interleaved, round
//! by round, so that the machine's load falls on every row alike.

use hindsight::{ExpectedVersion, MemoryStore, Start, StreamId, StreamVersion, Transaction};
use std::hint::black_box;
use std::time::{Duration, Instant};

const EVENTS: u64 = 1_000_000;
const PER_TRANSACTION: u64 = 100;
const STREAMS: usize = 100;

type Store = MemoryStore<[u64; 4]>;

/// A store holding the events, and what is done to it before reading.
fn store(setup: &dyn Fn(&Store, &[StreamId])) -> Store {
    let store = MemoryStore::new();
    let streams: Vec<StreamId> = (0..STREAMS).map(|_| StreamId::new()).collect();
    for t in 0..EVENTS / PER_TRANSACTION {
        let stream = streams[t as usize % STREAMS];
        let events = (0..PER_TRANSACTION).map(|i| [t * PER_TRANSACTION + i, 0, 0, 0]);
        store
            .insert(Transaction::new().append(stream, ExpectedVersion::Any, events))
            .unwrap();
    }
    setup(&store, &streams);
    store
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("the number of reads per store"))
        .unwrap_or(21);
    let hour = Some(Duration::from_secs(3_600));
    let extra = |store: &Store| {
        let other = StreamId::new();
        store
            .insert(Transaction::single(other, ExpectedVersion::Any, [0; 4]))
            .unwrap();
        other
    };
    let stores: Vec<(&str, Store)> = vec![
        ("nothing removed", store(&|_, _| {})),
        (
            "one truncation",
            store(&|store, _| {
                let other = extra(store);
                store.truncate_stream(other, StreamVersion(1)).unwrap();
            }),
        ),
        (
            "age on one stream",
            store(&|store, _| {
                let other = extra(store);
                store.set_max_age(other, hour).unwrap();
            }),
        ),
        (
            "age on every stream",
            store(&|store, streams| {
                for &stream in streams {
                    store.set_max_age(stream, hour).unwrap();
                }
            }),
        ),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); stores.len()];
    for _ in 0..rounds {
        for ((_, store), times) in stores.iter().zip(&mut times) {
            let started = Instant::now();
            let mut sum = 0u64;
            for event in store.read_all(Start::Beginning) {
                sum = sum.wrapping_add(event.payload()[0]);
            }
            times.push(started.elapsed());
            black_box(sum);
        }
    }
    let medians: Vec<Duration> = times
        .iter_mut()
        .map(|times| {
            times.sort();
            times[times.len() / 2]
        })
        .collect();
    println!("read_all of {EVENTS} events, median of {rounds} reads per store:");
    for ((name, store), median) in stores.iter().zip(&medians) {
        let read = store.read_all(Start::Beginning).count() as f64;
        println!(
            "  {name:<20} {:>8.2} ms  {:>6.1} M events/s  {:.2}x the first row's time",
            median.as_secs_f64() * 1e3,
            read / median.as_secs_f64() / 1e6,
            median.as_secs_f64() / medians[0].as_secs_f64(),
        );
    }
}
