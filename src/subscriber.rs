//! Handler subscriptions: a subscription driven by its own thread, calling
//! a handler for each event, with cancel, wait, and deterministic waits for
//! tests ("has it processed position p yet?").

use crate::envelope::Envelope;
use crate::ids::{CorrelationId, EventId, Position, StreamId, StreamVersion};
use crate::selector::Selector;
use crate::signal::Signal;
use crate::store::{Inner, MemoryStore};
use crate::subscription::{Subscription, SubscriptionError};
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// What a handler tells its subscription to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Deliver the next event.
    Continue,
    /// End the subscription now, even in the middle of a transaction;
    /// [`Subscriber::wait`] then returns `Ok`.
    Stop,
}

/// The event a handler failed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContext {
    /// Its global position.
    pub position: Position,
    /// Its id.
    pub event_id: EventId,
    /// Its type name, if the selector names types (see
    /// [`Selector::with_type_names`]).
    pub event_type: Option<String>,
    /// Its stream.
    pub stream: StreamId,
    /// Its stream version.
    pub version: StreamVersion,
    /// Its transaction's correlation id.
    pub correlation_id: Option<CorrelationId>,
    /// Its transaction's creation time.
    pub created_at: SystemTime,
}

impl EventContext {
    fn of<E>(envelope: Envelope<'_, E>, selector: &Selector<E>) -> Self {
        Self {
            position: envelope.position(),
            event_id: envelope.event_id(),
            event_type: selector
                .namer
                .map(|name| name(envelope.payload()).to_owned()),
            stream: envelope.stream_id(),
            version: envelope.version(),
            correlation_id: envelope.correlation_id(),
            created_at: envelope.created_at(),
        }
    }
}

/// How a handler failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerFailure<X> {
    /// It returned this error, unchanged.
    Error(X),
    /// It panicked with this message.
    Panic(String),
}

/// A handler's failure together with the event it failed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError<X> {
    /// What went wrong.
    pub failure: HandlerFailure<X>,
    /// The event the handler was given.
    pub event: EventContext,
}

/// Why a handler subscription ended other than by `Stop` or cancel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriberError<X> {
    /// The handler returned an error or panicked.
    Handler(HandlerError<X>),
    /// The store was poisoned; every committed event was handled.
    Poisoned,
}

impl<X: fmt::Display> fmt::Display for SubscriberError<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriberError::Handler(HandlerError { failure, event }) => {
                match failure {
                    HandlerFailure::Error(error) => write!(f, "handler failed: {error}")?,
                    HandlerFailure::Panic(message) => write!(f, "handler panicked: {message}")?,
                }
                write!(
                    f,
                    " (event {} at position {}, stream {} version {}",
                    event.event_id, event.position, event.stream, event.version
                )?;
                if let Some(event_type) = &event.event_type {
                    write!(f, ", type {event_type}")?;
                }
                write!(f, ")")
            }
            SubscriberError::Poisoned => fmt::Display::fmt(&SubscriptionError::Poisoned, f),
        }
    }
}

impl<X: std::error::Error + 'static> std::error::Error for SubscriberError<X> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SubscriberError::Handler(HandlerError {
                failure: HandlerFailure::Error(error),
                ..
            }) => Some(error),
            _ => None,
        }
    }
}

/// Why a wait on a subscriber's progress returned without reaching its goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitError {
    /// The subscriber ended (Stop, cancel, failure) before passing the
    /// position; [`Subscriber::wait`] says how.
    Ended,
    /// The timeout passed first.
    TimedOut,
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::Ended => write!(f, "the subscriber ended before reaching the position"),
            WaitError::TimedOut => write!(f, "timed out waiting for the subscriber"),
        }
    }
}

impl std::error::Error for WaitError {}

/// What the worker and the handle share.
struct Shared<X> {
    /// Set by `cancel`; the worker stops at its next check.
    cancelled: AtomicBool,
    /// Every position below this has been handled or passed over.
    processed: AtomicU64,
    /// Set once `outcome` is set and the worker will touch nothing more.
    ended: AtomicBool,
    outcome: OnceLock<Result<(), SubscriberError<X>>>,
    /// Woken when `processed` moves and when the worker ends.
    progress: Signal,
}

/// The store, seen from a handle that does not know its event type.
trait StoreLink: Send + Sync {
    /// Wakes everyone parked on the watermark (a cancelled worker among them).
    fn wake_waiters(&self);
    /// The end of the committed prefix.
    fn committed(&self) -> u64;
}

impl<E: Send + Sync> StoreLink for Inner<E> {
    fn wake_waiters(&self) {
        self.log.watermark.signal.wake();
    }
    fn committed(&self) -> u64 {
        self.log.watermark.get()
    }
}

