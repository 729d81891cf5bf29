//! Subscribers: a pull subscription driven by a thread of its own, calling
//! a handler for each event, with cancel, wait, and deterministic waits for
//! tests ("has it processed position p yet?").
//!
//! Every piece of user code the worker runs (the handler, `EventType`
//! names, a panic payload's and an error's `Drop`, the handler's captures
//! and, when the worker holds the store's last handle, the events' `Drop`)
//! runs under `catch_unwind`: a panic ends the subscription with an outcome
//! that says so. The handle holds the store weakly and never joins the
//! worker thread: waits watch the `ended` flag through the progress
//! `Signal`, so no lock is held while waiting and no wait can deadlock on
//! another; the async waits await the same signal (no thread per wait).

// The outcome (`Result<(), SubscriberError<X>>`, with the event's context)
// is made and moved once per subscription, never on a hot path.
#![allow(clippy::result_large_err)]

use super::error::{EventContext, HandlerError, HandlerFailure, SubscriberError, WaitError};
use super::{Subscription, SubscriptionError};
use crate::backend::MemoryError;
use crate::envelope::Envelope;
use crate::ids::{Position, StreamId};
use crate::selector::Selector;
use crate::signal::Signal;
use crate::store::{Inner, MemoryStore};
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};
use std::any::Any;
use std::cell::Cell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

/// What a handler tells its subscription to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Deliver the next event.
    Continue,
    /// End the subscription now, even in the middle of a transaction;
    /// [`Subscriber::wait`] then returns `Ok`.
    Stop,
}

/// What the worker and the handle share.
struct Shared<X> {
    /// Set by `cancel`; the worker stops at its next check.
    cancelled: AtomicBool,
    /// Every position below this has been handled or passed over.
    processed: AtomicU64,
    /// Set once `outcome` is set and the worker has released everything it
    /// held (handler, store): it touches nothing more but this `Shared`.
    ended: AtomicBool,
    /// Set by the worker just before `ended`; taken once, by the handle.
    outcome: Mutex<Option<Result<(), SubscriberError<X>>>>,
    /// Whether the worker still holds its handle to the store. Held locked
    /// by whoever borrows the store through the handle's weak reference, so
    /// that the borrow is never the store's last handle (the worker's is
    /// dropped only after this is cleared): dropping the events never falls
    /// to a `cancel` or a wait.
    store_held: Mutex<bool>,
    /// Woken when `processed` moves and when the worker ends.
    progress: Signal,
    /// Waits (`wait_processed`, `wait_caught_up`) in progress that need
    /// `processed` to follow every commit. A one-stream worker parks on its
    /// stream's signal (targeted wake-ups) and so learns of other streams'
    /// commits only when its own stream moves; while this is non-zero it
    /// parks on the watermark's signal instead, and publishes every commit
    /// it passes. Counted by `Watch`.
    watchers: AtomicUsize,
}

impl<X> Drop for Shared<X> {
    fn drop(&mut self) {
        // An outcome nobody took: the handler's error is user code.
        let outcome = crate::sync::lock(&self.outcome).take();
        drop_guarded(outcome);
    }
}

/// The store, seen from a handle that does not know its event type.
trait StoreLink: Send + Sync {
    /// Wakes a worker of `stream` (`None`: all streams), wherever it is
    /// parked: on its stream's signal, or on the watermark's.
    fn wake_worker(&self, stream: Option<StreamId>);
    /// Wakes the sleepers of `stream`'s signal only.
    fn wake_stream(&self, stream: StreamId);
    /// The end of the committed prefix.
    fn committed(&self) -> u64;
}

impl<E: Send + Sync> StoreLink for Inner<E> {
    fn wake_worker(&self, stream: Option<StreamId>) {
        if let Some(id) = stream {
            self.wake_stream(id);
        }
        // A one-stream worker parks here too while a wait watches it.
        self.log.watermark.signal.wake();
    }
    fn wake_stream(&self, id: StreamId) {
        // The worker holds its stream (its cursor's pin) until it lets go
        // of the store, so while it could be parked the stream is indexed.
        self.streams.with(id, |stream| stream.signal.wake());
    }
    fn committed(&self) -> u64 {
        self.log.watermark.get()
    }
}

