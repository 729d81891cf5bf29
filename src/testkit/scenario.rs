//! Given/when/then tests of application code on any [`EventStore`]: seed a
//! history, run a command, then check its result, the events it wrote and
//! the projections that read them.

use super::written::{Mark, Written};
use crate::backend::{Cursor, EventStore, StoreError, SubscriberHandle};
use crate::error::{InsertError, VersionMismatch};
use crate::ids::{Position, StreamId};
use crate::subscription::WaitError;
use crate::transaction::{ExpectedVersion, Transaction};
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// How long [`assert_processed`] and [`Outcome::then_processed`] wait for a
/// subscription: 30 seconds. Only a hang, or a projection that failed or
/// stopped, should ever reach it.
///
/// ```
/// assert_eq!(hindsight::testkit::PROCESSED_TIMEOUT.as_secs(), 30);
/// ```
pub const PROCESSED_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes `history` into `store`, then marks the store's head: the events
/// written after the returned [`Mark`] are the code under test's, and the
/// history is not among them.
///
/// Each `(stream, events)` is one transaction appending the events to the
/// stream with [`ExpectedVersion::Any`], in the order given (so a stream
/// may come twice, and a stream already in the store grows). A stream given
/// no events is not created.
///
/// # Errors
///
/// The store's error if an insert or reading the head fails; the inserts
/// before it stay written. On [`Faulty`](super::Faulty) the seeding inserts
/// count towards its faults, even with `Any`: arm faults after seeding.
///
/// ```
/// use hindsight::testkit::given;
/// use hindsight::{EventStore, ExpectedVersion, MemoryStore, StreamId, StreamVersion, Transaction};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new();
/// let account = StreamId::new();
/// let mark = given(&store, [(account, vec!["opened", "deposited 50"])]).await?;
///
/// // The code under test sees the history:
/// let head = EventStore::stream_head(&store, account).await?.unwrap();
/// assert_eq!(head.version, StreamVersion(1));
/// EventStore::insert(&store, Transaction::single(account, head.expect_exact(), "withdrawn 20")).await?;
///
/// mark.written().await?.assert_events(account, ["withdrawn 20"]);
/// # Ok(()) }
/// ```
pub async fn given<S, H, I>(store: &S, history: H) -> Result<Mark<S>, StoreError<S::Error>>
where
    S: EventStore,
    H: IntoIterator<Item = (StreamId, I)>,
    I: IntoIterator<Item = S::Event>,
{
    for (stream, events) in history {
        let tx = Transaction::new().append(stream, ExpectedVersion::Any, events);
        store.insert(tx).await?;
    }
    Mark::take(store).await.map_err(StoreError::Backend)
}

/// A given/when/then test of a command handler, on any [`EventStore`]:
/// the history it starts from ([`given`](Scenario::given)), the command
/// ([`when`](Scenario::when)), then checks on its [`Outcome`].
///
/// `when` writes the history, marks the store's head, runs the command and
/// records every event committed after the mark; the `then_*` checks of the
/// outcome panic with a readable message when they fail.
///
/// ```
/// use hindsight::testkit::Scenario;
/// use hindsight::{EventStore, MemoryStore, StoreError, StreamId, Transaction};
///
/// /// The command under test, written once for every backend.
/// async fn rename<S: EventStore<Event = String>>(store: &S, user: StreamId, name: &str)
///     -> Result<(), StoreError<S::Error>>
/// {
///     let head = store.stream_head(user).await.map_err(StoreError::Backend)?;
///     let expected = head.map_or(hindsight::ExpectedVersion::NoStream, |h| h.expect_exact());
///     store.insert(Transaction::single(user, expected, format!("renamed to {name}"))).await?;
///     Ok(())
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let user = StreamId::new();
/// let outcome = Scenario::new(MemoryStore::new())
///     .given(user, ["registered".to_owned()])
///     .when(|store| async move { rename(&store, user, "ada").await })
///     .await?;
/// outcome.then_ok();
/// outcome.then_events(user, ["renamed to ada".to_owned()]);
/// # Ok(()) }
/// ```
pub struct Scenario<S: EventStore> {
    store: S,
    history: Vec<(StreamId, Vec<S::Event>)>,
}

