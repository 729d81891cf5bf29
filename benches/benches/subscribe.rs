//! Subscriptions and reads: catch-up over 1M stored events (all streams,
//! and one stream holding half of them) for every contender beside the read
//! limit (a plain slice scan); live delivery to 1, 4 and 16 subscribers
//! while a writer inserts; and what waking parked subscribers costs a
//! Hindsight writer.

mod harness;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use futures_core::Stream;
use harness::contender::{
    check_global_read, check_subscribe, Contender, GlobalRead, Subscribe, Subscription,
};
use harness::contenders::{
    cqrs_es::CqrsEs, eventcore::Eventcore, eventually::Eventually, locked::Locked, seed::Seed,
};
use harness::{criterion, quick, store, time_threads, Payload};
use hindsight::{ExpectedVersion, MemoryStore, Selector, StreamId, Transaction};
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Events in the catch-up store.
const STORED: u64 = 1_000_000;
/// Index of the stream that holds half of them.
const HOT: u64 = 0;

/// A `C` holding `STORED` events in 100-event transactions: every other
/// transaction goes to the hot stream, the rest round-robin to 100 others.
fn filled<C: Contender>() -> C {
    let store = C::new();
    let hot = store.stream(HOT);
    let others: Vec<C::Stream> = (1..=100).map(|i| store.stream(i)).collect();
    let mut lens = vec![0u64; 101];
    for tx in 0..STORED / 100 {
        let events: Vec<Payload> = (0..100).map(|i| Payload::new(0, tx * 100 + i)).collect();
        let index = if tx % 2 == 0 {
            0
        } else {
            1 + (tx / 2) as usize % others.len()
        };
        let stream = if index == 0 { &hot } else { &others[index - 1] };
        store.append_at(stream, lens[index], &events);
        lens[index] += 100;
    }
    store
}

/// The same streams as [`filled`] for a store with no global order, in
/// 10,000-event transactions: a store that copies a stream on every append
/// (cqrs-es) would need hours to take 500,000 events 100 at a time, and
/// only the streams' contents matter to a stream read.
fn filled_coarse<C: Contender>() -> C {
    let store = C::new();
    let mut hot_events = Vec::new();
    let mut others: Vec<Vec<Payload>> = vec![Vec::new(); 100];
    for tx in 0..STORED / 100 {
        let events = (0..100).map(|i| Payload::new(0, tx * 100 + i));
        if tx % 2 == 0 {
            hot_events.extend(events);
        } else {
            others[(tx / 2) as usize % 100].extend(events);
        }
    }
    for (len, chunk) in hot_events.chunks(10_000).enumerate() {
        store.append_at(&store.stream(HOT), (len * 10_000) as u64, chunk);
    }
    for (i, events) in others.iter().enumerate() {
        store.append_at(&store.stream(1 + i as u64), 0, events);
    }
    store
}

/// Folds what a reader would look at in each event.
#[inline]
fn touch(sum: u64, payload: &Payload) -> u64 {
    sum.wrapping_add(payload.0[1] ^ payload.0[0])
}

fn read_all<C: GlobalRead>(group: &mut BenchmarkGroup<'_, WallTime>, store: &C) {
    group.bench_function(format!("{}/read_all", C::NAME), |b| {
        b.iter(|| {
            let mut sum = 0;
            assert_eq!(store.read_all(|e| sum = touch(sum, e)), STORED);
            black_box(sum)
        })
    });
}

fn subscription<C: Subscribe>(group: &mut BenchmarkGroup<'_, WallTime>, store: &C) {
    group.bench_function(format!("{}/subscription", C::NAME), |b| {
        b.iter(|| {
            let mut subscription = store.subscribe();
            let mut sum = 0;
            while let Some(event) = subscription.try_next() {
                sum = touch(sum, &event);
            }
            black_box(sum)
        })
    });
}

