//! Handler subscribers that never hang, never panic on drop, and wait
//! asynchronously without a thread per wait: the failures of issue 11 that
//! concern `spawn_subscriber`'s `Subscriber` and the trait's
//! `MemorySubscriber`, each as a regression test (contract rules 20, 21,
//! 24, 27 and 28).
//!
//! Nothing sleeps: tests wait with `wait_processed`, channels, barriers and
//! the state of a thread in `/proc`. Timeouts are failure guards
//! ([`PATIENCE`]); every test holds a watchdog, so a deadlock aborts the
//! run loudly. The tests take one lock ([`serial`]) so that the thread
//! count of one is not disturbed by the threads of another.

use hindsight::{
    EventStore, EventType, ExpectedVersion, Flow, HandlerError, HandlerFailure, MemoryStore,
    Position, Selector, StreamId, Subscriber, SubscriberError, SubscriberHandle, Transaction,
    WaitError,
};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier, Mutex, MutexGuard, Once, OnceLock};
use std::thread;
use std::time::Duration;

mod common;
use common::{insert, DropLedger, Tracked, Watchdog};

/// How long a wait that should succeed may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// Handlers and drops that panic on purpose put this in their message.
const EXPECTED_PANIC: &str = "expected test panic";

/// One test at a time (see the module docs); a failed test does not
/// poison the others.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The serial lock, then a watchdog for `test`, with expected panics quiet.
fn start(test: &str) -> (MutexGuard<'static, ()>, Watchdog) {
    let serial = serial();
    quiet_expected_panics();
    (serial, common::watchdog(test, Duration::from_secs(100)))
}

/// Keeps the panics the tests provoke out of the output.
fn quiet_expected_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let expected = payload.is::<NonStringPayload>()
                || payload
                    .downcast_ref::<String>()
                    .is_some_and(|message| message.contains(EXPECTED_PANIC))
                || payload
                    .downcast_ref::<&str>()
                    .is_some_and(|message| message.contains(EXPECTED_PANIC));
            if !expected {
                report(info);
            }
        }));
    });
}

/// The threads of this process.
#[cfg(target_os = "linux")]
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task lists this process's threads")
        .count()
}

/// The id of the calling thread, for [`parked`].
#[cfg(target_os = "linux")]
fn thread_id() -> String {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    link.file_name().unwrap().to_string_lossy().into_owned()
}

/// Whether thread `tid` of this process is asleep (blocked: parked on a
/// futex, joining, waiting for a lock), from `/proc`'s state letter.
#[cfg(target_os = "linux")]
fn parked(tid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    // "tid (name) S ...": the state follows the last ')'.
    let state = stat[stat.rfind(')').unwrap() + 1..].trim_start();
    state.starts_with('S')
}