impl<S: EventStore> Scenario<S> {
    /// A scenario on `store` (a fresh one, usually), with no history yet.
    pub fn new(store: S) -> Self {
        Scenario {
            store,
            history: Vec::new(),
        }
    }

    /// Adds `events` for `stream` to the history the command starts from.
    /// Nothing is written until [`when`](Scenario::when); then each call is
    /// one transaction, in call order (see [`given`](super::given)).
    pub fn given(mut self, stream: StreamId, events: impl IntoIterator<Item = S::Event>) -> Self {
        self.history.push((stream, events.into_iter().collect()));
        self
    }

    /// Writes the history, marks the store's head, runs `command` with a
    /// handle onto the store, and returns its [`Outcome`]: the command's
    /// result, whatever it is (the command's own errors are for the
    /// `then_*` checks), and every event committed after the mark.
    ///
    /// # Errors
    ///
    /// The store's error if writing the history, reading the head or
    /// recording the events fails; the command's own result is never an
    /// error here.
    ///
    /// ```
    /// use hindsight::testkit::Scenario;
    /// use hindsight::{EventStore, MemoryStore, Position, StoreError, StreamId, Transaction};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (order, other) = (StreamId::new(), StreamId::new());
    /// let outcome = Scenario::new(MemoryStore::new())
    ///     .given(order, ["placed"])
    ///     .given(other, ["placed"])
    ///     .when(|store| async move {
    ///         // `store` is a handle onto the scenario's store, history written.
    ///         let head = EventStore::stream_head(&store, order).await.map_err(StoreError::Backend)?;
    ///         let tx = Transaction::single(order, head.expect("given").expect_exact(), "paid");
    ///         EventStore::insert(&store, tx).await
    ///     })
    ///     .await?;
    /// assert_eq!(outcome.written().after(), Some(Position(1))); // the history: 0 and 1
    /// assert_eq!(outcome.written().len(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn when<F, Fut, T, X>(
        self,
        command: F,
    ) -> Result<Outcome<S::Event, T, X>, StoreError<S::Error>>
    where
        F: FnOnce(S) -> Fut,
        Fut: Future<Output = Result<T, X>>,
        S::Event: Clone,
    {
        let mark = given(&self.store, self.history).await?;
        let result = command(self.store.clone()).await;
        let written = mark.written().await.map_err(StoreError::Backend)?;
        Ok(Outcome { result, written })
    }
}

impl<S: EventStore> fmt::Debug for Scenario<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let events: usize = self.history.iter().map(|(_, events)| events.len()).sum();
        f.debug_struct("Scenario")
            .field("given_transactions", &self.history.len())
            .field("given_events", &events)
            .finish_non_exhaustive()
    }
}

/// What a [`Scenario`]'s command did: its result (`Ok(T)` or its error
/// `X`) and the events [`Written`] since the mark. Every `then_*` check
/// panics when it fails; the ones on events return `&self`, to chain.
///
/// ```
/// use hindsight::testkit::Scenario;
/// use hindsight::{EventStore, ExpectedVersion, MemoryStore, StreamId, Transaction};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (cart, stock) = (StreamId::new(), StreamId::new());
/// let outcome = Scenario::new(MemoryStore::new())
///     .given(stock, ["restocked"])
///     .when(|store| async move {
///         let tx = Transaction::new()
///             .append(cart, ExpectedVersion::NoStream, ["added"])
///             .append(stock, ExpectedVersion::StreamExists, ["reserved"]);
///         EventStore::insert(&store, tx).await
///     })
///     .await?;
/// let committed = outcome.then_ok();
/// assert_eq!(committed.last_position(), outcome.written().head());
/// outcome.then_events(cart, ["added"]).then_events(stock, ["reserved"]);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Outcome<E, T, X> {
    result: Result<T, X>,
    written: Written<E>,
}