thread_local! {
    /// Whether this thread is a subscriber's worker: `cancel` called from
    /// any handler only requests, so that handlers that cancel each other
    /// never wait for each other.
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// A running subscriber: a handler on a thread of its own; see [`MemoryStore::spawn_subscriber`].
///
/// `Send + Sync`: one thread may cancel while another waits. No call on it
/// panics or deadlocks, whichever threads (its own worker included) make
/// them at the same time: nothing is locked while waiting, and the handle
/// never joins the worker thread.
///
/// Dropping the handle requests cancellation and returns at once, without
/// waiting (so a drop never blocks, on an async executor or in a handler):
/// the worker stops before the next event, releases the handler and the
/// store, and exits on its own. [`cancel`](Self::cancel) waits for that.
///
/// The handle holds the store weakly: once the worker has ended, the last
/// store handle takes every event with it ([contract](crate::contract)
/// rule 24), even while this handle is kept for its outcome.
pub struct Subscriber<X> {
    shared: Arc<Shared<X>>,
    store: Weak<dyn StoreLink>,
    /// The selected stream, for targeted wake-ups; `None` for all streams.
    stream: Option<StreamId>,
    /// The worker thread, to recognise calls from its own handler.
    worker: ThreadId,
    /// The outcome once taken from `shared`, for `wait`'s reference.
    outcome: OnceLock<Result<(), SubscriberError<X>>>,
    /// What `wait` returns (by reference) when called from its own handler.
    own_handler: SubscriberError<X>,
}

impl<X: Send + Sync + 'static> Subscriber<X> {
    /// Starts a worker thread running `handler` on what `selector` selects
    /// in `store`; see [`MemoryStore::spawn_subscriber`].
    ///
    /// With the `tracing` feature, `trace` (given by the `EventStore`
    /// implementation, `None` from the inherent API) is the span the worker
    /// runs in and the dispatcher it sets as its default.
    pub(crate) fn spawn<E, H>(
        store: &MemoryStore<E>,
        selector: Selector<E>,
        handler: H,
        #[cfg(feature = "tracing")] trace: Option<WorkerTrace>,
    ) -> Self
    where
        E: Send + Sync + 'static,
        H: FnMut(Envelope<'_, E>) -> Result<Flow, X> + Send + 'static,
    {
        // The worker filters by type itself, under the panic guard, with the
        // event in hand for the context: the cursor delivers every event of
        // the selected streams.
        let every_type = Selector {
            types: None,
            namer: None,
            ..selector.clone()
        };
        let stream = selector.stream;
        let subscription = store.subscribe(every_type);
        let shared = Arc::new(Shared {
            cancelled: AtomicBool::new(false),
            processed: AtomicU64::new(subscription.cursor().passed()),
            ended: AtomicBool::new(false),
            outcome: Mutex::new(None),
            store_held: Mutex::new(true),
            progress: Signal::new(),
            watchers: AtomicUsize::new(0),
        });
        let worker = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("hindsight-subscriber".into())
                .spawn(move || {
                    #[cfg(feature = "tracing")]
                    if let Some(trace) = trace {
                        return trace.run(|| run(subscription, selector, handler, &shared));
                    }
                    run(subscription, selector, handler, &shared)
                })
                .expect("failed to spawn a subscriber thread")
        };
        let store: Arc<dyn StoreLink> = store.inner.clone();
        Subscriber {
            shared,
            store: Arc::downgrade(&store),
            stream,
            // Detached: every wait watches `ended` instead of joining.
            worker: worker.thread().id(),
            outcome: OnceLock::new(),
            own_handler: SubscriberError::OwnHandler,
        }
    }
}

/// With the `tracing` feature: the span a subscriber's worker thread runs
/// in, and the dispatcher (the spawning thread's default) its handler's
/// events go to.
#[cfg(feature = "tracing")]
pub(crate) struct WorkerTrace {
    pub(crate) span: tracing::Span,
    pub(crate) dispatch: tracing::Dispatch,
}