/// Yields until thread `tid` is asleep. Under the watchdog.
#[cfg(target_os = "linux")]
fn until_parked(tid: &str) {
    while !parked(tid) {
        thread::yield_now();
    }
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Returns once the handler's captures have been dropped: `released` was
/// captured by it, and the other end is `gone`.
#[track_caller]
fn until_released(gone: &mpsc::Receiver<()>) {
    assert_eq!(
        gone.recv_timeout(PATIENCE),
        Err(RecvTimeoutError::Disconnected),
        "the worker dropped the handler"
    );
}

/// `count` one-number events in a fresh stream.
fn numbers(store: &MemoryStore<u64>, count: u64) -> Position {
    insert(
        store,
        Transaction::new().append(StreamId::new(), ExpectedVersion::Any, 0..count),
    )
    .last_position()
    .unwrap()
}

// ---------------------------------------------------------------------------
// 1. Async waits: no thread per wait, and an abandoned wait holds nothing
// ---------------------------------------------------------------------------

/// Each trait wait that could not answer at once started a thread that
/// lived for the wait's whole timeout: 200 waits abandoned after 1 ms left
/// about 200 threads behind. The one thread allowed is futures-timer's
/// global helper, started by the first wait (the warm-up) and shared by all.
#[cfg(target_os = "linux")]
#[test]
fn abandoned_async_waits_leave_no_thread_behind() {
    let _guards = start("abandoned_async_waits_leave_no_thread_behind");
    current_thread_runtime().block_on(async {
        let store = MemoryStore::<u64>::new();
        let handle = EventStore::spawn_subscriber(&store, Selector::all(), |_| {
            Ok::<_, Infallible>(Flow::Continue)
        })
        .await
        .unwrap();
        let never = Position(1_000_000);
        let abandon = || {
            tokio::time::timeout(
                Duration::from_millis(1),
                handle.wait_processed(never, Duration::from_secs(3600)),
            )
        };
        assert!(abandon().await.is_err(), "warm-up: nothing to wait for");
        let before = threads();
        for _ in 0..200 {
            assert!(abandon().await.is_err());
        }
        let after = threads();
        // The lock keeps other tests from starting threads; threads of an
        // earlier test may still be exiting, so the count may drop.
        assert!(
            after <= before,
            "{} threads left behind by 200 abandoned waits",
            after - before
        );
        // The handle still answers, through the same signal.
        let last = numbers(&store, 3);
        assert_eq!(handle.wait_processed(last, PATIENCE).await, Ok(()));
        handle.cancel().await;
        assert!(handle.wait().await.is_ok());
    });
}

/// An abandoned wait owned the subscriber (the helper thread held it): after
/// the handle was dropped, which is documented to cancel, the handler still
/// ran for new events, and the store's events were never dropped (rule 24).
#[test]
fn a_dropped_handle_with_abandoned_waits_stops_its_handler_and_releases_the_store() {
    let _guards = start("dropped_handle_with_abandoned_waits");
    current_thread_runtime().block_on(async {
        let mut ledger = DropLedger::default();
        let store = MemoryStore::<Tracked>::new();
        let handled = Arc::new(AtomicUsize::new(0));
        let (released, gone) = mpsc::channel::<()>();
        let handle = {
            let handled = Arc::clone(&handled);
            EventStore::spawn_subscriber(&store, Selector::all(), move |_| {
                let _ = &released;
                handled.fetch_add(1, Ordering::SeqCst);
                Ok::<_, Infallible>(Flow::Continue)
            })
            .await
            .unwrap()
        };
        let first = insert(
            &store,
            Transaction::new().append(StreamId::new(), ExpectedVersion::Any, ledger.events(2)),
        );
        let last = first.last_position().unwrap();
        assert_eq!(handle.wait_processed(last, PATIENCE).await, Ok(()));
        for _ in 0..10 {
            let wait = handle.wait_processed(Position(1_000), Duration::from_secs(3600));
            assert!(tokio::time::timeout(Duration::from_millis(1), wait)
                .await
                .is_err());
        }
        drop(handle);
        // Committed after the drop: never handled.
        insert(
            &store,
            Transaction::new().append(StreamId::new(), ExpectedVersion::Any, ledger.events(2)),
        );
        until_released(&gone);
        assert_eq!(handled.load(Ordering::SeqCst), 2);
        assert_eq!(ledger.drops(), [0; 4]);
        drop(store);
        assert_eq!(
            ledger.drops(),
            [1; 4],
            "the last store handle took every event"
        );
    });
}

// ---------------------------------------------------------------------------
// 2. Dropping a handle never blocks an executor thread
// ---------------------------------------------------------------------------

/// A handler feeding a bounded channel that a task of the same
/// current-thread runtime drains: dropping the handle joined the worker on
/// the runtime's only thread, and the worker waited for the drain, forever.
#[test]
fn dropping_a_handle_on_a_current_thread_runtime_does_not_wait_for_the_handler() {
    let _guards = start("dropping_a_handle_on_a_current_thread_runtime");
    current_thread_runtime().block_on(async {
        let store = MemoryStore::<u64>::new();
        numbers(&store, 10);
        let (feed, mut drain) = tokio::sync::mpsc::channel::<u64>(1);
        let handle = EventStore::spawn_subscriber(&store, Selector::all(), move |event| {
            // Blocks while the channel is full.
            match feed.blocking_send(*event.payload) {
                Ok(()) => Ok::<_, Infallible>(Flow::Continue),
                Err(_) => Ok(Flow::Stop),
            }
        })
        .await
        .unwrap();
        // The first event fills the channel; nobody drains until the drop
        // has returned, so the handler blocks on the second.
        assert_eq!(handle.wait_processed(Position(0), PATIENCE).await, Ok(()));
        drop(handle);
        // The worker stops after the call in progress and drops the
        // handler, closing the channel.
        let mut received = 0;
        while drain.recv().await.is_some() {
            received += 1;
        }
        assert!(
            (1..=2).contains(&received),
            "{received} events after the drop"
        );
    });
}

/// `cancel().await` waits for the handler without blocking the runtime's
/// thread, so another task of that thread can drain the channel it feeds.
#[test]
fn cancel_awaited_on_a_current_thread_runtime_lets_another_task_drain_the_handler() {
    let _guards = start("cancel_awaited_on_a_current_thread_runtime");
    current_thread_runtime().block_on(async {
        let store = MemoryStore::<u64>::new();
        numbers(&store, 10);
        let (feed, mut drain) = tokio::sync::mpsc::channel::<u64>(1);
        let handle = EventStore::spawn_subscriber(&store, Selector::all(), move |event| match feed
            .blocking_send(*event.payload)
        {
            Ok(()) => Ok::<_, Infallible>(Flow::Continue),
            Err(_) => Ok(Flow::Stop),
        })
        .await
        .unwrap();
        assert_eq!(handle.wait_processed(Position(0), PATIENCE).await, Ok(()));
        let drainer = tokio::spawn(async move { while drain.recv().await.is_some() {} });
        handle.cancel().await;
        assert!(handle.is_finished());
        drainer.await.unwrap();
        assert!(handle.wait().await.is_ok());
    });
}

// ---------------------------------------------------------------------------
// 3. A panicking event-type name ends the subscription visibly
// ---------------------------------------------------------------------------

/// Events whose type name panics for one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Named {
    Known,
    Unnamed,
}