impl<E, T, X> Outcome<E, T, X> {
    /// The command's result.
    pub fn result(&self) -> &Result<T, X> {
        &self.result
    }

    /// The command's result, by value.
    pub fn into_result(self) -> Result<T, X> {
        self.result
    }

    /// The events committed after the mark (the command's, and any other
    /// writer's at the same time), for checks of one's own.
    pub fn written(&self) -> &Written<E> {
        &self.written
    }

    /// Asserts that the command succeeded; returns its value.
    ///
    /// # Panics
    ///
    /// If it returned an error, with the error (`Debug`) in the message.
    ///
    /// ```
    /// use hindsight::testkit::Scenario;
    /// use hindsight::{EventStore, ExpectedVersion, MemoryStore, StreamId, Transaction};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let order = StreamId::new();
    /// let outcome = Scenario::new(MemoryStore::new())
    ///     .when(|store| async move {
    ///         EventStore::insert(&store, Transaction::single(order, ExpectedVersion::NoStream, "placed")).await
    ///     })
    ///     .await?;
    /// let committed = outcome.then_ok();
    /// assert_eq!(committed.stream(order).map(|head| head.version.get()), Some(0));
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn then_ok(&self) -> &T
    where
        X: fmt::Debug,
    {
        match &self.result {
            Ok(value) => value,
            Err(error) => panic!("expected the command to succeed, it failed: {error:?}"),
        }
    }

    /// Asserts that the command failed; returns its error, for a closer
    /// look (`assert!(matches!(outcome.then_error(), MyError::Refused(_)))`).
    ///
    /// # Panics
    ///
    /// If it succeeded, with its value (`Debug`) in the message.
    ///
    /// ```
    /// use hindsight::testkit::Scenario;
    /// use hindsight::MemoryStore;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let outcome = Scenario::new(MemoryStore::<u32>::new())
    ///     .when(|_store| async { Err::<(), _>("insufficient funds") })
    ///     .await?;
    /// assert_eq!(*outcome.then_error(), "insufficient funds");
    /// outcome.then_nothing_written();
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn then_error(&self) -> &X
    where
        T: fmt::Debug,
    {
        match &self.result {
            Ok(value) => panic!("expected the command to fail, it succeeded: {value:?}"),
            Err(error) => error,
        }
    }

    /// Asserts that the command failed with a version conflict (an
    /// expected version that did not hold); returns the streams whose
    /// expectation failed, with what was expected and found.
    ///
    /// # Panics
    ///
    /// If the command succeeded or failed with another error (each shown
    /// with `Debug` in the message).
    ///
    /// ```
    /// use hindsight::testkit::Scenario;
    /// use hindsight::{ExpectedVersion, MemoryStore, StreamId, Transaction};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let order = StreamId::new();
    /// let outcome = Scenario::new(MemoryStore::new())
    ///     .given(order, ["placed"])
    ///     .when(|store| async move {
    ///         // Placing the same order twice: the stream must not exist. (The
    ///         // memory store's own `insert`, synchronous, fails with an `InsertError`.)
    ///         store.insert(Transaction::single(order, ExpectedVersion::NoStream, "placed"))
    ///     })
    ///     .await?;
    /// let conflict = outcome.then_conflict();
    /// assert_eq!(conflict[0].stream, order);
    /// outcome.then_nothing_written();
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn then_conflict(&self) -> &[VersionMismatch]
    where
        T: fmt::Debug,
        X: fmt::Debug + ConflictError,
    {
        match &self.result {
            Ok(value) => {
                panic!("expected a version conflict, the command succeeded: {value:?}")
            }
            Err(error) => match error.version_conflict() {
                Some(mismatches) => mismatches,
                None => panic!("expected a version conflict, the command failed: {error:?}"),
            },
        }
    }

