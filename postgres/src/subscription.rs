//! Handler subscriptions: a Tokio task that pages the log by position and
//! hands each page to the handler on a blocking thread.
//!
//! Each round:
//!
//! 1. note the handle's wake signal (so a notification that arrives from
//!    here on is not missed);
//! 2. read one page from one snapshot: the head and up to [`PAGE`] selected
//!    events after the subscription's position and below the head (stream,
//!    type and category filters run in SQL), an all-streams page within a
//!    window of [`PAGE`] positions;
//! 3. run the handler on the page on a blocking thread (`spawn_blocking`),
//!    one event after another, checking for a cancel before each; no
//!    connection or transaction is held meanwhile;
//! 4. publish the page's end as passed: the last row of a full page, else
//!    the end of its window or the head, whichever is lower (events the
//!    filters skipped are passed too);
//! 5. if the page was not full and reached the head, wait for the wake
//!    signal, a cancel, or [`POLL`], whichever comes first.
//!
//! Progress and the outcome are published in a `tokio::sync::watch`, so
//! every wait is waker-based and cancel-safe. A query or decode error ends
//! the subscription with [`SubscriberError::Backend`] naming the
//! position; every event before it was handled.

use crate::codec::StoreCodec;
use crate::error::PgError;
use crate::panic::panic_message;
use crate::row::{self, Stored};
use crate::store::{next_position, window_end, Inner, PAGE};
use hindsight::{
    EventRef, Flow, HandlerError, HandlerFailure, Position, Selector, Start, SubscriberError,
    SubscriberHandle, WaitError,
};
use sqlx::Row;
use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How long a caught-up subscription waits before looking again without a
/// wake-up: notifications are only hints, this is the safety net.
const POLL: Duration = Duration::from_millis(500);

/// Ids of subscriptions, for recognising a wait from a handler.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The subscription whose handler runs on this thread (0 for none).
    static IN_HANDLER: Cell<u64> = const { Cell::new(0) };
}

/// What a subscription has done so far.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    /// The last position handled or passed over.
    processed: Option<Position>,
    /// Whether the subscription has ended (its outcome is set).
    ended: bool,
}

type Outcome<X> = Result<(), SubscriberError<X, PgError>>;

/// What the task and the handle share.
struct Shared<X> {
    id: u64,
    progress: watch::Sender<Progress>,
    outcome: Mutex<Option<Outcome<X>>>,
    cancelled: AtomicBool,
    /// Wakes the task from its wait on a cancel (a stored permit if it is
    /// not waiting yet).
    cancel: Notify,
}

impl<X> Shared<X> {
    fn request_cancel(&self) {
        // Relaxed is enough: the flag is re-read before every event and
        // after every wait, and `Notify` orders the wake-up itself.
        self.cancelled.store(true, Ordering::Relaxed);
        self.cancel.notify_one();
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    fn publish(&self, position: Position) {
        self.progress.send_if_modified(|progress| {
            let newer = progress.processed < Some(position);
            if newer {
                progress.processed = Some(position);
            }
            newer
        });
    }

    fn own_handler(&self) -> bool {
        IN_HANDLER.with(Cell::get) == self.id
    }
}

/// The handle of a PostgreSQL subscription, from
/// [`EventStore::spawn_subscriber`](hindsight::EventStore::spawn_subscriber).
///
/// Dropping it requests cancellation and returns at once; the task stops
/// before the handler's next event. Every wait is waker-based (a
/// `tokio::sync::watch`) and cancel-safe; the timeouts need a Tokio runtime
/// with its timer.
///
/// ```no_run
/// use hindsight::{EventStore, Flow, Selector, SubscriberHandle};
/// use std::time::Duration;
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Event;
/// # impl hindsight::EventType for Event { fn event_type(&self) -> &str { "Event" } }
/// # async fn demo(store: hindsight_postgres::PgStore<Event>) -> Result<(), Box<dyn std::error::Error>> {
/// let subscription = store
///     .spawn_subscriber(Selector::all(), |event| {
///         println!("{} at {}", event.stream, event.position());
///         Ok::<_, std::convert::Infallible>(Flow::Continue)
///     })
///     .await?;
/// subscription.wait_caught_up(Duration::from_secs(10)).await?;
/// subscription.cancel().await;
/// # Ok(()) }
/// ```
pub struct PgSubscriber<X> {
    shared: Arc<Shared<X>>,
    inner: Arc<Inner>,
}

impl<X> fmt::Debug for PgSubscriber<X> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSubscriber")
            .field("progress", &*self.shared.progress.borrow())
            .finish_non_exhaustive()
    }
}

