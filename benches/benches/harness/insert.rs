//! The insert scenarios, shared by the `insert` bench (every store in fresh
//! memory) and the `insert-warm` bench (every store in memory the process
//! has already written): every contender, in the same criterion groups as
//! the limits, for 1 thread with 1-, 10- and 100-event transactions; 2
//! threads on distinct streams and on one stream; 8 and 32 threads on
//! distinct streams (oversubscribed on small machines: spinning must not
//! collapse throughput); and 4-stream transactions with exact expectations.
//! Each group is named `insert/<scenario>/<memory>`, `<memory>` being
//! `fresh` or `warm` (see [`Memory`]).
//!
//! Every sample writes into a store of its own, dropped outside the timing.
//! Streams roll over every `ROLLOVER` transactions (see `stream_index`), so
//! a contender whose append cost grows with the stream's length is measured
//! at a bounded, stated length rather than at whatever length criterion's
//! iteration count happens to reach.

use super::contender::{check_multi_stream, check_streams, Contender, MultiStream};
use super::contenders::{
    cqrs_es::CqrsEs, eventcore::Eventcore, eventually::Eventually, hindsight::Handles,
    locked::Locked, seed::Seed,
};
use super::{criterion, limits, time_threads, Payload};
use criterion::measurement::WallTime;
use criterion::{Bencher, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use hindsight::MemoryStore;
use std::hint::black_box;
use std::time::Duration;

/// Where the stores of a sample get their memory; every contender and
/// every limit gets the same treatment.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Memory {
    /// As a test suite that builds a store per test gets it: the `insert`
    /// bench leaves the allocator as it is. glibc maps the blocks above its
    /// mmap threshold (which grows with the blocks freed, up to 32 MiB)
    /// afresh and unmaps them when they are freed, so a large store's big
    /// blocks are fresh pages and the page faults of first writing them are
    /// part of the cost; a small store may get memory glibc kept from an
    /// earlier sample.
    Fresh,
    /// Already written by this process: the `insert-warm` bench makes the
    /// allocator keep what it frees (`heap::keep_freed_memory`), and every
    /// sample first runs the same work untimed into a store it then drops,
    /// so the timed run's store gets memory that run wrote: the steady
    /// state of a process whose stores come and go, with no page faults.
    Warm,
}

impl Memory {
    /// The last part of the group names.
    fn name(self) -> &'static str {
        match self {
            Memory::Fresh => "fresh",
            Memory::Warm => "warm",
        }
    }

    /// One sample of `iters` iterations of `run` (which times its own work
    /// and drops its store after the clock stops): in warm mode, an
    /// untimed run of the same work comes first.
    fn sample(self, iters: u64, run: impl Fn(u64) -> Duration) -> Duration {
        if self == Memory::Warm {
            run(iters);
        }
        run(iters)
    }
}

/// Runs the contenders' checks, then every insert group in `memory`.
pub fn run(memory: Memory) {
    checks();
    let mut c = criterion();
    one_thread(&mut c, memory);
    threads(&mut c, memory);
    exact(&mut c, memory);
    c.final_summary();
}

/// Transactions a thread writes to one stream before moving to the next.
const ROLLOVER: u64 = 1_000;

/// One insert scenario: `threads` writers of `size`-event transactions, each
/// on streams of its own or (`shared`) all on the same ones.
#[derive(Clone, Copy)]
struct Scenario {
    threads: usize,
    size: u64,
    shared: bool,
}

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

/// `txs` transactions of the scenario, split over its threads, into a new
/// `C`.
fn insert<C: Contender>(scenario: Scenario, txs: u64) -> Duration {
    let Scenario {
        threads,
        size,
        shared,
    } = scenario;
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

/// The group `insert/<scenario>/<memory>`.
fn group<'a>(c: &'a mut Criterion, scenario: &str, memory: Memory) -> BenchmarkGroup<'a, WallTime> {
    c.benchmark_group(format!("insert/{scenario}/{}", memory.name()))
}

