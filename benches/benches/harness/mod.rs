//! The shared harness of hindsight's benchmarks: configuration (with a
//! quick mode), a multi-threaded timing helper for `iter_custom`, and the
//! payload every scenario stores.
//!
//! Every bench target includes it as its `harness` module (`mod harness;`)
//! rather than linking a library, so that criterion and the peers stay
//! dev-dependencies that only `cargo bench` builds. Each target uses part of
//! it; the rest is dead code there, hence the `allow` below.
//!
//! Set `HINDSIGHT_BENCH_QUICK=1` for short measurements (the whole suite in
//! a few minutes on 2 cores); leave it unset for the figures in PERF.md.

#![allow(dead_code)]

pub mod contender;
pub mod contenders;
pub mod heap;
pub mod insert;
pub mod limits;

use criterion::Criterion;
use hindsight::{MemoryStore, StreamId};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Whether `HINDSIGHT_BENCH_QUICK` asks for short runs.
pub fn quick() -> bool {
    std::env::var_os("HINDSIGHT_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// Criterion configured for this machine: fewer samples in quick mode.
pub fn criterion() -> Criterion {
    let criterion = Criterion::default().configure_from_args();
    if quick() {
        criterion
            .sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(500))
    } else {
        criterion
            .sample_size(20)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
    }
}

/// A 32-byte event, the size of a small serialised domain event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Payload(pub [u64; 4]);

impl Payload {
    /// A payload that names its writer and sequence number.
    pub fn new(writer: u64, sequence: u64) -> Self {
        Payload([writer, sequence, 0, 0])
    }
}

/// Runs `work(thread)` on `threads` threads released together by a start
/// barrier, and returns the time from the release until the last of them
/// is done, as the timing thread sees it: every thread waits on an end
/// barrier after its work, and the clock stops when that barrier releases
/// the timing thread. Thread start-up, exit and join are not timed.
pub fn time_threads(threads: usize, work: impl Fn(usize) + Sync) -> Duration {
    let (start, end) = (Barrier::new(threads + 1), Barrier::new(threads + 1));
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let (start, end, work) = (&start, &end, &work);
            scope.spawn(move || {
                start.wait();
                let _arrive = Arrive(end);
                work(thread);
            });
        }
        start.wait();
        let started = Instant::now();
        end.wait();
        started.elapsed()
        // The scope joins the threads after the clock has stopped, and
        // re-raises a panic of any of them.
    })
}

/// Waits on its barrier when dropped: after the work, or while a panic in
/// it unwinds, so that a failed check stops the clock and reaches the join
/// (which re-raises it) instead of leaving the timing thread waiting.
struct Arrive<'a>(&'a Barrier);

impl Drop for Arrive<'_> {
    fn drop(&mut self) {
        self.0.wait();
    }
}

/// `count` distinct stream ids, in a fixed order.
pub fn streams(count: usize) -> Vec<StreamId> {
    (0..count).map(|_| StreamId::new()).collect()
}

/// A fresh store, dropped outside the timed region by the caller.
pub fn store() -> MemoryStore<Payload> {
    MemoryStore::new()
}

/// The value at quantile `q` (0..=1) of sorted `samples`.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Writes a generated table to `perf/<name>.md` at the repository root (the
/// measurements that are not criterion groups: latency percentiles, memory
/// per event, cost against stored size) and prints it.
pub fn write_table(name: &str, markdown: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../perf");
    std::fs::create_dir_all(&dir).expect("create perf/");
    let path = dir.join(format!("{name}.md"));
    std::fs::write(&path, markdown).expect("write the table");
    println!("{markdown}");
    println!("written to {}", path.display());
}

/// `bytes` as a readable figure (`12.3 ns`-style for durations is
/// `{:.2?}`; this is for counts): `1.23 M`, `45.6 k`, `789`.
pub fn si(value: f64) -> String {
    match value {
        v if v >= 1e9 => format!("{:.2} G", v / 1e9),
        v if v >= 1e6 => format!("{:.2} M", v / 1e6),
        v if v >= 1e3 => format!("{:.1} k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

/// Whether the binary runs as a benchmark (`cargo bench` passes `--bench`)
/// rather than as a smoke test (`cargo test --benches` passes nothing).
pub fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}