impl EventType for Named {
    fn event_type(&self) -> &str {
        match self {
            Named::Known => "Known",
            Named::Unnamed => panic!("{EXPECTED_PANIC}: this event has no type name"),
        }
    }
}

fn known_unnamed_known() -> MemoryStore<Named> {
    let store = MemoryStore::new();
    insert(
        &store,
        Transaction::new().append(
            StreamId::new(),
            ExpectedVersion::Any,
            [Named::Known, Named::Unnamed, Named::Known],
        ),
    );
    store
}

/// Asserts that `subscriber` ended as a handler panic at position 1 would
/// end it: finished, waits `Ended`, and the panic with the event's context.
#[track_caller]
fn ended_by_the_naming_panic_at_position_1<X: std::fmt::Debug>(subscriber: &Subscriber<X>) {
    assert_eq!(
        subscriber.wait_processed(Position(2), PATIENCE),
        Err(WaitError::Ended)
    );
    assert!(subscriber.is_finished());
    match subscriber.wait() {
        Err(SubscriberError::Handler(HandlerError {
            failure: HandlerFailure::Panic(message),
            event,
        })) => {
            assert!(message.contains("this event has no type name"), "{message}");
            assert_eq!(event.position, Position(1));
            assert_eq!(event.event_type, None, "naming it panicked");
        }
        other => panic!("expected the naming panic at position 1, got {other:?}"),
    }
    assert_eq!(subscriber.processed(), Some(Position(0)));
}

/// The type filter named the event outside the panic guard: the worker
/// thread died, `is_finished` stayed false, waits timed out, and `wait` and
/// the drop panicked.
#[test]
fn a_panicking_type_name_in_a_type_filter_ends_the_subscriber_like_a_handler_panic() {
    let _guards = start("a_panicking_type_name_in_a_type_filter");
    let store = known_unnamed_known();
    let handled = Arc::new(AtomicUsize::new(0));
    let subscriber = {
        let handled = Arc::clone(&handled);
        store.spawn_subscriber(Selector::all().only_types(["Known"]), move |_| {
            handled.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Infallible>(Flow::Continue)
        })
    };
    ended_by_the_naming_panic_at_position_1(&subscriber);
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    subscriber.cancel();
    drop(subscriber);
}

/// With type names on, the name of the event a handler failed on was
/// computed for the error's context outside the guard, with the same
/// result as above.
#[test]
fn a_panicking_type_name_for_a_failed_handlers_context_ends_the_subscriber_visibly() {
    let _guards = start("a_panicking_type_name_for_a_failed_handler");
    let store = known_unnamed_known();
    let subscriber = store.spawn_subscriber(Selector::all().with_type_names(), |event| match event
        .payload()
    {
        Named::Known => Ok(Flow::Continue),
        Named::Unnamed => Err("the handler failed"),
    });
    ended_by_the_naming_panic_at_position_1(&subscriber);
    subscriber.cancel();
    drop(subscriber);
}

// ---------------------------------------------------------------------------
// 4. Every other callback of user code runs under the guard
// ---------------------------------------------------------------------------