impl<X> Drop for PgSubscriber<X> {
    fn drop(&mut self) {
        self.shared.request_cancel();
    }
}

/// Starts the task of a subscription on the current runtime.
pub(crate) async fn start<E, X, H>(
    inner: Arc<Inner>,
    codec: StoreCodec<E>,
    selector: Selector<E>,
    handler: H,
    #[cfg(feature = "tracing")] spawn: &tracing::Span,
) -> Result<PgSubscriber<X>, PgError>
where
    E: Send + Sync + 'static,
    X: Send + Sync + 'static,
    H: FnMut(EventRef<'_, E, Position>) -> Result<Flow, X> + Send + 'static,
{
    let first = match selector.start_point() {
        Start::Beginning => 0,
        Start::After(position) => position.0.saturating_add(1),
        Start::End => next_position(&inner).await?,
        // `Start` may grow; a new start point needs code here.
        #[allow(unreachable_patterns)]
        _ => 0,
    };
    let shared = Arc::new(Shared {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        progress: watch::Sender::new(Progress::default()),
        outcome: Mutex::new(None),
        cancelled: AtomicBool::new(false),
        cancel: Notify::new(),
    });
    // With `tracing`: a root span that follows from
    // `hindsight.spawn_subscriber`, since the subscription outlives the
    // call that started it.
    #[cfg(feature = "tracing")]
    let span = {
        let span = tracing::info_span!(parent: None, "hindsight.subscriber", ?selector);
        span.follows_from(spawn);
        span
    };
    let task = Task {
        #[cfg(feature = "tracing")]
        span: span.clone(),
        inner: Arc::clone(&inner),
        shared: Arc::clone(&shared),
        page_sql: inner.sql.subscription_page(
            selector.selected_stream().is_some(),
            selector.selected_types().is_some(),
            selector.selected_category().is_some(),
        ),
        first,
    };
    // With `tracing`, the task runs in its span, with the spawning task's
    // dispatcher.
    #[cfg(feature = "tracing")]
    {
        use tracing::instrument::{Instrument, WithSubscriber};
        let run = task.run(codec, Delivery { selector, handler });
        tokio::spawn(run.instrument(span).with_current_subscriber());
    }
    #[cfg(not(feature = "tracing"))]
    tokio::spawn(task.run(codec, Delivery { selector, handler }));
    Ok(PgSubscriber { shared, inner })
}

/// What the blocking thread needs for a page, passed there and back.
struct Delivery<E, H> {
    selector: Selector<E>,
    handler: H,
}

/// How a page's delivery ended.
enum Delivered<X> {
    /// Every event handled.
    All,
    /// The handler returned `Stop`, or a cancel came: the subscription is over.
    Over,
    /// The handler failed.
    Failed(HandlerError<X>),
    /// Dropping a delivered event panicked with this message.
    Panicked(String),
}

/// The subscription's task: its position and what it needs to read.
struct Task<X> {
    /// With `tracing`: the subscription's span, `hindsight.subscriber`.
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    inner: Arc<Inner>,
    shared: Arc<Shared<X>>,
    page_sql: String,
    /// The first position not yet passed.
    first: u64,
}

impl<X: Send + Sync + 'static> Task<X> {
    async fn run<E, H>(mut self, codec: StoreCodec<E>, delivery: Delivery<E, H>)
    where
        E: Send + Sync + 'static,
        H: FnMut(EventRef<'_, E, Position>) -> Result<Flow, X> + Send + 'static,
    {
        let mut delivery = Some(delivery);
        let mut outcome = self.work(&codec, &mut delivery).await;
        // The handler (user code) goes before the end is published: once
        // `cancel` returns, nothing of it is left.
        if let Some(delivery) = delivery.take() {
            if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(delivery))) {
                if outcome.is_ok() {
                    outcome = Err(SubscriberError::Panicked(panic_message(panic)));
                }
            }
        }
        *self
            .shared
            .outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(outcome);
        self.shared.progress.send_modify(|p| p.ended = true);
    }

    async fn work<E, H>(
        &mut self,
        codec: &StoreCodec<E>,
        delivery: &mut Option<Delivery<E, H>>,
    ) -> Outcome<X>
    where
        E: Send + Sync + 'static,
        H: FnMut(EventRef<'_, E, Position>) -> Result<Flow, X> + Send + 'static,
    {
        let mut wake = self.inner.listener.subscribe();
        loop {
            if self.shared.is_cancelled() {
                return Ok(());
            }
            wake.borrow_and_update();
            let Some(current) = delivery.as_ref() else {
                return Ok(());
            };
            let (events, end, more, failure) = self.page(&current.selector, codec).await;
            if !events.is_empty() {
                let Some(taken) = delivery.take() else {
                    return Ok(());
                };
                let shared = Arc::clone(&self.shared);
                // With `tracing`, the handler runs in the subscription's span
                // and with the task's dispatcher.
                #[cfg(feature = "tracing")]
                let trace = (
                    self.span.clone(),
                    tracing::dispatcher::get_default(tracing::Dispatch::clone),
                );
                let ran = tokio::task::spawn_blocking(move || {
                    #[cfg(feature = "tracing")]
                    {
                        let (span, dispatch) = trace;
                        tracing::dispatcher::with_default(&dispatch, || {
                            span.in_scope(|| deliver(taken, events, &shared))
                        })
                    }
                    #[cfg(not(feature = "tracing"))]
                    deliver(taken, events, &shared)
                })
                .await;
                match ran {
                    Ok((back, Delivered::All)) => *delivery = Some(back),
                    Ok((back, Delivered::Over)) => {
                        *delivery = Some(back);
                        return Ok(());
                    }
                    Ok((back, Delivered::Failed(error))) => {
                        *delivery = Some(back);
                        return Err(SubscriberError::Handler(error));
                    }
                    Ok((back, Delivered::Panicked(message))) => {
                        *delivery = Some(back);
                        return Err(SubscriberError::Panicked(message));
                    }
                    // `deliver` catches every panic of user code; this is
                    // one of its own, or the runtime shutting down.
                    Err(error) => {
                        return Err(SubscriberError::Panicked(format!(
                            "the subscription's delivery thread failed: {error}"
                        )))
                    }
                }
            }
            if let Some(failure) = failure {
                return Err(SubscriberError::Backend(failure));
            }
            if let Some(end) = end {
                self.shared.publish(end);
                self.first = self.first.max(end.0 + 1);
            }
            if more {
                continue;
            }
            tokio::select! {
                changed = wake.changed() => {
                    if changed.is_err() {
                        // The listener is gone (never while `inner` lives):
                        // fall back to polling.
                        tokio::time::sleep(POLL).await;
                    }
                }
                () = self.shared.cancel.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One page from one snapshot: the events decoded up to the first that
    /// fails, the position passed once they are handled (`None`: nothing
    /// new), whether more is there to read at once, and the failure, if any.
    async fn page<E: 'static>(
        &self,
        selector: &Selector<E>,
        codec: &StoreCodec<E>,
    ) -> (Vec<Stored<E>>, Option<Position>, bool, Option<PgError>) {
        let after = self.first.checked_sub(1).map(Position);
        // A start above i64::MAX: no event is ever there.
        let first = i64::try_from(self.first).unwrap_or(i64::MAX);
        // All-streams pages scan a window of `PAGE` positions at most (see
        // `Sql::subscription_page`); a one-stream page reads its stream's
        // rows through the stream's index, so it needs none.
        let window_end = match selector.selected_stream() {
            Some(_) => i64::MAX,
            None => window_end(first),
        };
        let mut query = sqlx::query(&self.page_sql)
            .bind(first)
            .bind(PAGE)
            .bind(window_end);
        if let Some(stream) = selector.selected_stream() {
            query = query.bind(*stream.as_uuid());
        }
        if let Some(types) = selector.selected_types() {
            query = query.bind(types.iter().map(|t| t.to_string()).collect::<Vec<_>>());
        }
        if let Some(category) = selector.selected_category() {
            query = query.bind(category.to_owned());
        }
        let rows = match query.fetch_all(&self.inner.pool).await {
            Ok(rows) => rows,
            Err(source) => {
                return (
                    Vec::new(),
                    None,
                    false,
                    Some(PgError::Query { after, source }),
                )
            }
        };
        let mut events = Vec::with_capacity(rows.len());
        let mut head_next = None;
        for row in &rows {
            if head_next.is_none() {
                match row.try_get::<i64, _>("head_next") {
                    Ok(next) => head_next = Some(next),
                    Err(error) => return (events, None, false, Some(error.into())),
                }
            }
            match row.try_get::<Option<i64>, _>("position") {
                Ok(None) => {} // the head alone: no event in this page
                Ok(Some(_)) => match row::decode(row, codec) {
                    Ok(event) => events.push(event),
                    Err(error) => return (events, None, false, Some(error)),
                },
                Err(error) => return (events, None, false, Some(error.into())),
            }
        }
        // Everything below `scanned` was read (and, if not selected, skipped).
        let scanned = head_next.map(|next| next.min(window_end));
        let full = events.len() as i64 == PAGE;
        let end = if full {
            events.last().map(|event| event.position)
        } else {
            scanned
                .and_then(|scanned| u64::try_from(scanned).ok())
                .and_then(|scanned| scanned.checked_sub(1))
                .map(Position)
        };
        // More is there to read at once: the page was full, or its window
        // ended below the head.
        let more =
            full || matches!((scanned, head_next), (Some(scanned), Some(next)) if scanned < next);
        (events, end, more, None)
    }
}

/// Runs the handler on `events` in order, on a blocking thread.
fn deliver<E, X, H>(
    mut delivery: Delivery<E, H>,
    events: Vec<Stored<E>>,
    shared: &Shared<X>,
) -> (Delivery<E, H>, Delivered<X>)
where
    H: FnMut(EventRef<'_, E, Position>) -> Result<Flow, X>,
{
    IN_HANDLER.with(|id| id.set(shared.id));
    let mut delivered = Delivered::All;
    for event in &events {
        if shared.is_cancelled() {
            delivered = Delivered::Over;
            break;
        }
        let failure = match catch_unwind(AssertUnwindSafe(|| (delivery.handler)(event.as_ref()))) {
            Ok(Ok(flow)) => {
                shared.publish(event.position);
                if flow == Flow::Stop {
                    delivered = Delivered::Over;
                    break;
                }
                continue;
            }
            Ok(Err(error)) => HandlerFailure::Error(error),
            Err(panic) => HandlerFailure::Panic(panic_message(panic)),
        };
        let event_type = catch_unwind(AssertUnwindSafe(|| {
            delivery
                .selector
                .event_type_name(&event.payload)
                .map(str::to_owned)
        }))
        .unwrap_or(None);
        delivered = Delivered::Failed(HandlerError {
            failure,
            event: event.as_ref().context(event_type),
        });
        break;
    }
    IN_HANDLER.with(|id| id.set(0));
    // The page's events (user code in their `Drop`) go here, on this thread.
    if let Err(panic) = catch_unwind(AssertUnwindSafe(move || drop(events))) {
        if matches!(delivered, Delivered::All | Delivered::Over) {
            delivered = Delivered::Panicked(panic_message(panic));
        }
    }
    (delivery, delivered)
}

impl<X: Send + Sync + 'static> PgSubscriber<X> {
    /// Waits until `done` holds of the progress (or the subscription ends),
    /// for at most `timeout`; returns the progress then.
    async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&Progress) -> bool + Send,
    ) -> Result<Progress, WaitError> {
        let mut progress = self.shared.progress.subscribe();
        let reached = async {
            // Copied out at once: the borrow holds the channel's lock.
            progress.wait_for(|p| p.ended || done(p)).await.map(|p| *p)
        };
        match tokio::time::timeout(timeout, reached).await {
            Err(_) => Err(WaitError::TimedOut),
            Ok(Ok(progress)) => Ok(progress),
            // The sender lives in `shared`, which this handle holds.
            Ok(Err(_)) => Err(WaitError::Ended),
        }
    }
}