#[cfg(feature = "tracing")]
impl WorkerTrace {
    /// Runs the worker with `dispatch` as the thread's default, inside `span`.
    fn run(self, worker: impl FnOnce()) {
        tracing::dispatcher::with_default(&self.dispatch, || self.span.in_scope(worker));
    }
}

/// The worker thread: delivers, then releases what it held, then sets the
/// outcome and `ended`, each step under the panic guard.
fn run<E, X, H>(
    subscription: Subscription<E>,
    selector: Selector<E>,
    handler: H,
    shared: &Shared<X>,
) where
    H: FnMut(Envelope<'_, E>) -> Result<Flow, X>,
{
    ON_WORKER.with(|on| on.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let (mut subscription, mut handler) = (subscription, handler);
        let outcome = deliver(&mut subscription, &selector, &mut handler, shared);
        // Clear the flag before dropping our handle: a borrow through the
        // weak reference, made under the lock, then never outlives it.
        *crate::sync::lock(&shared.store_held) = false;
        // The store first (it may be its last handle: the events go), then
        // the handler's captures.
        let outcome = release(outcome, subscription);
        release(outcome, handler)
    }))
    .unwrap_or_else(|panic| Err(SubscriberError::Panicked(panic_message(panic))));
    *crate::sync::lock(&shared.outcome) = Some(outcome);
    // SeqCst: ordered before `progress.wake`'s fence, like every state
    // change a progress waiter checks; its Acquire loads in `is_finished`
    // then see the outcome (set under the mutex before) and the last
    // `publish`.
    shared.ended.store(true, Ordering::SeqCst);
    shared.progress.wake();
}

/// Hands events to the handler until the subscription ends; returns how.
fn deliver<E, X, H>(
    subscription: &mut Subscription<E>,
    selector: &Selector<E>,
    handler: &mut H,
    shared: &Shared<X>,
) -> Result<(), SubscriberError<X>>
where
    H: FnMut(Envelope<'_, E>) -> Result<Flow, X>,
{
    // Acquire: pairs with the SeqCst store in `request_cancel`; nothing is
    // read through the flag, and `Signal`'s fences order it for parking.
    let cancelled = || shared.cancelled.load(Ordering::Acquire);
    loop {
        while let Some((envelope, _)) = subscription.advance() {
            // Checked after `advance`: an event committed after a cancel
            // request (its watermark move acquired above) is never handled.
            if cancelled() {
                return Ok(());
            }
            if selector.types.is_some() {
                match catch_unwind(AssertUnwindSafe(|| {
                    selector.selects_type(envelope.payload())
                })) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(panic) => {
                        let message = panic_message(panic);
                        return Err(SubscriberError::Handler(HandlerError {
                            failure: HandlerFailure::Panic(message),
                            event: EventContext::of(envelope, None),
                        }));
                    }
                }
            }
            let position = envelope.position().0;
            let failed = match catch_unwind(AssertUnwindSafe(|| handler(envelope))) {
                Ok(Ok(flow)) => {
                    publish(shared, position + 1);
                    if flow == Flow::Stop {
                        return Ok(());
                    }
                    continue;
                }
                Ok(Err(error)) => HandlerFailure::Error(error),
                Err(panic) => HandlerFailure::Panic(panic_message(panic)),
            };
            return Err(failure(failed, envelope, selector));
        }
        // Everything committed is passed, selected or not.
        publish(shared, subscription.cursor().passed());
        // SeqCst: pairs with the SeqCst increment in `Watch::new` (see
        // there); a stale zero is corrected by the stop condition below,
        // checked after this wait's registration fence.
        let wide = shared.watchers.load(Ordering::SeqCst) > 0;
        // A narrow wait also ends when a wait starts watching, so that the
        // worker comes back here and waits wide.
        let stop = || cancelled() || (!wide && shared.watchers.load(Ordering::SeqCst) > 0);
        match subscription.wait_more(None, &stop, wide) {
            Ok(true) => {}
            Ok(false) if cancelled() => return Ok(()),
            // A watch started: look again, publish, then wait wide.
            Ok(false) => {}
            Err(SubscriptionError::Poisoned) => {
                return Err(SubscriberError::Backend(MemoryError::Poisoned))
            }
        }
    }
}