/// A panic payload that is not a string and panics when dropped.
struct NonStringPayload;

impl Drop for NonStringPayload {
    fn drop(&mut self) {
        panic!("{EXPECTED_PANIC}: the payload's drop");
    }
}

/// Panics when dropped (as a handler's capture, or a handler's error).
#[derive(Debug)]
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("{EXPECTED_PANIC}: a drop");
    }
}

/// The worker dropped a handler's non-string panic payload outside the
/// guard: its drop's panic killed the worker, without an outcome.
#[test]
fn a_panic_payload_whose_drop_panics_ends_the_subscriber_with_the_handlers_panic() {
    let _guards = start("a_panic_payload_whose_drop_panics");
    let store = MemoryStore::<u64>::new();
    numbers(&store, 3);
    let subscriber = store.spawn_subscriber(Selector::all(), |event| {
        if *event.payload() == 1 {
            std::panic::panic_any(NonStringPayload);
        }
        Ok::<_, Infallible>(Flow::Continue)
    });
    assert_eq!(
        subscriber.wait_processed(Position(1), PATIENCE),
        Err(WaitError::Ended)
    );
    assert!(subscriber.is_finished());
    match subscriber.wait() {
        Err(SubscriberError::Handler(HandlerError {
            failure: HandlerFailure::Panic(message),
            event,
        })) => {
            assert!(message.contains("non-string payload"), "{message}");
            assert_eq!(event.position, Position(1));
        }
        other => panic!("expected the handler's panic, got {other:?}"),
    }
    subscriber.cancel();
    drop(subscriber);
}

/// The worker dropped the handler (and what it captured) after setting the
/// outcome, outside the guard: a panicking capture killed it half-way.
#[test]
fn a_handler_capture_whose_drop_panics_ends_the_subscriber_with_that_panic() {
    let _guards = start("a_handler_capture_whose_drop_panics");
    for stop_by_cancel in [false, true] {
        let store = MemoryStore::<u64>::new();
        let last = numbers(&store, 2);
        let capture = PanicsOnDrop;
        let subscriber = store.spawn_subscriber(Selector::all(), move |_| {
            let _ = &capture;
            Ok::<_, Infallible>(if stop_by_cancel {
                Flow::Continue
            } else {
                Flow::Stop
            })
        });
        if stop_by_cancel {
            assert_eq!(subscriber.wait_processed(last, PATIENCE), Ok(()));
            subscriber.cancel();
        }
        assert_eq!(
            subscriber.wait_processed(Position(100), PATIENCE),
            Err(WaitError::Ended)
        );
        assert!(subscriber.is_finished());
        match subscriber.wait() {
            Err(SubscriberError::Panicked(message)) => {
                assert!(message.contains("a drop"), "{message}")
            }
            other => panic!("expected the capture's panic, got {other:?}"),
        }
        subscriber.cancel();
        drop(subscriber);
    }
}

/// A handler error whose drop panics, dropped with the handle that never
/// took it, or with the outcome: neither `wait` nor the drop panics.
#[test]
fn a_handler_error_whose_drop_panics_never_panics_a_call_on_the_handle() {
    let _guards = start("a_handler_error_whose_drop_panics");
    for take_it in [false, true] {
        let store = MemoryStore::<u64>::new();
        numbers(&store, 2);
        let subscriber = store.spawn_subscriber(Selector::all(), |_| Err(PanicsOnDrop));
        assert_eq!(
            subscriber.wait_processed(Position(0), PATIENCE),
            Err(WaitError::Ended)
        );
        assert!(matches!(
            subscriber.wait(),
            Err(SubscriberError::Handler(HandlerError {
                failure: HandlerFailure::Error(PanicsOnDrop),
                ..
            }))
        ));
        if take_it {
            // The caller owns the error now, and its drop is theirs.
            let outcome = subscriber.into_outcome();
            std::mem::forget(outcome);
        } else {
            drop(subscriber);
        }
    }
}

// ---------------------------------------------------------------------------
// 5. No deadlock, whichever threads call cancel and wait
// ---------------------------------------------------------------------------