/// Hindsight's other forms of a catch-up subscription beside `try_next`
/// (the `subscription` row): the batch form (`drain`), the owned events of
/// the blocking iterator (`SubscriptionIter::try_next`) and the
/// `futures_core::Stream` (`SubscriptionStream`, polled with a no-op waker
/// until it would wait, as an executor would poll it while events are
/// ready).
fn owned_subscriptions(group: &mut BenchmarkGroup<'_, WallTime>, store: &MemoryStore<Payload>) {
    group.bench_function("hindsight/subscription-drain", |b| {
        b.iter(|| {
            let mut subscription = MemoryStore::subscribe(store, Selector::all());
            let mut sum = 0;
            let delivered = subscription
                .drain(|event| sum = touch(sum, event.payload()))
                .expect("the benchmark store is never poisoned");
            assert_eq!(delivered, STORED);
            black_box(sum)
        })
    });
    group.bench_function("hindsight/owned-iter", |b| {
        b.iter(|| {
            let mut events = MemoryStore::subscribe(store, Selector::all()).into_iter();
            let mut sum = 0;
            while let Some(event) = events
                .try_next()
                .expect("the benchmark store is never poisoned")
            {
                sum = touch(sum, event.payload());
            }
            black_box(sum)
        })
    });
    group.bench_function("hindsight/stream", |b| {
        b.iter(|| {
            let mut events = MemoryStore::subscribe(store, Selector::all()).into_stream();
            let mut cx = Context::from_waker(Waker::noop());
            let mut sum = 0;
            while let Poll::Ready(Some(Ok(event))) = Pin::new(&mut events).poll_next(&mut cx) {
                sum = touch(sum, event.payload());
            }
            black_box(sum)
        })
    });
}

fn read_stream<C: Contender>(group: &mut BenchmarkGroup<'_, WallTime>, store: &C) {
    let hot = store.stream(HOT);
    group.bench_function(format!("{}/read_stream", C::NAME), |b| {
        b.iter(|| {
            let mut sum = 0;
            assert_eq!(store.read_stream(&hot, |e| sum = touch(sum, e)), STORED / 2);
            black_box(sum)
        })
    });
}

fn catch_up_all(c: &mut Criterion) {
    let mut group = c.benchmark_group("catch-up/all-streams");
    group.throughput(Throughput::Elements(STORED));
    {
        let store: MemoryStore<Payload> = filled();
        subscription(&mut group, &store);
        owned_subscriptions(&mut group, &store);
        read_all(&mut group, &store);
        let slice: Vec<Payload> = {
            let mut slice = Vec::with_capacity(STORED as usize);
            GlobalRead::read_all(&store, |e| slice.push(*e));
            slice
        };
        group.bench_function("slice-scan", |b| {
            b.iter(|| black_box(slice.iter().fold(0, touch)))
        });
    }
    {
        let store: Locked = filled();
        subscription(&mut group, &store);
        read_all(&mut group, &store);
    }
    {
        let store: Seed = filled();
        subscription(&mut group, &store);
        read_all(&mut group, &store);
    }
    read_all(&mut group, &filled::<Eventcore>());
    group.finish();
}

fn catch_up_one(c: &mut Criterion) {
    let mut group = c.benchmark_group("catch-up/one-stream");
    group.throughput(Throughput::Elements(STORED / 2));
    {
        let store: MemoryStore<Payload> = filled();
        let hot = Contender::stream(&store, HOT);
        group.bench_function("hindsight/subscription", |b| {
            b.iter(|| {
                let mut subscription = store.subscribe(Selector::stream(hot));
                let mut sum = 0;
                while let Some(event) = subscription.try_next().unwrap() {
                    sum = touch(sum, event.payload());
                }
                black_box(sum)
            })
        });
        read_stream(&mut group, &store);
        let slice: Vec<Payload> = {
            let mut slice = Vec::with_capacity(STORED as usize / 2);
            Contender::read_stream(&store, &hot, |e| slice.push(*e));
            slice
        };
        group.bench_function("slice-scan", |b| {
            b.iter(|| black_box(slice.iter().fold(0, touch)))
        });
    }
    read_stream(&mut group, &filled::<Locked>());
    read_stream(&mut group, &filled::<Seed>());
    read_stream(&mut group, &filled::<Eventcore>());
    read_stream(&mut group, &filled::<Eventually>());
    read_stream(&mut group, &filled_coarse::<CqrsEs>());
    group.finish();
}

/// One writer inserts `events` 1-event transactions into a fresh `C` while
/// `subscribers` subscriptions, attached before the clock starts, each wait
/// for all of them in the store's own way. Timed until every subscriber
/// holds the last event.
fn live<C: Subscribe>(subscribers: usize, events: u64) -> Duration {
    let store = C::new();
    let stream = store.stream(0);
    let subscriptions: Vec<Mutex<Option<C::Subscription<'_>>>> = (0..subscribers)
        .map(|_| Mutex::new(Some(store.subscribe())))
        .collect();
    let elapsed = time_threads(subscribers + 1, |thread| {
        if thread == subscribers {
            for i in 0..events {
                store.append(&stream, &[Payload::new(0, i)]);
            }
        } else {
            let mut subscription = subscriptions[thread]
                .lock()
                .expect("not poisoned")
                .take()
                .expect("one subscription per thread");
            for i in 0..events {
                assert_eq!(
                    subscription.next().0[1],
                    i,
                    "{}: delivered in order",
                    C::NAME
                );
            }
        }
    });
    drop(subscriptions);
    drop(store);
    elapsed
}

