//! Regression tests for bugs found in review, each named after the
//! property that was broken. Those that run hold a watchdog: a regression
//! that hangs aborts the run loudly instead of stalling it.

use hindsight::{ExpectedVersion, InsertError, MemoryStore, StreamId, Transaction};
use std::cell::Cell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Barrier;

mod common;
use common::{scaled, sid, watchdog, WATCHDOG};

/// Answers "is `T` Send / Sync?" at run time (inherent consts shadow the
/// trait defaults only when the bound holds).
struct Probe<T: ?Sized>(PhantomData<T>);
trait NotSend {
    const SEND: bool = false;
}
impl<T: ?Sized> NotSend for Probe<T> {}
#[allow(dead_code)]
impl<T: ?Sized + Send> Probe<T> {
    const SEND: bool = true;
}
trait NotSync {
    const SYNC: bool = false;
}
impl<T: ?Sized> NotSync for Probe<T> {}
#[allow(dead_code)]
impl<T: ?Sized + Sync> Probe<T> {
    const SYNC: bool = true;
}

/// The log's segments once held only raw pointers, which made every store
/// `Send + Sync` whatever its payload. Checked at compile time: a
/// regression fails the build of this test.
#[test]
fn a_store_of_non_send_or_non_sync_payloads_is_neither_send_nor_sync() {
    const {
        assert!(!Probe::<Rc<u8>>::SEND, "the probe itself works");
        assert!(Probe::<MemoryStore<u8>>::SEND && Probe::<MemoryStore<u8>>::SYNC);
        assert!(!Probe::<MemoryStore<Rc<u8>>>::SEND);
        assert!(!Probe::<MemoryStore<Rc<u8>>>::SYNC);
        assert!(!Probe::<MemoryStore<Cell<u8>>>::SYNC);
    }
}

/// A zero-event `NoStream` check on a stream nobody had written once took
/// no lock, so a concurrent first write to that stream could be ordered
/// before the transaction that "saw" the stream missing.
#[test]
fn a_pure_expectation_check_is_ordered_with_concurrent_writes_to_its_stream() {
    let _watchdog = watchdog("pure_expectation_check", WATCHDOG);
    let rounds = scaled(5_000, 50_000) as u128;
    let barrier = Barrier::new(2);
    let stores: Vec<MemoryStore<u32>> = (0..rounds).map(|_| MemoryStore::new()).collect();
    let (checks, writes) = std::thread::scope(|scope| {
        let checker = scope.spawn(|| {
            let mut results = Vec::new();
            for (round, store) in (0..rounds).zip(&stores) {
                let (a, b) = (sid(round * 2 + 2), sid(round * 2 + 1));
                barrier.wait();
                results.push(
                    store.insert(
                        Transaction::new()
                            .append(a, ExpectedVersion::NoStream, [])
                            .append(b, ExpectedVersion::Any, [1]),
                    ),
                );
            }
            results
        });
        let writer = scope.spawn(|| {
            let mut results = Vec::new();
            for (round, store) in (0..rounds).zip(&stores) {
                barrier.wait();
                let a = sid(round * 2 + 2);
                results.push(
                    store
                        .insert(Transaction::single(a, ExpectedVersion::Any, 2))
                        .unwrap(),
                );
            }
            results
        });
        (checker.join().unwrap(), writer.join().unwrap())
    });
    for (round, (check, write)) in checks.into_iter().zip(writes).enumerate() {
        match check {
            // The check saw `a` missing, so the write that created it must come later.
            Ok(check) => assert!(
                write.last_position() > check.last_position(),
                "round {round}: NoStream passed, yet the write to the stream came first"
            ),
            Err(InsertError::VersionConflict(_)) => {}
            Err(other) => panic!("round {round}: {other}"),
        }
    }
}

/// A handler that cancels (or drops) its own subscriber once joined its
/// own thread and hung every later `wait` or `cancel`.
#[test]
fn a_handler_may_cancel_its_own_subscriber() {
    use hindsight::{Flow, Selector, Subscriber};
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    let _watchdog = watchdog("handler_cancels_its_own_subscriber", WATCHDOG);
    let store = MemoryStore::new();
    let own: Arc<OnceLock<Subscriber<std::convert::Infallible>>> = Arc::new(OnceLock::new());
    let handled = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let subscriber = {
        let (own, handled) = (own.clone(), handled.clone());
        store.spawn_subscriber(Selector::all(), move |_| {
            if handled.fetch_add(1, std::sync::atomic::Ordering::Relaxed) == 1 {
                own.get().expect("set before any event is written").cancel();
            }
            Ok(Flow::Continue)
        })
    };
    assert!(own.set(subscriber).is_ok());
    store
        .insert(Transaction::new().append(StreamId::new(), ExpectedVersion::Any, [1, 2, 3, 4]))
        .unwrap();
    let subscriber = own.get().unwrap();
    // Cancelled during the 2nd event: it ends without handling the rest.
    assert_eq!(
        subscriber.wait_caught_up(Duration::from_secs(30)),
        Err(hindsight::WaitError::Ended)
    );
    assert_eq!(subscriber.wait(), Ok(()));
    assert_eq!(handled.load(std::sync::atomic::Ordering::Relaxed), 2);
    subscriber.cancel();
}