/// A handler cancelled its own subscriber while another thread was in
/// `wait` (or `cancel`) on it: that thread held the join lock while
/// joining, and the worker blocked on the lock in its own `cancel`.
#[cfg(target_os = "linux")]
#[test]
fn a_handler_cancelling_itself_while_another_thread_waits_on_it_does_not_deadlock() {
    let _guards = start("a_handler_cancelling_itself_while_another_thread_waits");
    for outside_cancels in [false, true] {
        let store = MemoryStore::<u64>::new();
        let own: Arc<OnceLock<Subscriber<Infallible>>> = Arc::new(OnceLock::new());
        let (go, gate) = mpsc::channel::<()>();
        let (entering, entered) = mpsc::channel::<()>();
        let subscriber = {
            let own = Arc::clone(&own);
            let gate = Mutex::new(gate);
            store.spawn_subscriber(Selector::all(), move |_| {
                entering.send(()).unwrap();
                gate.lock().unwrap().recv().unwrap();
                own.get().unwrap().cancel();
                Ok(Flow::Continue)
            })
        };
        assert!(own.set(subscriber).is_ok());
        numbers(&store, 3);
        let subscriber = own.get().unwrap();
        // The handler runs (before this, an outside cancel could stop the
        // subscriber before its first event, and the handler never run).
        entered.recv().unwrap();
        thread::scope(|scope| {
            let (tid_out, tid_in) = mpsc::channel();
            let outside = scope.spawn(move || {
                tid_out.send(thread_id()).unwrap();
                if outside_cancels {
                    subscriber.cancel();
                    assert!(subscriber.is_finished());
                } else {
                    assert_eq!(subscriber.wait(), Ok(()));
                }
            });
            // The outside thread is asleep inside `wait` or `cancel`.
            until_parked(&tid_in.recv().unwrap());
            go.send(()).unwrap();
            outside.join().unwrap();
        });
        assert_eq!(subscriber.processed(), Some(Position(0)));
    }
}

/// Two handlers that cancel each other's subscriber, both inside their
/// handler at once: each joined the other's worker.
#[test]
fn two_handlers_cancelling_each_others_subscriber_do_not_deadlock() {
    let _guards = start("two_handlers_cancelling_each_other");
    let store = MemoryStore::<u64>::new();
    let both_inside = Arc::new(Barrier::new(2));
    let subscribers: Arc<[OnceLock<Subscriber<Infallible>>; 2]> =
        Arc::new([OnceLock::new(), OnceLock::new()]);
    for me in 0..2 {
        let (both_inside, others) = (Arc::clone(&both_inside), Arc::clone(&subscribers));
        let mut first = true;
        let subscriber = store.spawn_subscriber(Selector::all(), move |_| {
            // On the first event only: the other may stop before a second.
            if std::mem::take(&mut first) {
                both_inside.wait();
                others[1 - me].get().unwrap().cancel();
            }
            Ok(Flow::Continue)
        });
        assert!(subscribers[me].set(subscriber).is_ok());
    }
    numbers(&store, 3);
    for subscriber in subscribers.iter() {
        let subscriber = subscriber.get().unwrap();
        assert_eq!(subscriber.wait(), Ok(()));
        assert!(subscriber.processed() >= Some(Position(0)));
    }
}

/// `wait_processed` from the subscriber's own handler waited for its
/// timeout (forever with `Duration::MAX`): it cannot progress while its
/// handler waits. Now it answers at once; so do `wait_caught_up` and
/// `wait`, and a position already passed is still `Ok`.
#[test]
fn waits_from_the_subscribers_own_handler_answer_at_once() {
    let _guards = start("waits_from_the_subscribers_own_handler");
    let store = MemoryStore::<u64>::new();
    let own: Arc<OnceLock<Subscriber<Infallible>>> = Arc::new(OnceLock::new());
    let (report, answers) = mpsc::channel();
    let (go, gate) = mpsc::channel::<()>();
    let subscriber = {
        let own = Arc::clone(&own);
        let gate = Mutex::new(gate);
        store.spawn_subscriber(Selector::all(), move |event| {
            gate.lock().unwrap().recv().unwrap();
            let me = own.get().unwrap();
            if *event.payload() == 1 {
                report
                    .send((
                        me.wait_processed(Position(0), Duration::MAX),
                        me.wait_processed(Position(1), Duration::MAX),
                        me.wait_caught_up(Duration::MAX),
                        me.wait() == Err(&SubscriberError::OwnHandler),
                    ))
                    .unwrap();
                return Ok(Flow::Stop);
            }
            Ok(Flow::Continue)
        })
    };
    assert!(own.set(subscriber).is_ok());
    numbers(&store, 3);
    go.send(()).unwrap();
    go.send(()).unwrap();
    assert_eq!(
        answers.recv_timeout(PATIENCE).unwrap(),
        (
            Ok(()),
            Err(WaitError::OwnHandler),
            Err(WaitError::OwnHandler),
            true
        )
    );
    assert_eq!(own.get().unwrap().wait(), Ok(()));
}

