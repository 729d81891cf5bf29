//! Subscriptions: catch-up over 1M stored events (all streams, and one
//! stream that holds half of them) beside the read limit (a plain slice
//! scan), and what waking parked subscribers costs a writer.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hindsight::{ExpectedVersion, MemoryStore, Selector, Start, StreamId, Transaction};
use hindsight_benches::{criterion, quick, store, streams, Payload};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const STORED: u64 = 1_000_000;

/// A store of `STORED` events in 100-event transactions; every other
/// transaction goes to `hot`, the rest spread over 100 other streams.
fn filled(hot: StreamId) -> MemoryStore<Payload> {
    let store = store();
    let others = streams(100);
    for tx in 0..STORED / 100 {
        let stream = if tx % 2 == 0 {
            hot
        } else {
            others[(tx / 2) as usize % others.len()]
        };
        let events = (0..100).map(|i| Payload::new(0, tx * 100 + i));
        store
            .insert(Transaction::new().append(stream, ExpectedVersion::Any, events))
            .unwrap();
    }
    store
}

/// Folds what a reader would look at in each event.
#[inline]
fn touch(sum: u64, position: u64, payload: &Payload) -> u64 {
    sum.wrapping_add(position ^ payload.0[1])
}

fn catch_up(c: &mut Criterion) {
    let hot = StreamId::new();
    let store = filled(hot);
    let slice: Vec<(u64, Payload)> = store
        .read_all(Start::Beginning)
        .map(|e| (e.position().get(), *e.payload()))
        .collect();

    let mut group = c.benchmark_group("catch-up/all-streams");
    group.throughput(Throughput::Elements(STORED));
    group.bench_function("subscription", |b| {
        b.iter(|| {
            let mut subscription = store.subscribe(Selector::all());
            let mut sum = 0;
            while let Some(event) = subscription.try_next().unwrap() {
                sum = touch(sum, event.position().get(), event.payload());
            }
            black_box(sum)
        })
    });
    group.bench_function("read_all", |b| {
        b.iter(|| {
            black_box(
                store
                    .read_all(Start::Beginning)
                    .fold(0, |sum, e| touch(sum, e.position().get(), e.payload())),
            )
        })
    });
    group.bench_function("slice-scan", |b| {
        b.iter(|| {
            black_box(
                slice
                    .iter()
                    .fold(0, |sum, (position, payload)| touch(sum, *position, payload)),
            )
        })
    });
    group.finish();

    let mut group = c.benchmark_group("catch-up/one-stream");
    group.throughput(Throughput::Elements(STORED / 2));
    group.bench_function("subscription", |b| {
        b.iter(|| {
            let mut subscription = store.subscribe(Selector::stream(hot));
            let mut sum = 0;
            while let Some(event) = subscription.try_next().unwrap() {
                sum = touch(sum, event.position().get(), event.payload());
            }
            black_box(sum)
        })
    });
    group.bench_function("read_stream", |b| {
        b.iter(|| {
            black_box(
                store
                    .read_stream(hot, Default::default())
                    .fold(0, |sum, e| touch(sum, e.position().get(), e.payload())),
            )
        })
    });
    group.bench_function("slice-scan", |b| {
        let hot_slice: Vec<(u64, Payload)> = store
            .read_stream(hot, Default::default())
            .map(|e| (e.position().get(), *e.payload()))
            .collect();
        b.iter(|| {
            black_box(
                hot_slice
                    .iter()
                    .fold(0, |sum, (position, payload)| touch(sum, *position, payload)),
            )
        })
    });
    group.finish();
}

/// One writer inserting 1-event transactions while `parked` subscribers
/// wait on a stream nobody writes: every commit moves the watermark, so
/// each one wakes them all, and they re-park.
fn notify_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("notify-cost/insert-1-event");
    group.throughput(Throughput::Elements(1));
    for parked in [0usize, 1, 16] {
        group.bench_function(BenchmarkId::new("parked-subscribers", parked), |b| {
            b.iter_custom(|iters| {
                let store = store();
                let stop = AtomicBool::new(false);
                let idle = StreamId::new();
                let stream = StreamId::new();
                std::thread::scope(|scope| {
                    for _ in 0..parked {
                        let (store, stop) = (&store, &stop);
                        scope.spawn(move || {
                            let mut subscription = store.subscribe(Selector::stream(idle));
                            while !stop.load(Ordering::Relaxed) {
                                black_box(
                                    subscription
                                        .next_timeout(Duration::from_millis(5))
                                        .unwrap()
                                        .is_some(),
                                );
                            }
                        });
                    }
                    // Let them reach the parked state before timing.
                    std::thread::sleep(Duration::from_millis(if quick() { 20 } else { 50 }));
                    let started = Instant::now();
                    for i in 0..iters {
                        store
                            .insert(Transaction::single(
                                stream,
                                ExpectedVersion::Any,
                                Payload::new(0, i),
                            ))
                            .unwrap();
                    }
                    let elapsed = started.elapsed();
                    stop.store(true, Ordering::Relaxed);
                    elapsed
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = catch_up, notify_cost
}
criterion_main!(benches);