/// `n` zero-sized events, made in O(1) (collecting them would take 2^63
/// steps).
// Sound for `()`: there are no bytes to initialise, which is what the lint
// cannot know.
#[allow(clippy::uninit_vec)]
fn units(n: usize) -> Vec<()> {
    let mut events = Vec::new();
    // SAFETY: a `Vec` of a zero-sized type has capacity `usize::MAX`, and
    // every `()` is initialised.
    unsafe { events.set_len(n) };
    events
}

/// Two appends of 2^63 zero-sized events once wrapped the `u64` sum in
/// release (answered `Ok` with no position) and panicked in debug; one
/// append of 2^34 aborted the process in the stream index's allocation. Both
/// must be a clear error before anything is created, reserved or written.
#[test]
fn a_transaction_too_large_for_the_store_is_refused_before_anything_happens() {
    let store = MemoryStore::<()>::new();
    let (a, b) = (sid(1), sid(2));
    let wrapping = Transaction::new()
        .append(a, ExpectedVersion::Any, units(1 << 63))
        .append(b, ExpectedVersion::Any, units(1 << 63));
    assert_eq!(
        store.insert(wrapping),
        Err(InsertError::TooLarge {
            events: u64::MAX,
            limit: hindsight::MAX_TRANSACTION_EVENTS,
        })
    );
    let huge = Transaction::new().append(a, ExpectedVersion::Any, units(1 << 34));
    assert_eq!(
        store.insert(huge),
        Err(InsertError::TooLarge {
            events: 1 << 34,
            limit: hindsight::MAX_TRANSACTION_EVENTS,
        })
    );
    let over_by_one = units(hindsight::MAX_TRANSACTION_EVENTS as usize + 1);
    assert!(matches!(
        store.stream(b).append(ExpectedVersion::Any, over_by_one),
        Err(InsertError::TooLarge { .. })
    ));
    assert_eq!(store.head(), None, "no position was used");
    assert_eq!(store.stream_head(a), None);
    assert_eq!(store.stream_head(b), None);
    // The store still works, and the streams start afresh.
    let done = store
        .insert(Transaction::new().append(a, ExpectedVersion::NoStream, units(3)))
        .unwrap();
    assert_eq!(done.last_position().map(|p| p.get()), Some(2));
}

/// Counts its drops and panics in the one whose number is `panics_at`.
struct Bomb {
    number: usize,
    panics_at: usize,
    drops: std::sync::Arc<Vec<std::sync::atomic::AtomicUsize>>,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        self.drops[self.number].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.number == self.panics_at {
            panic!("payload {} panics in drop", self.number);
        }
    }
}

/// When one payload's `Drop` panicked while the store dropped, no later
/// event was ever dropped (10 events, the 4th panics: drop counts
/// 1,1,1,1,0,0,0,0,0,0). The rest must still be dropped, once each, as
/// `Vec` does; the panic reaches whoever dropped the last handle.
#[test]
fn a_panicking_payload_drop_does_not_stop_the_store_dropping_the_rest() {
    let drops = std::sync::Arc::new(
        (0..10)
            .map(|_| std::sync::atomic::AtomicUsize::new(0))
            .collect::<Vec<_>>(),
    );
    let bombs = |range: std::ops::Range<usize>| {
        let drops = drops.clone();
        range.map(move |number| Bomb {
            number,
            panics_at: 3,
            drops: drops.clone(),
        })
    };
    let store = MemoryStore::new();
    // Across transactions and streams: 3 + 1 + 6 events.
    store
        .insert(Transaction::new().append(sid(1), ExpectedVersion::Any, bombs(0..3)))
        .unwrap();
    store
        .insert(Transaction::new().append(sid(2), ExpectedVersion::Any, bombs(3..4)))
        .unwrap();
    store
        .insert(
            Transaction::new()
                .append(sid(1), ExpectedVersion::Any, bombs(4..7))
                .append(sid(3), ExpectedVersion::Any, bombs(7..10)),
        )
        .unwrap();
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(store)));
    assert!(dropped.is_err(), "the payload's panic reaches the dropper");
    let counts: Vec<usize> = drops
        .iter()
        .map(|count| count.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    assert_eq!(counts, [1; 10]);
}

