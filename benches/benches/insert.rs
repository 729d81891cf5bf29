//! Insert throughput of every contender, in the same criterion groups as
//! the limits: 1 thread with 1-, 10- and 100-event transactions; 2 threads
//! on distinct streams and on one stream; 8 and 32 threads on distinct
//! streams (oversubscribed on small machines: spinning must not collapse
//! throughput); and 4-stream transactions with exact expectations.
//!
//! Every sample writes into a fresh store, dropped outside the timing.
//! Streams roll over every `ROLLOVER` transactions (see `stream_index`), so
//! a contender whose append cost grows with the stream's length is measured
//! at a bounded, stated length rather than at whatever length criterion's
//! iteration count happens to reach.

mod harness;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use harness::contender::{check_multi_stream, check_streams, Contender, MultiStream};
use harness::contenders::{
    cqrs_es::CqrsEs, eventcore::Eventcore, eventually::Eventually, locked::Locked, seed::Seed,
};
use harness::limits;
use harness::{criterion, time_threads, Payload};
use hindsight::MemoryStore;
use std::hint::black_box;
use std::time::Duration;

/// Transactions a thread writes to one stream before moving to the next.
const ROLLOVER: u64 = 1_000;

/// The stream `thread` writes its `tx`-th transaction to; with `shared`,
/// every thread writes to the same streams.
fn stream_index(thread: usize, tx: u64, shared: bool) -> u64 {
    let owner = if shared { 0 } else { thread as u64 + 1 };
    (owner << 32) | (tx / ROLLOVER)
}

/// The events of one transaction: `size` payloads naming the writer and
/// their sequence numbers.
fn events(thread: usize, tx: u64, size: u64) -> Vec<Payload> {
    (0..size)
        .map(|i| Payload::new(thread as u64, tx * size + i))
        .collect()
}

/// `txs` transactions of `size` events, split over `threads` threads, into
/// a fresh `C`.
fn insert<C: Contender>(threads: usize, size: u64, txs: u64, shared: bool) -> Duration {
    let store = C::new();
    let per_thread = txs.div_ceil(threads as u64).max(1);
    // The payloads are built before the clock starts, as a caller's events
    // would be; each contender copies them into its own representation.
    let batches: Vec<Vec<Payload>> = (0..threads).map(|t| events(t, 0, size)).collect();
    let elapsed = time_threads(threads, |thread| {
        let batch = &batches[thread];
        let mut stream = store.stream(stream_index(thread, 0, shared));
        for tx in 0..per_thread {
            if tx % ROLLOVER == 0 && tx > 0 {
                stream = store.stream(stream_index(thread, tx, shared));
            }
            store.append(&stream, black_box(batch));
        }
    });
    drop(store);
    elapsed
}

/// `txs` transactions that each append one event to 4 streams, every
/// stream expected at its exact length; each thread owns its 4 streams, so
/// nothing conflicts.
fn insert_exact<C: MultiStream>(threads: usize, txs: u64) -> Duration {
    let store = C::new();
    let per_thread = txs.div_ceil(threads as u64).max(1);
    let elapsed = time_threads(threads, |thread| {
        let event = [Payload::new(thread as u64, 0)];
        let mut streams: Vec<C::Stream> = Vec::new();
        let mut len = 0;
        for tx in 0..per_thread {
            if tx % ROLLOVER == 0 {
                streams = (0..4)
                    .map(|s| store.stream(stream_index(thread, tx, false) << 2 | s))
                    .collect();
                len = 0;
            }
            let writes: Vec<(&C::Stream, u64, &[Payload])> =
                streams.iter().map(|s| (s, len, &event[..])).collect();
            assert!(
                store.append_exact(&writes),
                "{}: no writer shares these streams",
                C::NAME
            );
            len += 1;
        }
    });
    drop(store);
    elapsed
}

fn bench<C: Contender>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    threads: usize,
    size: u64,
    shared: bool,
) {
    group.bench_function(BenchmarkId::new(C::NAME, size), |b| {
        b.iter_custom(|iters| insert::<C>(threads, size, iters, shared))
    });
}

fn contenders(group: &mut BenchmarkGroup<'_, WallTime>, threads: usize, size: u64, shared: bool) {
    group.throughput(Throughput::Elements(size));
    bench::<MemoryStore<Payload>>(group, threads, size, shared);
    bench::<Locked>(group, threads, size, shared);
    bench::<Seed>(group, threads, size, shared);
    bench::<Eventcore>(group, threads, size, shared);
    bench::<Eventually>(group, threads, size, shared);
    bench::<CqrsEs>(group, threads, size, shared);
}

/// The transport-only upper bounds, for writers on distinct streams.
fn transports(group: &mut BenchmarkGroup<'_, WallTime>, threads: usize, size: u64) {
    group.bench_function(BenchmarkId::new("crossbeam-channel", size), |b| {
        b.iter_custom(|iters| limits::channel(threads, size, iters))
    });
    group.bench_function(BenchmarkId::new("disruptor", size), |b| {
        b.iter_custom(|iters| limits::disruptor(threads, size, iters))
    });
}

fn one_thread(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert/1-thread");
    for size in [1u64, 10, 100] {
        contenders(&mut group, 1, size, false);
        group.bench_function(BenchmarkId::new("vec-push", size), |b| {
            b.iter_custom(|iters| limits::vec_push(size, iters))
        });
        transports(&mut group, 1, size);
    }
    group.finish();
}

fn threads(c: &mut Criterion) {
    for threads in [2usize, 8, 32] {
        let mut group = c.benchmark_group(format!("insert/{threads}-threads-distinct-streams"));
        for size in [1u64, 100] {
            contenders(&mut group, threads, size, false);
            transports(&mut group, threads, size);
        }
        group.finish();
    }
    let mut group = c.benchmark_group("insert/2-threads-one-stream");
    for size in [1u64, 100] {
        contenders(&mut group, 2, size, true);
    }
    group.finish();
}

fn exact(c: &mut Criterion) {
    for threads in [1usize, 2] {
        let mut group = c.benchmark_group(format!("insert/4-stream-exact-{threads}-threads"));
        group.throughput(Throughput::Elements(4));
        fn one<C: MultiStream>(group: &mut BenchmarkGroup<'_, WallTime>, threads: usize) {
            group.bench_function(C::NAME, |b| {
                b.iter_custom(|iters| insert_exact::<C>(threads, iters))
            });
        }
        one::<MemoryStore<Payload>>(&mut group, threads);
        one::<Locked>(&mut group, threads);
        one::<Seed>(&mut group, threads);
        one::<Eventcore>(&mut group, threads);
        group.finish();
    }
}

fn checks(_: &mut Criterion) {
    check_streams::<MemoryStore<Payload>>();
    check_streams::<Locked>();
    check_streams::<Seed>();
    check_streams::<Eventcore>();
    check_streams::<Eventually>();
    check_streams::<CqrsEs>();
    check_multi_stream::<MemoryStore<Payload>>();
    check_multi_stream::<Locked>();
    check_multi_stream::<Seed>();
    check_multi_stream::<Eventcore>();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = checks, one_thread, threads, exact
}
criterion_main!(benches);