/// A running handler subscription; see [`MemoryStore::spawn_subscriber`].
///
/// `Send + Sync`: one thread may cancel while another waits. Dropping the
/// handle cancels the subscription and waits for its thread.
pub struct Subscriber<X> {
    shared: Arc<Shared<X>>,
    store: Arc<dyn StoreLink>,
    /// Taken and joined by whoever first waits for the worker to exit; held
    /// locked while joining, so every other waiter returns after the exit.
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl<E: Send + Sync + 'static> MemoryStore<E> {
    /// Runs `handler` on every selected event, on a thread of its own, each
    /// exactly once and in position order (history first, then live).
    ///
    /// The handler returns [`Flow::Continue`], [`Flow::Stop`] or an error; a
    /// panic in it is caught. An error or panic ends the subscription, and
    /// [`Subscriber::wait`] returns it with the event's context. Handler
    /// calls never overlap.
    ///
    /// # Panics
    ///
    /// If the operating system cannot start a thread.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, Flow, MemoryStore, Selector, StreamId, Transaction};
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    ///
    /// let store = MemoryStore::new();
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = seen.clone();
    /// let subscriber = store.spawn_subscriber(Selector::all(), move |event| {
    ///     sink.lock().unwrap().push(*event.payload());
    ///     Ok::<_, std::convert::Infallible>(Flow::Continue)
    /// });
    ///
    /// let done = store.insert(Transaction::new().append(StreamId::new(), ExpectedVersion::Any, [1, 2, 3])).unwrap();
    /// // No sleep: wait until the subscriber has handled the insert.
    /// subscriber.wait_processed(done.last_position().unwrap(), Duration::from_secs(10)).unwrap();
    /// assert_eq!(*seen.lock().unwrap(), [1, 2, 3]);
    /// subscriber.cancel();
    /// assert!(subscriber.wait().is_ok());
    /// ```
    pub fn spawn_subscriber<X, H>(&self, selector: Selector<E>, handler: H) -> Subscriber<X>
    where
        X: Send + Sync + 'static,
        H: FnMut(Envelope<'_, E>) -> Result<Flow, X> + Send + 'static,
    {
        let subscription = self.subscribe(selector);
        let shared = Arc::new(Shared {
            cancelled: AtomicBool::new(false),
            processed: AtomicU64::new(subscription.cursor().passed()),
            ended: AtomicBool::new(false),
            outcome: OnceLock::new(),
            progress: Signal::new(),
        });
        let worker = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("hindsight-subscriber".into())
                .spawn(move || run(subscription, handler, &shared))
                .expect("failed to spawn a subscriber thread")
        };
        let store: Arc<dyn StoreLink> = self.inner.clone();
        Subscriber {
            shared,
            store,
            worker: Mutex::new(Some(worker)),
        }
    }
}

/// The worker's loop.
fn run<E, X, H>(mut subscription: Subscription<E>, mut handler: H, shared: &Shared<X>)
where
    H: FnMut(Envelope<'_, E>) -> Result<Flow, X>,
{
    // Acquire: pairs with the SeqCst store in `cancel`; nothing is read
    // through the flag, and `Signal`'s fences order it for parking.
    let cancelled = || shared.cancelled.load(Ordering::Acquire);
    let outcome = 'run: loop {
        loop {
            if cancelled() {
                break 'run Ok(());
            }
            let Some((envelope, selector)) = subscription.advance() else {
                break;
            };
            let position = envelope.position().0;
            let flow = match catch_unwind(AssertUnwindSafe(|| handler(envelope))) {
                Ok(Ok(flow)) => flow,
                Ok(Err(error)) => {
                    break 'run Err(failure(HandlerFailure::Error(error), envelope, selector))
                }
                Err(panic) => {
                    break 'run Err(failure(
                        HandlerFailure::Panic(panic_message(panic)),
                        envelope,
                        selector,
                    ))
                }
            };
            publish(shared, position + 1);
            if flow == Flow::Stop {
                break 'run Ok(());
            }
        }
        // Everything committed is passed, selected or not.
        publish(shared, subscription.cursor().passed());
        match subscription.wait_more(None, &cancelled) {
            Ok(true) => {}
            Ok(false) => break Ok(()),
            Err(SubscriptionError::Poisoned) => break Err(SubscriberError::Poisoned),
        }
    };
    // Only this thread sets the outcome, once.
    let _ = shared.outcome.set(outcome);
    // SeqCst: ordered before `progress.wake`'s fence, like every state
    // change a progress waiter checks.
    shared.ended.store(true, Ordering::SeqCst);
    shared.progress.wake();
}

/// Records that every position below `processed` is handled or passed.
#[inline]
fn publish<X>(shared: &Shared<X>, processed: u64) {
    // Release: pairs with the Acquire load in `Subscriber::processed_end`,
    // so a waiter that sees the new value also sees the handler's effects.
    shared.processed.fetch_max(processed, Ordering::Release);
    shared.progress.wake();
}

fn failure<E, X>(
    failure: HandlerFailure<X>,
    envelope: Envelope<'_, E>,
    selector: &Selector<E>,
) -> SubscriberError<X> {
    SubscriberError::Handler(HandlerError {
        failure,
        event: EventContext::of(envelope, selector),
    })
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    match panic.downcast::<String>() {
        Ok(message) => *message,
        Err(panic) => match panic.downcast::<&'static str>() {
            Ok(message) => (*message).to_owned(),
            Err(_) => "a panic with a non-string payload".to_owned(),
        },
    }
}