/// The contract's rule 26, deterministically: a clock that steps back. The
/// second and third transactions read an earlier time than the first; each must
/// carry the first's time instead, on every one of its events, through `insert`
/// (one stream and several, with and without a correlation id) and through a
/// stream handle. Before the fix they carried their own, earlier times.
#[test]
fn created_at_never_decreases_along_positions_when_the_clock_steps_back() {
    use hindsight::{CorrelationId, Start, TestClock};
    use std::time::{Duration, SystemTime};

    let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let clock = TestClock::new(at(100));
    let store = MemoryStore::builder().clock(clock.clone()).build();
    let (a, b) = (sid(1), sid(2));
    store
        .insert(Transaction::single(a, ExpectedVersion::Any, 0))
        .unwrap();
    clock.set(at(50));
    store
        .insert(Transaction::new().append(a, ExpectedVersion::Any, [1, 2, 3]))
        .unwrap();
    clock.set(at(40));
    store
        .insert(
            Transaction::new()
                .append(a, ExpectedVersion::Any, [4])
                .append(b, ExpectedVersion::Any, [5, 6])
                .with_correlation_id(CorrelationId::new()),
        )
        .unwrap();
    clock.set(at(30));
    store.stream(b).append_one(ExpectedVersion::Any, 7).unwrap();
    clock.set(at(200));
    store
        .insert(Transaction::single(b, ExpectedVersion::Any, 8))
        .unwrap();
    clock.set(at(150));
    store
        .insert(
            Transaction::single(a, ExpectedVersion::Any, 9)
                .with_correlation_id(CorrelationId::new()),
        )
        .unwrap();

    let times: Vec<(i32, SystemTime)> = store
        .read_all(Start::Beginning)
        .map(|event| (*event.payload(), event.created_at()))
        .collect();
    let expected: Vec<(i32, SystemTime)> = (0..10)
        .map(|payload| (payload, if payload < 8 { at(100) } else { at(200) }))
        .collect();
    assert_eq!(times, expected);
    // Stable: read again, the same times.
    let again: Vec<SystemTime> = store
        .read_all(Start::Beginning)
        .map(|e| e.created_at())
        .collect();
    assert_eq!(again, expected.iter().map(|&(_, t)| t).collect::<Vec<_>>());
}

/// The contract's rule 26 under concurrency, as the issue found it: 8 threads
/// each insert one-event `Any` transactions to one shared stream, and then to a
/// stream of their own; the clock is read before the positions are taken, so
/// without the fix some version (and some position) carried an earlier time
/// than the one before it, in every run.
#[test]
fn created_at_never_decreases_along_versions_or_positions_under_concurrent_writers() {
    use hindsight::{Start, StreamVersion};

    let _watchdog = watchdog("created_at under concurrent writers", WATCHDOG);
    let store = MemoryStore::new();
    let shared = sid(1);
    let (threads, per_thread) = (8u128, scaled(500, 5_000) as u64);
    let start = Barrier::new(threads as usize);
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let (store, start) = (&store, &start);
            scope.spawn(move || {
                start.wait();
                for i in 0..per_thread {
                    store
                        .insert(Transaction::single(shared, ExpectedVersion::Any, i))
                        .unwrap();
                }
                for i in 0..per_thread {
                    store
                        .insert(Transaction::single(
                            sid(100 + thread),
                            ExpectedVersion::Any,
                            i,
                        ))
                        .unwrap();
                }
            });
        }
    });
    let along_versions: Vec<_> = store
        .read_stream(shared, StreamVersion(0))
        .map(|event| event.created_at())
        .collect();
    assert_eq!(along_versions.len() as u64, threads as u64 * per_thread);
    if let Some(at) = along_versions.windows(2).position(|w| w[1] < w[0]) {
        panic!("version {} was created before version {at}", at + 1);
    }
    let along_positions: Vec<_> = store
        .read_all(Start::Beginning)
        .map(|event| event.created_at())
        .collect();
    if let Some(at) = along_positions.windows(2).position(|w| w[1] < w[0]) {
        panic!("position {} was created before position {at}", at + 1);
    }
}