// ---------------------------------------------------------------------------
// 6. Handles hold the store weakly
// ---------------------------------------------------------------------------

/// A cancelled `Subscriber` kept for its outcome kept every event of the
/// store alive after the last store handle was gone (rule 24).
#[test]
fn a_cancelled_subscriber_kept_for_its_outcome_does_not_keep_the_events() {
    let _guards = start("a_cancelled_subscriber_kept_for_its_outcome");
    for drop_store_first in [false, true] {
        let mut ledger = DropLedger::default();
        let store = MemoryStore::<Tracked>::new();
        let last = insert(
            &store,
            Transaction::new().append(StreamId::new(), ExpectedVersion::Any, ledger.events(3)),
        )
        .last_position()
        .unwrap();
        let subscriber =
            store.spawn_subscriber(Selector::all(), |_| Ok::<_, Infallible>(Flow::Continue));
        assert_eq!(subscriber.wait_processed(last, PATIENCE), Ok(()));
        if drop_store_first {
            // The worker holds the last store handle until it ends.
            drop(store);
            assert_eq!(ledger.drops(), [0; 3]);
            subscriber.cancel();
        } else {
            subscriber.cancel();
            drop(store);
        }
        assert_eq!(ledger.drops(), [1; 3], "every event dropped once");
        assert_eq!(subscriber.wait(), Ok(()));
        assert_eq!(subscriber.processed(), Some(last));
        assert_eq!(subscriber.wait_processed(last, PATIENCE), Ok(()));
        assert_eq!(
            subscriber.wait_caught_up(PATIENCE),
            Err(WaitError::Ended),
            "it ended, and the store is gone"
        );
        drop(subscriber);
        assert_eq!(ledger.drops(), [1; 3]);
    }
}

/// The handler subscriber's outcome and the trait's once were two types
/// that wrote a handler's failure with two `Display`s, and the trait's had
/// drifted (it left out the event's type). They are one type now,
/// `SubscriberError<X, B>`, whatever the backend's error `B`: every failure
/// reads the same on every backend, and the memory store's poisoning is its
/// backend error.
#[test]
fn the_handler_subscriber_and_the_trait_describe_a_failure_alike() {
    use hindsight::{
        EventContext, EventId, HandlerError, HandlerFailure, MemoryError, Position, StreamId,
        StreamVersion, SubscriberError, Uuid,
    };
    let event = EventContext {
        position: Position(3),
        event_id: EventId::from_uuid(Uuid::from_u128(1)),
        event_type: Some("Deposited".into()),
        stream: StreamId::from_uuid(Uuid::from_u128(2)),
        version: StreamVersion(0),
        correlation_id: None,
        causation_id: None,
        created_at: std::time::SystemTime::UNIX_EPOCH,
    };
    for failure in [
        HandlerFailure::Error("no such account"),
        HandlerFailure::Panic("boom".to_string()),
    ] {
        let error = HandlerError {
            failure,
            event: event.clone(),
        };
        let memory = SubscriberError::<_, MemoryError>::Handler(error.clone()).to_string();
        let other = SubscriberError::<_, std::io::Error>::Handler(error.clone()).to_string();
        assert_eq!(memory, other);
        assert_eq!(memory, error.to_string());
        assert!(memory.contains("type Deposited"), "{memory}");
    }
    assert_eq!(
        SubscriberError::<&str>::Panicked("drop".into()).to_string(),
        SubscriberError::<&str, std::io::Error>::Panicked("drop".into()).to_string()
    );
    assert_eq!(
        SubscriberError::<&str>::OwnHandler.to_string(),
        SubscriberError::<&str, std::io::Error>::OwnHandler.to_string()
    );
    let poisoned = SubscriberError::<&str>::Backend(MemoryError::Poisoned);
    assert_eq!(
        poisoned.to_string(),
        format!("backend error: {}", hindsight::InsertError::Poisoned)
    );
    assert!(poisoned.to_string().contains("the store is poisoned"));
    let lost = SubscriberError::<std::io::Error, _>::Backend(std::io::Error::other("lost"));
    assert!(std::error::Error::source(&lost).is_some());
}
