//! What the source of `created_at` costs an insert (issue 15): the default
//! (the system clock read inline, one `clock_gettime`), the same clock
//! through the builder (`SystemClock` behind `dyn Clock`), and a
//! `TestClock` (a mutex-free atomic read). Every row keeps the contract's rule 26 (times
//! never decrease along positions), which the commit applies whatever the
//! clock; its cost is in every row alike (measured on its own when it was
//! built: 17 instructions per insert, see PERF.md).
//!
//! One-event `Any` inserts into one stream of a fresh store per sample.

mod harness;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use harness::{criterion, Payload};
use hindsight::{ExpectedVersion, MemoryStore, StreamId, SystemClock, TestClock, Transaction};
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

/// Times `iters` one-event inserts into a store that `make` builds.
fn inserts(iters: u64, make: &dyn Fn() -> MemoryStore<Payload>) -> Duration {
    let store = make();
    let stream = StreamId::new();
    let started = Instant::now();
    for i in 0..iters {
        black_box(
            store
                .insert(Transaction::single(
                    stream,
                    ExpectedVersion::Any,
                    Payload::new(0, i),
                ))
                .unwrap(),
        );
    }
    started.elapsed()
}

fn clock_cost(c: &mut Criterion) {
    let mut group = c.benchmark_group("clock-cost/insert-1-event");
    group.throughput(Throughput::Elements(1));
    group.bench_function("default", |b| {
        b.iter_custom(|iters| inserts(iters, &MemoryStore::new))
    });
    group.bench_function("system-clock-via-builder", |b| {
        b.iter_custom(|iters| inserts(iters, &|| MemoryStore::builder().clock(SystemClock).build()))
    });
    group.bench_function("test-clock", |b| {
        b.iter_custom(|iters| {
            inserts(iters, &|| {
                let clock =
                    TestClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
                MemoryStore::builder().clock(clock).build()
            })
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = clock_cost
}
criterion_main!(benches);
