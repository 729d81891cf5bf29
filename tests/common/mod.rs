//! Support shared by the integration suites: one seeded random generator,
//! one watchdog, drop counters, and the small helpers more than one suite
//! needs. Each suite includes it with `mod common;`.
//!
//! The conformance kit (`src/testkit/`) ships in the library and cannot use
//! this module; it keeps its own runtime, watchdog and helpers, written for
//! any `EventStore` rather than for `MemoryStore` directly.

// Every suite compiles its own copy of this module and uses only some of
// it: what one suite leaves unused is not dead.
#![allow(dead_code)]

use hindsight::{Committed, MemoryStore, StreamId, Transaction, Uuid};
use std::hash::{BuildHasher, RandomState};
use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, SystemTime};

// ---------------------------------------------------------------------------
// Scale
// ---------------------------------------------------------------------------

/// `debug` in debug builds, `release` with optimisations.
pub fn scaled(debug: usize, release: usize) -> usize {
    if cfg!(debug_assertions) {
        debug
    } else {
        release
    }
}

// ---------------------------------------------------------------------------
// Watchdog
// ---------------------------------------------------------------------------

/// The usual deadline of a [`watchdog`]: far beyond what any test needs even
/// on a loaded debug build.
pub const WATCHDOG: Duration = Duration::from_secs(120);

/// Aborts the whole process if the test holding it is still running after
/// its deadline: a deadlock or a lost wake-up fails the run loudly instead
/// of hanging CI. Dropping it (also by unwinding) stops it.
pub struct Watchdog {
    _alive: mpsc::Sender<()>,
}

/// Starts a [`Watchdog`] for the test running on this thread; `label` says
/// what is being watched (the message names the test's thread too).
pub fn watchdog(label: &str, deadline: Duration) -> Watchdog {
    let current = thread::current();
    let watched = match current.name() {
        Some(test) if test != label => format!("`{label}` (test `{test}`)"),
        _ => format!("`{label}`"),
    };
    let (alive, dead) = mpsc::channel::<()>();
    thread::spawn(move || {
        // `Disconnected` once the watchdog drops: the test returned or panicked.
        if dead.recv_timeout(deadline) == Err(RecvTimeoutError::Timeout) {
            let replay = SEED
                .get()
                .map(|seed| format!(" (random tests: {SEED_VAR}={seed})"))
                .unwrap_or_default();
            // Straight to stderr: `eprintln!` would be captured with the
            // test's output, and lost with the process.
            let _ = writeln!(
                io::stderr(),
                "watchdog: {watched} still running after {deadline:?}: deadlock? aborting{replay}"
            );
            std::process::abort();
        }
    });
    Watchdog { _alive: alive }
}

/// Runs `body` under a [`watchdog`].
pub fn with_watchdog<R>(label: &str, deadline: Duration, body: impl FnOnce() -> R) -> R {
    let _watchdog = watchdog(label, deadline);
    body()
}

// ---------------------------------------------------------------------------
// Seeded randomness
// ---------------------------------------------------------------------------

/// The environment variable that fixes the seed of the randomised tests.
pub const SEED_VAR: &str = "HINDSIGHT_TEST_SEED";

static SEED: OnceLock<u64> = OnceLock::new();

/// The seed of the randomised tests: [`SEED_VAR`] if set, else one drawn at
/// random, once per test binary. Each call prints it with the command to
/// replay it; the test harness shows that line with a failure. (A replay
/// runs the same workload; the thread interleaving will differ.)
pub fn seed() -> u64 {
    let seed = *SEED.get_or_init(|| match std::env::var(SEED_VAR) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VAR} is a u64, not {value:?}")),
        Err(std::env::VarError::NotPresent) => RandomState::new().hash_one(SystemTime::now()),
        Err(error) => panic!("{SEED_VAR}: {error}"),
    });
    eprintln!("seed {seed}: rerun with {SEED_VAR}={seed}");
    seed
}

/// xorshift64*: tiny, good enough to pick sizes and streams.
pub struct Rng(u64);

impl Rng {
    /// The generator of `stream` (a writer, say) of a run seeded by `seed`.
    pub fn new(seed: u64, stream: u64) -> Self {
        let mixed =
            (seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        Rng(mixed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.below_u64(n as u64) as usize
    }

    /// Uniform-ish in `0..n`.
    pub fn below_u64(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------
// Drop counters
// ---------------------------------------------------------------------------

/// A payload that is neither `Clone` nor `Debug` and counts its drops on
/// its counter.
pub struct Tracked(pub Arc<AtomicUsize>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Hands out [`Tracked`] payloads, one drop counter per event.
#[derive(Default)]
pub struct DropLedger {
    /// The counter of each event handed out so far, in order.
    pub counters: Vec<Arc<AtomicUsize>>,
}

impl DropLedger {
    pub fn events(&mut self, count: usize) -> Vec<Tracked> {
        (0..count)
            .map(|_| {
                let counter = Arc::new(AtomicUsize::new(0));
                self.counters.push(Arc::clone(&counter));
                Tracked(counter)
            })
            .collect()
    }

    /// How often each event handed out so far was dropped, in order.
    pub fn drops(&self) -> Vec<usize> {
        self.counters
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Streams and inserts
// ---------------------------------------------------------------------------

/// A stream id whose order among other `sid`s is the order of `n`.
pub fn sid(n: u128) -> StreamId {
    StreamId::from_uuid(Uuid::from_u128(n))
}

/// Inserts `tx`, which must succeed.
#[track_caller]
pub fn insert<E>(store: &MemoryStore<E>, tx: Transaction<E>) -> Committed {
    match store.insert(tx) {
        Ok(committed) => committed,
        Err(error) => panic!("insert failed: {error}"),
    }
}