    /// Asserts that the events the command wrote to `stream` are exactly
    /// `expected`, in order; see [`Written::assert_events`].
    ///
    /// # Panics
    ///
    /// If they differ, with a message naming the stream and the first
    /// difference, then expected and written events line by line (the
    /// written ones with their versions and positions).
    ///
    /// ```
    /// use hindsight::testkit::Scenario;
    /// use hindsight::{EventStore, ExpectedVersion, MemoryStore, StreamId, Transaction};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (from, to) = (StreamId::new(), StreamId::new());
    /// let outcome = Scenario::new(MemoryStore::new())
    ///     .given(from, [100])
    ///     .when(|store| async move {
    ///         let tx = Transaction::new()
    ///             .append(from, ExpectedVersion::StreamExists, [-40])
    ///             .append(to, ExpectedVersion::Any, [40]);
    ///         EventStore::insert(&store, tx).await
    ///     })
    ///     .await?;
    /// outcome.then_events(from, [-40]).then_events(to, [40]);
    /// # Ok(()) }
    /// ```
    #[track_caller]
    pub fn then_events(&self, stream: StreamId, expected: impl IntoIterator<Item = E>) -> &Self
    where
        E: fmt::Debug + PartialEq,
    {
        self.written.assert_events(stream, expected);
        self
    }

    /// Asserts that nothing was written since the mark, to any stream.
    ///
    /// # Panics
    ///
    /// If something was, listing every event written.
    ///
    /// ```should_panic
    /// use hindsight::testkit::Scenario;
    /// use hindsight::{ExpectedVersion, MemoryStore, StreamId, Transaction};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let order = StreamId::new();
    /// Scenario::new(MemoryStore::new())
    ///     .when(|store| async move {
    ///         store.insert(Transaction::single(order, ExpectedVersion::Any, "placed"))
    ///     })
    ///     .await
    ///     .unwrap()
    ///     .then_nothing_written(); // panics: "... but 1 event was written: ..."
    /// # }
    /// ```
    #[track_caller]
    pub fn then_nothing_written(&self) -> &Self
    where
        E: fmt::Debug,
    {
        self.written.assert_nothing_written();
        self
    }

    /// Waits until `subscription` (a projection, say) has processed
    /// everything recorded here: the last event written, or the given
    /// history if nothing was (see [`assert_processed`]). Returns at once
    /// if the store is still empty.
    ///
    /// # Panics
    ///
    /// As [`assert_processed`]: if the subscription has not processed that
    /// far within [`PROCESSED_TIMEOUT`] (30 seconds), or ended first.
    ///
    /// ```
    /// use hindsight::testkit::Scenario;
    /// use hindsight::{EventStore, ExpectedVersion, Flow, MemoryStore, Selector, StreamId, Transaction};
    /// use std::sync::{Arc, Mutex};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = MemoryStore::new();
    /// let total = Arc::new(Mutex::new(0));
    /// let sink = Arc::clone(&total);
    /// let projection = EventStore::spawn_subscriber(&store, Selector::all(), move |event| {
    ///     *sink.lock().unwrap() += *event.payload;
    ///     Ok::<_, std::convert::Infallible>(Flow::Continue)
    /// }).await?;
    ///
    /// let account = StreamId::new();
    /// let outcome = Scenario::new(store)
    ///     .given(account, [100])
    ///     .when(|store| async move {
    ///         EventStore::insert(&store, Transaction::single(account, ExpectedVersion::Any, 25)).await
    ///     })
    ///     .await?;
    /// outcome.then_processed(&projection).await;
    /// assert_eq!(*total.lock().unwrap(), 125);
    /// # Ok(()) }
    /// ```
    pub async fn then_processed<Y, H>(&self, subscription: &H) -> &Self
    where
        H: SubscriberHandle<Y>,
    {
        if let Some(head) = self.written.head() {
            assert_processed(subscription, head).await;
        }
        self
    }
}