/// The benchmark routine whose samples are `run(iters)` in `memory`.
fn routine(
    memory: Memory,
    run: impl Fn(u64) -> Duration,
) -> impl FnMut(&mut Bencher<'_, WallTime>) {
    move |b| b.iter_custom(|iters| memory.sample(iters, &run))
}

/// Every contender in `scenario`.
fn contenders(group: &mut BenchmarkGroup<'_, WallTime>, scenario: Scenario, memory: Memory) {
    fn one<C: Contender>(
        group: &mut BenchmarkGroup<'_, WallTime>,
        scenario: Scenario,
        memory: Memory,
    ) {
        group.bench_function(
            BenchmarkId::new(C::NAME, scenario.size),
            routine(memory, |iters| insert::<C>(scenario, iters)),
        );
    }
    group.throughput(Throughput::Elements(scenario.size));
    one::<MemoryStore<Payload>>(group, scenario, memory);
    one::<Handles>(group, scenario, memory);
    one::<Locked>(group, scenario, memory);
    one::<Seed>(group, scenario, memory);
    one::<Eventcore>(group, scenario, memory);
    one::<Eventually>(group, scenario, memory);
    one::<CqrsEs>(group, scenario, memory);
}

/// The transport-only upper bounds, for writers on distinct streams.
fn transports(group: &mut BenchmarkGroup<'_, WallTime>, scenario: Scenario, memory: Memory) {
    let Scenario { threads, size, .. } = scenario;
    group.bench_function(
        BenchmarkId::new("crossbeam-channel", size),
        routine(memory, |iters| limits::channel(threads, size, iters)),
    );
    group.bench_function(
        BenchmarkId::new("disruptor", size),
        routine(memory, |iters| limits::disruptor(threads, size, iters)),
    );
}

fn one_thread(c: &mut Criterion, memory: Memory) {
    let mut group = group(c, "1-thread", memory);
    for size in [1u64, 10, 100] {
        let scenario = Scenario {
            threads: 1,
            size,
            shared: false,
        };
        contenders(&mut group, scenario, memory);
        group.bench_function(
            BenchmarkId::new("vec-push", size),
            routine(memory, |iters| limits::vec_push(size, iters)),
        );
        transports(&mut group, scenario, memory);
    }
    group.finish();
}

fn threads(c: &mut Criterion, memory: Memory) {
    for threads in [2usize, 8, 32] {
        let mut group = group(c, &format!("{threads}-threads-distinct-streams"), memory);
        for size in [1u64, 100] {
            let scenario = Scenario {
                threads,
                size,
                shared: false,
            };
            contenders(&mut group, scenario, memory);
            transports(&mut group, scenario, memory);
        }
        group.finish();
    }
    let mut group = group(c, "2-threads-one-stream", memory);
    for size in [1u64, 100] {
        let scenario = Scenario {
            threads: 2,
            size,
            shared: true,
        };
        contenders(&mut group, scenario, memory);
    }
    group.finish();
}

fn exact(c: &mut Criterion, memory: Memory) {
    for threads in [1usize, 2] {
        let mut group = group(c, &format!("4-stream-exact-{threads}-threads"), memory);
        group.throughput(Throughput::Elements(4));
        fn one<C: MultiStream>(
            group: &mut BenchmarkGroup<'_, WallTime>,
            threads: usize,
            memory: Memory,
        ) {
            group.bench_function(
                C::NAME,
                routine(memory, |iters| insert_exact::<C>(threads, iters)),
            );
        }
        one::<MemoryStore<Payload>>(&mut group, threads, memory);
        one::<Locked>(&mut group, threads, memory);
        one::<Seed>(&mut group, threads, memory);
        one::<Eventcore>(&mut group, threads, memory);
        group.finish();
    }
}

/// The semantic checks of every contender measured here.
fn checks() {
    check_streams::<MemoryStore<Payload>>();
    check_streams::<Handles>();
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