impl<X> Subscriber<X> {
    /// Stops the subscription and returns once its thread has exited
    /// (called from inside the handler, it returns at once and the
    /// subscription stops when the handler returns).
    ///
    /// Idempotent, safe after the subscription ended on its own (which it
    /// then does not change: a handler failure stays the outcome), and wakes
    /// a parked subscriber. Without a failure, [`wait`](Self::wait) then
    /// returns `Ok`.
    pub fn cancel(&self) {
        // SeqCst: ordered before `wake_waiters`' fence, so a worker about to
        // park either sees the flag or gets the notification.
        self.shared.cancelled.store(true, Ordering::SeqCst);
        self.store.wake_waiters();
        self.join();
    }

    /// Waits until the subscription ends (by `Stop`, cancel, a handler
    /// failure or a poisoned store) and returns how: `Ok` for `Stop` and
    /// cancel.
    ///
    /// # Panics
    ///
    /// If called from the subscription's own handler, which would wait for
    /// itself forever (the panic then ends the subscription as a handler
    /// failure).
    pub fn wait(&self) -> Result<(), &SubscriberError<X>> {
        assert!(self.join(), "Subscriber::wait called from its own handler");
        match self.shared.outcome.get() {
            Some(Ok(())) => Ok(()),
            Some(Err(error)) => Err(error),
            None => unreachable!("the worker sets its outcome before it exits"),
        }
    }

    /// Waits until the subscription ends and returns how, by value (the
    /// handler's error itself, not a reference to it).
    #[allow(clippy::result_large_err)] // returned once per subscription, never on a hot path
    ///
    /// # Panics
    ///
    /// If called from the subscription's own handler (see [`wait`](Self::wait)).
    pub fn into_outcome(mut self) -> Result<(), SubscriberError<X>> {
        assert!(
            self.join(),
            "Subscriber::into_outcome called from its own handler"
        );
        // The worker has exited and dropped its share of `shared`.
        Arc::get_mut(&mut self.shared)
            .and_then(|shared| shared.outcome.take())
            .expect("the worker sets its outcome before it exits")
    }

    /// Whether the subscription has ended.
    pub fn is_finished(&self) -> bool {
        // Acquire: pairs with the SeqCst store in `run`; the outcome is then set.
        self.shared.ended.load(Ordering::Acquire)
    }

    /// The last position the subscriber has handled or passed over (events
    /// it does not select count as passed), or `None` before position 0.
    pub fn processed(&self) -> Option<Position> {
        self.processed_end().checked_sub(1).map(Position)
    }

    /// Waits until the subscriber has handled or passed over `position`
    /// (events it does not select count as passed), for at most `timeout`.
    ///
    /// This is what replaces `sleep` in tests: insert, then wait for the
    /// position the insert returned. Returns [`WaitError::Ended`] at once if
    /// the subscriber ended first.
    pub fn wait_processed(&self, position: Position, timeout: Duration) -> Result<(), WaitError> {
        // Saturating: the last possible position can never be passed, and
        // the wait must time out rather than wrap to "already passed".
        self.wait_processed_end(position.0.saturating_add(1), timeout)
    }

    /// Waits until the subscriber has handled everything committed when this
    /// is called, for at most `timeout`.
    pub fn wait_caught_up(&self, timeout: Duration) -> Result<(), WaitError> {
        self.wait_processed_end(self.store.committed(), timeout)
    }

    fn processed_end(&self) -> u64 {
        // Acquire: pairs with the Release `fetch_max` in `publish`.
        self.shared.processed.load(Ordering::Acquire)
    }

    fn wait_processed_end(&self, end: u64, timeout: Duration) -> Result<(), WaitError> {
        let deadline = Instant::now().checked_add(timeout);
        let reached = || self.processed_end() >= end;
        self.shared
            .progress
            .wait_until(|| reached() || self.is_finished(), deadline);
        if reached() {
            Ok(())
        } else if self.is_finished() {
            // The worker's last `publish` happened before `ended`, so a
            // finished worker that has not reached `end` never will.
            if reached() {
                Ok(())
            } else {
                Err(WaitError::Ended)
            }
        } else {
            Err(WaitError::TimedOut)
        }
    }

    /// Joins the worker, once; later callers wait on the lock until it has.
    ///
    /// Called from the worker itself (a handler that cancels or drops its
    /// own handle), it does not join, which would wait forever: the flag set
    /// by `cancel` stops the worker once the handler returns.
    /// Returns whether the worker has exited (`false` only on the worker).
    fn join(&self) -> bool {
        let mut worker = crate::sync::lock(&self.worker);
        if worker
            .as_ref()
            .is_some_and(|w| w.thread().id() == std::thread::current().id())
        {
            return false;
        }
        if let Some(worker) = worker.take() {
            // The worker catches handler panics; a panic here is our bug.
            worker
                .join()
                .expect("the subscriber thread panicked outside its handler");
        }
        true
    }
}

impl<X> Drop for Subscriber<X> {
    fn drop(&mut self) {
        self.cancel();
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