fn live_delivery(c: &mut Criterion) {
    for subscribers in [1usize, 4, 16] {
        let mut group = c.benchmark_group(format!("live/{subscribers}-subscribers"));
        group.throughput(Throughput::Elements(1));
        fn one<C: Subscribe>(group: &mut BenchmarkGroup<'_, WallTime>, subscribers: usize) {
            group.bench_function(C::NAME, |b| {
                b.iter_custom(|iters| live::<C>(subscribers, iters))
            });
        }
        one::<MemoryStore<Payload>>(&mut group, subscribers);
        one::<Locked>(&mut group, subscribers);
        one::<Seed>(&mut group, subscribers);
        one::<Eventcore>(&mut group, subscribers);
        group.bench_function("crossbeam-channel", |b| {
            b.iter_custom(|iters| harness::limits::channel_fan_out(subscribers, iters))
        });
        group.bench_function("disruptor", |b| {
            b.iter_custom(|iters| harness::limits::disruptor_fan_out(subscribers, iters))
        });
        group.finish();
    }
}

/// Inserts per iteration of `notify_cost`.
const BURST: u64 = 1_000;

/// One writer inserting bursts of 1-event transactions while `parked`
/// subscribers wait on a stream nobody writes, all parked when each burst
/// starts (idle subscribers, spaced writes). Each one-stream subscriber
/// parks on its stream's signal, which only that stream's writers wake
/// (targeted wake-ups), so the writer's cost should not grow with their
/// number; before targeted wake-ups every commit woke them all.
///
/// An iteration is a burst of [`BURST`] inserts (criterion's time per
/// iteration / 1,000 = the cost of one insert): per sample the subscribers
/// are started and left to park (50 ms + 0.25 ms each), which costs far
/// more than the inserts, so a one-insert iteration left criterion timing
/// one insert per sample, fixed costs included.
fn notify_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("notify-cost/insert-1-event");
    group.throughput(Throughput::Elements(BURST));
    for parked in [0usize, 1, 16, 100, 1_000] {
        group.bench_function(BenchmarkId::new("parked-subscribers", parked), |b| {
            b.iter_custom(|iters| {
                let store = store();
                let stop = AtomicBool::new(false);
                let idle = StreamId::new();
                let stream = StreamId::new();
                // Before the subscribers start: the first insert creates the
                // stream and the log's first segment, which is not the cost
                // measured here.
                store
                    .insert(Transaction::single(
                        stream,
                        ExpectedVersion::Any,
                        Payload::new(0, 0),
                    ))
                    .unwrap();
                let started_up = std::sync::Barrier::new(parked + 1);
                std::thread::scope(|scope| {
                    for _ in 0..parked {
                        let (store, stop, started_up) = (&store, &stop, &started_up);
                        scope.spawn(move || {
                            let mut subscription = store.subscribe(Selector::stream(idle));
                            started_up.wait();
                            // Blocks until an event of `idle` commits: only
                            // the wake-up after the timing below. Relaxed: a
                            // stop flag only; the insert into `idle` that
                            // follows the store orders it.
                            while !stop.load(Ordering::Relaxed) {
                                black_box(subscription.next().unwrap());
                            }
                        });
                    }
                    started_up.wait();
                    // Let them reach the parked state (past spinning and
                    // yielding) before timing.
                    let settle = if quick() { 20 } else { 50 } + parked as u64 / 4;
                    std::thread::sleep(Duration::from_millis(settle));
                    let started = Instant::now();
                    for i in 0..iters * BURST {
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
                    store
                        .insert(Transaction::single(
                            idle,
                            ExpectedVersion::Any,
                            Payload::new(1, 0),
                        ))
                        .unwrap();
                    elapsed
                })
            })
        });
    }
    group.finish();
}

fn checks(_: &mut Criterion) {
    check_global_read::<MemoryStore<Payload>>();
    check_global_read::<Locked>();
    check_global_read::<Seed>();
    check_global_read::<Eventcore>();
    check_subscribe::<MemoryStore<Payload>>();
    check_subscribe::<Locked>();
    check_subscribe::<Seed>();
    check_subscribe::<Eventcore>();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = checks, catch_up_all, catch_up_one, live_delivery, notify_cost
}
criterion_main!(benches);