/// Waits until `subscription` has processed (handled or passed over)
/// `position`, for at most [`PROCESSED_TIMEOUT`] (30 seconds): the wait
/// before reading a projection in a test. Nothing sleeps: it is the
/// subscription's own [`wait_processed`](SubscriberHandle::wait_processed),
/// which returns as soon as the position is passed.
///
/// # Panics
///
/// If the subscription has not processed `position` after 30 seconds, if
/// it ended first (its handler failed or stopped, or it was cancelled; its
/// `wait` says how), or if called from its own handler. The message names
/// the position and how far the subscription got.
///
/// ```
/// use hindsight::testkit::assert_processed;
/// use hindsight::{EventStore, ExpectedVersion, Flow, MemoryStore, Selector, StreamId, Transaction};
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryStore::new();
/// let seen = Arc::new(AtomicU64::new(0));
/// let counter = Arc::clone(&seen);
/// let projection = EventStore::spawn_subscriber(&store, Selector::all(), move |_event| {
///     counter.fetch_add(1, Ordering::Relaxed);
///     Ok::<_, std::convert::Infallible>(Flow::Continue)
/// }).await?;
///
/// let tx = Transaction::new().append(StreamId::new(), ExpectedVersion::Any, ["a", "b"]);
/// let committed = EventStore::insert(&store, tx).await?;
/// assert_processed(&projection, committed.last_position().unwrap()).await;
/// assert_eq!(seen.load(Ordering::Relaxed), 2);
/// # Ok(()) }
/// ```
pub async fn assert_processed<Y, H>(subscription: &H, position: Position)
where
    H: SubscriberHandle<Y>,
{
    let cursor = H::Cursor::from_position(position);
    let Err(error) = subscription.wait_processed(cursor, PROCESSED_TIMEOUT).await else {
        return;
    };
    let reached = match subscription.processed() {
        Some(cursor) => format!("it had processed up to position {}", cursor.position()),
        None => "it had processed nothing".to_owned(),
    };
    let timeout = PROCESSED_TIMEOUT.as_secs();
    match error {
        WaitError::TimedOut => panic!(
            "the subscription did not process position {position} within {timeout} s; {reached}"
        ),
        WaitError::Ended => panic!(
            "the subscription ended before processing position {position} ({reached}); \
             its `wait()` says why"
        ),
        other => panic!("waiting for the subscription to process position {position}: {other}"),
    }
}

/// An error that may be a version conflict: what
/// [`Outcome::then_conflict`] looks for in a command's error.
///
/// Implemented for [`StoreError`] and [`InsertError`]; an application
/// error that wraps one implements it by asking the one inside.
///
/// ```
/// use hindsight::testkit::ConflictError;
/// use hindsight::{StoreError, VersionMismatch};
///
/// #[derive(Debug)]
/// enum BankError<B> {
///     Store(StoreError<B>),
///     Refused(String),
/// }
///
/// impl<B> ConflictError for BankError<B> {
///     fn version_conflict(&self) -> Option<&[VersionMismatch]> {
///         match self {
///             BankError::Store(error) => error.version_conflict(),
///             BankError::Refused(_) => None,
///         }
///     }
/// }
/// let refused: BankError<std::io::Error> = BankError::Refused("overdraft".into());
/// assert!(refused.version_conflict().is_none());
/// ```
pub trait ConflictError {
    /// The streams whose expectation failed, if this error is a version
    /// conflict; `None` for any other error.
    fn version_conflict(&self) -> Option<&[VersionMismatch]>;
}

impl<B> ConflictError for StoreError<B> {
    fn version_conflict(&self) -> Option<&[VersionMismatch]> {
        self.mismatches()
    }
}

impl ConflictError for InsertError {
    fn version_conflict(&self) -> Option<&[VersionMismatch]> {
        match self {
            InsertError::VersionConflict(mismatches) => Some(mismatches),
            _ => None,
        }
    }
}
