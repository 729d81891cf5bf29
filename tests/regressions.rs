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