/// Records that every position below `processed` is handled or passed.
#[inline]
fn publish<X>(shared: &Shared<X>, processed: u64) {
    // Release: pairs with the Acquire load in `Subscriber::processed_end`,
    // so a waiter that sees the new value also sees the handler's effects.
    shared.processed.fetch_max(processed, Ordering::Release);
    shared.progress.wake();
}

/// The outcome of a handler that failed on `envelope`, with the event's
/// type named (under the guard) if the selector names types. If naming it
/// panics, the failure is that panic, and the handler's is dropped.
fn failure<E, X>(
    failed: HandlerFailure<X>,
    envelope: Envelope<'_, E>,
    selector: &Selector<E>,
) -> SubscriberError<X> {
    let named = selector
        .namer
        .map(|name| catch_unwind(AssertUnwindSafe(|| name(envelope.payload()).to_owned())));
    let (failed, event_type) = match named {
        None => (failed, None),
        Some(Ok(name)) => (failed, Some(name)),
        Some(Err(panic)) => {
            drop_guarded(failed);
            (HandlerFailure::Panic(panic_message(panic)), None)
        }
    };
    SubscriberError::Handler(HandlerError {
        failure: failed,
        event: EventContext::of(envelope, event_type),
    })
}

/// Drops `value` (user code) under the guard; a panic becomes the outcome
/// unless the subscription already failed.
fn release<X, T>(
    outcome: Result<(), SubscriberError<X>>,
    value: T,
) -> Result<(), SubscriberError<X>> {
    match catch_unwind(AssertUnwindSafe(|| drop(value))) {
        Ok(()) => outcome,
        Err(panic) => {
            let message = panic_message(panic);
            match outcome {
                Ok(()) => Err(SubscriberError::Panicked(message)),
                failed => failed,
            }
        }
    }
}

/// The message of a panic; drops a payload that is not a string under the
/// guard.
fn panic_message(panic: Box<dyn Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(message) => *message,
        Err(panic) => match panic.downcast::<&'static str>() {
            Ok(message) => (*message).to_owned(),
            Err(panic) => {
                drop_guarded(panic);
                "a panic with a non-string payload".to_owned()
            }
        },
    }
}

/// Drops `value`, whose `Drop` is user code, without letting a panic out.
/// The payload of such a panic is leaked, not dropped: its own `Drop` is
/// user code too, and could panic in turn.
fn drop_guarded<T>(value: T) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| drop(value))) {
        std::mem::forget(panic);
    }
}

impl<X> Subscriber<X> {
    /// Stops the subscription and returns once its worker has ended: the
    /// handler will never be called again, and the worker has dropped the
    /// handler (with what it captured) and its handle to the store.
    ///
    /// Idempotent, safe after the subscription ended on its own (which it
    /// then does not change: a handler failure stays the outcome), and wakes
    /// a parked subscriber. Without a failure, [`wait`](Self::wait) then
    /// returns `Ok`.
    ///
    /// Called from inside any subscriber's handler (this one's or
    /// another's), it only requests, like
    /// [`request_cancel`](Self::request_cancel), and returns at once: the
    /// subscription stops when its current handler call returns. So
    /// handlers that cancel each other never wait for each other. (A
    /// handler that must know the other has stopped can call its
    /// [`wait`](Self::wait), which blocks.)
    ///
    /// Waiting is for the handler's current call to return: a handler that
    /// blocks on the thread that calls `cancel` (a full channel only that
    /// thread drains) blocks it too. [`request_cancel`] or dropping the
    /// handle never waits.
    ///
    /// [`request_cancel`]: Self::request_cancel
    ///
    /// ```
    /// use hindsight::{Flow, MemoryStore, Selector};
    /// let store = MemoryStore::<u8>::new();
    /// let subscriber = store.spawn_subscriber(Selector::all(), |_| Ok::<_, ()>(Flow::Continue));
    /// subscriber.cancel();
    /// assert!(subscriber.is_finished());
    /// assert_eq!(subscriber.wait(), Ok(()));
    /// ```
    pub fn cancel(&self) {
        self.request_cancel();
        if ON_WORKER.with(Cell::get) {
            return;
        }
        self.shared.progress.wait_until(|| self.is_finished(), None);
    }

