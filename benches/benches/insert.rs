//! Insert throughput: 1 thread with 1-, 10- and 100-event transactions, and
//! 2 threads on distinct streams and on one stream, each beside the append
//! limit (an unsynchronised `Vec::push` of the same events).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hindsight::{ExpectedVersion, Transaction};
use hindsight_benches::{criterion, store, streams, time_threads, Payload};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Inserts `events` events in `tx_size`-event transactions from `threads`
/// threads, each on its own stream (or all on one), into a fresh store.
fn insert(threads: usize, tx_size: u64, events: u64, one_stream: bool) -> Duration {
    let store = store();
    let ids = streams(threads);
    let per_thread = (events / threads as u64).div_ceil(tx_size).max(1);
    let elapsed = time_threads(threads, |thread| {
        let stream = if one_stream { ids[0] } else { ids[thread] };
        for tx in 0..per_thread {
            let events = (0..tx_size).map(|i| Payload::new(thread as u64, tx * tx_size + i));
            black_box(
                store
                    .insert(Transaction::new().append(stream, ExpectedVersion::Any, events))
                    .unwrap(),
            );
        }
    });
    drop(store); // outside the timing
    elapsed
}

/// The append limit: the same events pushed onto a plain `Vec`.
fn vec_push(tx_size: u64, events: u64) -> Duration {
    let mut log: Vec<(u64, Payload)> = Vec::new();
    let started = Instant::now();
    for tx in 0..events.div_ceil(tx_size) {
        for i in 0..tx_size {
            log.push((tx * tx_size + i, Payload::new(0, tx * tx_size + i)));
        }
    }
    let elapsed = started.elapsed();
    black_box(&log);
    elapsed
}

fn one_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert/1-thread");
    for tx_size in [1u64, 10, 100] {
        group.throughput(Throughput::Elements(tx_size));
        group.bench_function(BenchmarkId::new("hindsight", tx_size), |b| {
            b.iter_custom(|iters| insert(1, tx_size, iters * tx_size, false))
        });
        group.bench_function(BenchmarkId::new("vec-push", tx_size), |b| {
            b.iter_custom(|iters| vec_push(tx_size, iters * tx_size))
        });
    }
    group.finish();
}

fn two_threads(c: &mut Criterion) {
    for (name, one_stream) in [
        ("insert/2-threads-distinct-streams", false),
        ("insert/2-threads-one-stream", true),
    ] {
        let mut group = c.benchmark_group(name);
        for tx_size in [1u64, 100] {
            group.throughput(Throughput::Elements(tx_size));
            group.bench_function(BenchmarkId::new("hindsight", tx_size), |b| {
                // `iters` transactions in all, split over the threads.
                b.iter_custom(|iters| insert(2, tx_size, iters * tx_size, one_stream))
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = one_thread, two_threads
}
criterion_main!(benches);