impl<X: Send + Sync + 'static> SubscriberHandle<X> for PgSubscriber<X> {
    type Cursor = Position;
    type Error = PgError;

    /// Requests cancellation when first polled, then waits until the task
    /// has ended: the handler's current call has returned and the handler
    /// is dropped. From the subscription's own handler it only requests.
    fn cancel(&self) -> impl Future<Output = ()> + Send {
        let shared = Arc::clone(&self.shared);
        async move {
            shared.request_cancel();
            if shared.own_handler() {
                return;
            }
            let mut progress = shared.progress.subscribe();
            let _ = progress.wait_for(|p| p.ended).await;
        }
    }

    #[allow(clippy::result_large_err)] // once per subscription, as the memory store's
    async fn wait(self) -> Outcome<X> {
        if self.shared.own_handler() {
            return Err(SubscriberError::OwnHandler);
        }
        let mut progress = self.shared.progress.subscribe();
        let _ = progress.wait_for(|p| p.ended).await;
        self.shared
            .outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .unwrap_or(Ok(()))
    }

    async fn wait_processed(&self, cursor: Position, timeout: Duration) -> Result<(), WaitError> {
        let passed = |p: &Progress| p.processed.is_some_and(|done| done >= cursor);
        if self.shared.own_handler() && !passed(&self.shared.progress.borrow()) {
            return Err(WaitError::OwnHandler);
        }
        let progress = self.wait_until(timeout, passed).await?;
        if passed(&progress) {
            Ok(())
        } else {
            Err(WaitError::Ended)
        }
    }

    /// Reads the head when first polled (a query; the memory store reads
    /// it at the call), then waits for it. From the subscription's own
    /// handler, [`WaitError::OwnHandler`] at once. A failed head query reports
    /// [`WaitError::TimedOut`] at once: `WaitError` has no backend variant.
    async fn wait_caught_up(&self, timeout: Duration) -> Result<(), WaitError> {
        // From the own handler: the event it handles is committed and not
        // yet passed, so it is not caught up, and cannot get there while
        // its handler waits. Answered on the first poll, before any query.
        if self.shared.own_handler() {
            return Err(WaitError::OwnHandler);
        }
        let next = match tokio::time::timeout(timeout, next_position(&self.inner)).await {
            Ok(Ok(next)) => next,
            Ok(Err(_)) | Err(_) => return Err(WaitError::TimedOut),
        };
        match next.checked_sub(1) {
            // Nothing committed: caught up already.
            None => Ok(()),
            Some(head) => self.wait_processed(Position(head), timeout).await,
        }
    }

    fn processed(&self) -> Option<Position> {
        self.shared.progress.borrow().processed
    }

    fn is_finished(&self) -> bool {
        self.shared.progress.borrow().ended
    }
}