    /// Requests cancellation and returns at once, without waiting for the
    /// worker: it stops before its next event (an event committed after
    /// this call is never handled) and then ends on its own. Idempotent,
    /// harmless after the end, callable from any thread, any handler
    /// included. Dropping the handle does the same.
    ///
    /// ```
    /// use hindsight::{Flow, MemoryStore, Selector};
    /// use std::time::Duration;
    /// let store = MemoryStore::<u8>::new();
    /// let subscriber = store.spawn_subscriber(Selector::all(), |_| Ok::<_, ()>(Flow::Continue));
    /// subscriber.request_cancel();
    /// assert_eq!(subscriber.wait(), Ok(())); // `wait` waits for the end
    /// ```
    pub fn request_cancel(&self) {
        // SeqCst: ordered before `wake_worker`'s fences, so a worker about
        // to park either sees the flag or gets the notification.
        self.shared.cancelled.store(true, Ordering::SeqCst);
        // Without the store the worker has left its loop: nobody to wake.
        self.with_store(|store| store.wake_worker(self.stream));
    }

    /// Makes a one-stream worker publish every commit it passes for as
    /// long as the returned guard lives (see `Shared::watchers`); `None`
    /// for an all-streams worker, which always does.
    fn watch(&self) -> Option<Watch<'_, X>> {
        let stream = self.stream?;
        // SeqCst: pairs with the worker's SeqCst loads; the fence of the
        // wake below then orders it before the worker's sleeper count (the
        // handshake of `Signal`): a worker parked on its stream either sees
        // the count after its own fence or is woken.
        self.shared.watchers.fetch_add(1, Ordering::SeqCst);
        // A worker waiting wide needs no wake: it sees every commit.
        self.with_store(|store| store.wake_stream(stream));
        Some(Watch(&self.shared))
    }

    /// Runs `f` on the store if the worker still holds it; the borrow is
    /// then never the store's last handle (see `Shared::store_held`).
    fn with_store<R>(&self, f: impl FnOnce(&dyn StoreLink) -> R) -> Option<R> {
        let held = crate::sync::lock(&self.shared.store_held);
        if !*held {
            return None;
        }
        let store = self.store.upgrade()?;
        let result = f(&*store);
        drop(store);
        drop(held);
        Some(result)
    }

    /// Whether the caller runs on this subscription's own worker thread.
    fn on_own_worker(&self) -> bool {
        std::thread::current().id() == self.worker
    }

    /// Waits until the subscription ends (by `Stop`, cancel, a handler
    /// failure or a poisoned store) and returns how: `Ok` for `Stop` and
    /// cancel.
    ///
    /// Called from the subscription's own handler, it returns
    /// [`SubscriberError::OwnHandler`] at once instead of waiting for
    /// itself (the subscription has not ended).
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, Flow, MemoryStore, Selector, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// store.insert(Transaction::single(StreamId::new(), ExpectedVersion::Any, 1)).unwrap();
    /// let subscriber = store.spawn_subscriber(Selector::all(), |_| Ok::<_, ()>(Flow::Stop));
    /// assert_eq!(subscriber.wait(), Ok(()));
    /// ```
    pub fn wait(&self) -> Result<(), &SubscriberError<X>> {
        if !self.wait_ended() {
            return Err(&self.own_handler);
        }
        match self.outcome.get_or_init(|| self.take_outcome()) {
            Ok(()) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Waits until the subscription ends and returns how, by value (the
    /// handler's error itself, not a reference to it).
    ///
    /// Called from the subscription's own handler, it returns
    /// [`SubscriberError::OwnHandler`] at once, and the handle it consumed
    /// is dropped (which requests cancellation).
    ///
    /// ```
    /// use hindsight::{Flow, MemoryStore, Selector};
    /// let store = MemoryStore::<u8>::new();
    /// let subscriber = store.spawn_subscriber(Selector::all(), |_| Ok::<_, ()>(Flow::Continue));
    /// subscriber.cancel();
    /// assert_eq!(subscriber.into_outcome(), Ok(()));
    /// ```
    pub fn into_outcome(mut self) -> Result<(), SubscriberError<X>> {
        if !self.wait_ended() {
            return Err(SubscriberError::OwnHandler);
        }
        match self.outcome.take() {
            Some(outcome) => outcome,
            None => self.take_outcome(),
        }
    }

    /// Blocks until the worker has ended; `false` (at once) on the worker.
    fn wait_ended(&self) -> bool {
        if self.is_finished() {
            return true;
        }
        if self.on_own_worker() {
            return false;
        }
        self.shared.progress.wait_until(|| self.is_finished(), None);
        true
    }

    /// Takes the outcome the worker set; call once, after `is_finished`.
    fn take_outcome(&self) -> Result<(), SubscriberError<X>> {
        crate::sync::lock(&self.shared.outcome).take().expect(
            "the worker sets its outcome before `ended`, and only the handle takes it, once",
        )
    }

    /// Whether the subscription has ended: its outcome is set and its
    /// worker has released the handler and the store.
    pub fn is_finished(&self) -> bool {
        // Acquire: pairs with the SeqCst store in `run`; the outcome is then set.
        self.shared.ended.load(Ordering::Acquire)
    }

    /// The last position the subscriber has handled or passed over (events
    /// it does not select count as passed), or `None` before position 0.
    ///
    /// A subscriber of one stream is woken only by its own stream's commits
    /// (targeted wake-ups), so it passes other streams' positions when its
    /// stream moves, or while a [`wait_processed`](Self::wait_processed) or
    /// [`wait_caught_up`](Self::wait_caught_up) is waiting on it: between
    /// those, this can lag behind commits to other streams.
    pub fn processed(&self) -> Option<Position> {
        self.processed_end().checked_sub(1).map(Position)
    }

    /// Waits until the subscriber has handled or passed over `position`
    /// (events it does not select count as passed), for at most `timeout`.
    ///
    /// This is what replaces `sleep` in tests: insert, then wait for the
    /// position the insert returned. Returns [`WaitError::Ended`] at once if
    /// the subscriber ended first, and [`WaitError::OwnHandler`] at once if
    /// called from its own handler for a position it has not passed.
    ///
    /// ```
    /// use hindsight::{Flow, MemoryStore, Position, Selector, WaitError};
    /// use std::time::Duration;
    /// let store = MemoryStore::<u8>::new();
    /// let subscriber = store.spawn_subscriber(Selector::all(), |_| Ok::<_, ()>(Flow::Continue));
    /// assert_eq!(subscriber.wait_processed(Position(0), Duration::ZERO), Err(WaitError::TimedOut));
    /// ```
    pub fn wait_processed(&self, position: Position, timeout: Duration) -> Result<(), WaitError> {
        // Saturating: the last possible position can never be passed, and
        // the wait must time out rather than wrap to "already passed".
        self.wait_processed_end(Some(position.0.saturating_add(1)), timeout)
    }

    /// Waits until the subscriber has handled everything committed when this
    /// is called, for at most `timeout`.
    ///
    /// [`WaitError::Ended`] if it ended first, including when it had ended
    /// (its worker no longer reads the store) when this was called;
    /// [`WaitError::OwnHandler`] as for [`wait_processed`](Self::wait_processed).
    pub fn wait_caught_up(&self, timeout: Duration) -> Result<(), WaitError> {
        self.wait_processed_end(self.caught_up_end(), timeout)
    }

    fn processed_end(&self) -> u64 {
        // Acquire: pairs with the Release `fetch_max` in `publish`.
        self.shared.processed.load(Ordering::Acquire)
    }

    /// The end `wait_caught_up` waits for: the committed prefix now, or
    /// `None` once the worker no longer reads the store (it has ended, or
    /// is ending).
    pub(crate) fn caught_up_end(&self) -> Option<u64> {
        self.with_store(|store| store.committed())
    }

    /// The answer of a wait for `processed >= end` (`None`: never reached,
    /// the subscriber having ended), or `None` while it must go on waiting.
    fn answer(&self, end: Option<u64>) -> Option<Result<(), WaitError>> {
        let reached = || end.is_some_and(|end| self.processed_end() >= end);
        if reached() {
            Some(Ok(()))
        } else if self.is_finished() {
            // The worker's last `publish` happened before `ended`, so a
            // finished worker that has not reached `end` never will.
            Some(if reached() {
                Ok(())
            } else {
                Err(WaitError::Ended)
            })
        } else if self.on_own_worker() {
            Some(Err(WaitError::OwnHandler))
        } else {
            // With `end` unknown, the worker has let go of the store: its
            // end is moments away.
            None
        }
    }

    fn wait_processed_end(&self, end: Option<u64>, timeout: Duration) -> Result<(), WaitError> {
        if let Some(answer) = self.answer(end) {
            return answer;
        }
        let _watch = self.watch();
        let deadline = Instant::now().checked_add(timeout);
        self.shared
            .progress
            .wait_until(|| self.answer(end).is_some(), deadline);
        self.answer(end).unwrap_or(Err(WaitError::TimedOut))
    }

    /// [`wait_processed`](Self::wait_processed), awaited: see
    /// `SubscriberHandle::wait_processed` on `MemorySubscriber`.
    pub(crate) async fn wait_processed_async(
        &self,
        position: Position,
        timeout: Duration,
    ) -> Result<(), WaitError> {
        self.wait_end_async(Some(position.0.saturating_add(1)), timeout)
            .await
    }

    /// Waits asynchronously for `processed >= end` (see `answer`).
    pub(crate) async fn wait_end_async(
        &self,
        end: Option<u64>,
        timeout: Duration,
    ) -> Result<(), WaitError> {
        if let Some(answer) = self.answer(end) {
            return answer;
        }
        // Held across the await: dropping the future ends the watch.
        let _watch = self.watch();
        self.shared
            .progress
            .wait_until_async(|| self.answer(end).is_some(), timeout)
            .await;
        self.answer(end).unwrap_or(Err(WaitError::TimedOut))
    }

    /// [`cancel`](Self::cancel), awaited: requests, then waits for the end
    /// without blocking the thread (on a worker thread it only requests).
    pub(crate) async fn cancel_async(&self) {
        self.request_cancel();
        if ON_WORKER.with(Cell::get) {
            return;
        }
        self.shared
            .progress
            .wait_until_async(|| self.is_finished(), Duration::MAX)
            .await;
    }

    /// [`into_outcome`](Self::into_outcome), awaited.
    pub(crate) async fn into_outcome_async(self) -> Result<(), SubscriberError<X>> {
        if !self.is_finished() && self.on_own_worker() {
            return Err(SubscriberError::OwnHandler);
        }
        self.shared
            .progress
            .wait_until_async(|| self.is_finished(), Duration::MAX)
            .await;
        // Ended: this does not block.
        self.into_outcome()
    }
}

/// A wait watching a one-stream worker (see `Shared::watchers`); ends the
/// watch when dropped.
struct Watch<'a, X>(&'a Shared<X>);

impl<X> Drop for Watch<'_, X> {
    fn drop(&mut self) {
        // Relaxed: the count only widens the worker's waits; a stale
        // non-zero costs it one wide wait, until the next commit.
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<X> Drop for Subscriber<X> {
    /// Requests cancellation and returns at once (see the type's docs).
    fn drop(&mut self) {
        self.request_cancel();
        // An outcome taken but never returned: the error is user code.
        drop_guarded(self.outcome.take());
    }
}

impl<X> fmt::Debug for Subscriber<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber")
            .field("processed", &self.processed())
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}
