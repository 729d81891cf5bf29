//! Pull subscriptions: every selected event exactly once, in position
//! order, history first and then live events with no seam between them.
//!
//! A subscription is only a cursor over the log. It reads what lies below
//! the watermark at its own pace, so a slow subscriber loses nothing and
//! costs writers nothing. When it has passed everything committed it spins
//! briefly (`Backoff`), then parks on the watermark's signal until a writer
//! moves the watermark.
//!
//! Rules cited by number ("rule 17") are those of the contract
//! ([`crate::contract`]).

#[cfg(not(loom))]
pub(crate) mod handler;
pub(crate) mod stream;

use crate::envelope::Envelope;
use crate::ids::Position;
use crate::log::Slot;
use crate::read::Start;
use crate::selector::Selector;
use crate::signal::Signal;
use crate::store::{Inner, MemoryStore};
use crate::stream::Stream;
use crate::sync::Arc;
use std::fmt;
use std::time::{Duration, Instant};

/// Why a subscription cannot deliver any more events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// The store was poisoned (see [`InsertError::Poisoned`](crate::InsertError::Poisoned)):
    /// every committed event was delivered, and no more will ever commit.
    Poisoned,
}

impl fmt::Display for SubscriptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubscriptionError::Poisoned => {
                write!(f, "the store is poisoned: no more events will commit")
            }
        }
    }
}

impl std::error::Error for SubscriptionError {}

/// Where a subscription is in the log.
pub(crate) struct Cursor<E> {
    pub(crate) selector: Selector<E>,
    /// The first selected position.
    first: u64,
    /// All streams: the next position to look at. One stream: the next
    /// version to look at. Moves past an event only once it is known to be
    /// deliverable or skipped (its type name returned), so that a type name
    /// that panics leaves the cursor on the event (rule 17).
    next: u64,
    /// One stream starting after position 0: the versions before `first`
    /// have not been skipped yet (by a binary search, see `seek`).
    seeking: bool,
    /// Whether the watermark was ever loaded (`end` means something).
    loaded: bool,
    /// One stream: how many of its versions are committed below `len_end`,
    /// as last looked up.
    len: u64,
    len_end: u64,
    /// One stream: the selected stream, taken from the index (created
    /// empty if need be) when the cursor is made, and held until the
    /// subscription is dropped (`Subscription`'s `Drop` hands it back): the
    /// cursor reads it without a lookup, and parks on its signal (targeted
    /// wake-ups) even before it holds an event.
    pin: Option<Arc<Stream>>,
    /// The watermark as last loaded: everything below it is committed.
    end: u64,
    /// All streams: the committed slots the cursor walks, looked up once
    /// per run instead of once per event.
    run: Run<E>,
    /// Every position below this has been looked at (delivered or skipped);
    /// when `advance` returns `None`, it equals the watermark it observed.
    passed: u64,
}

impl<E> Cursor<E> {
    /// A cursor at the start of `selector`; [`Start::End`] is resolved here, to the watermark of `inner`'s log now.
    pub(crate) fn new(selector: Selector<E>, inner: &Inner<E>) -> Self {
        let watermark = match selector.start {
            Start::End => inner.log.watermark.get(),
            Start::Beginning | Start::After(_) => 0,
        };
        let first = selector.start.first(watermark);
        let pin = selector.stream.map(|id| inner.streams.get_or_create(id));
        Self {
            next: if selector.stream.is_some() { 0 } else { first },
            seeking: selector.stream.is_some() && first > 0,
            loaded: false,
            len: 0,
            // `end` 0 has nothing below it: no version to look up.
            len_end: 0,
            first,
            pin,
            end: 0,
            run: Run {
                slots: std::ptr::null(),
                start: 0,
                len: 0,
            },
            passed: first,
            selector,
        }
    }

    /// Every position below this has been looked at.
    #[inline]
    pub(crate) fn passed(&self) -> u64 {
        self.passed
    }

    /// Whether the cursor has looked at every position below the watermark
    /// it last loaded: everything committed when it last checked was
    /// delivered or skipped. `false` before its first check.
    #[inline]
    pub(crate) fn is_caught_up(&self) -> bool {
        self.loaded && self.passed >= self.end
    }

    /// Moves past the next selected committed event and returns it; `None`
    /// once every committed position is passed. Loads the watermark only
    /// when it has passed everything below the last value it loaded.
    #[inline]
    pub(crate) fn advance<'s>(&mut self, inner: &'s Inner<E>) -> Option<Envelope<'s, E>> {
        if let Some(event) = self.advance_below_end(inner) {
            return Some(event);
        }
        let watermark = inner.log.watermark.get();
        self.loaded = true;
        if watermark > self.end {
            self.end = watermark;
            if let Some(event) = self.advance_below_end(inner) {
                return Some(event);
            }
        }
        self.passed = self.passed.max(self.end);
        None
    }

    /// `advance`, looking only below `end`.
    #[inline]
    fn advance_below_end<'s>(&mut self, inner: &'s Inner<E>) -> Option<Envelope<'s, E>> {
        let log = &inner.log;
        match self.pin.as_deref() {
            None => {
                while self.next < self.end {
                    let position = self.next;
                    if position - self.run.start >= self.run.len {
                        // SAFETY: `position < end`, a watermark value loaded
                        // with Acquire.
                        let run = unsafe { log.committed_run(position, self.end) };
                        self.run = Run {
                            slots: run.as_ptr(),
                            start: position,
                            len: run.len() as u64,
                        };
                    }
                    // SAFETY: `position` lies in the run (checked above), whose
                    // slots live as long as `inner`'s log: the cursor only
                    // ever reads the store its subscription holds.
                    let slot =
                        unsafe { &*self.run.slots.add((position - self.run.start) as usize) };
                    // SAFETY: `position < end`, a watermark value loaded with
                    // Acquire.
                    let record = unsafe { slot.committed_record() };
                    let event = Envelope::new(record, position, &log.ids);
                    // The type name is user code and may panic: move past
                    // the event only once it returned (rule 17).
                    let selected = self.selector.selects_type(event.payload());
                    self.next = position + 1;
                    if selected {
                        self.passed = position + 1;
                        return Some(event);
                    }
                }
            }
            Some(stream) => {
                if self.next >= self.len && self.len_end == self.end {
                    // Every version committed below `end` was looked at.
                    // Without this, a call before the first watermark load
                    // (`end` 0) would have `committed_len` walk back over
                    // the whole stream, and a call with a stale `end` over
                    // every version recorded since.
                    return None;
                }
                let len = if self.len_end == self.end {
                    self.len
                } else {
                    // Once per watermark load, not per call: `committed_len`
                    // walks back over the versions recorded at or after
                    // `end`, which grow while the cursor works through a
                    // batch. `end` was loaded before this, as it needs.
                    let len = stream.committed_len(self.end);
                    (self.len, self.len_end) = (len, self.end);
                    len
                };
                if self.seeking {
                    self.next = seek(stream, self.next, len, self.first);
                    // Versions committed later may still lie before `first`
                    // (a start beyond the watermark): keep seeking until
                    // one does not.
                    self.seeking = self.next == len;
                }
                while self.next < len {
                    let position = stream.committed_position(self.next);
                    if position < self.first {
                        self.next += 1;
                        continue;
                    }
                    // SAFETY: a committed version's position lies below
                    // `end`, a watermark value loaded with Acquire.
                    let event = unsafe { log.envelope(position) };
                    // The type name is user code and may panic: move past
                    // the event only once it returned (rule 17).
                    let selected = self.selector.selects_type(event.payload());
                    self.next += 1;
                    if selected {
                        // The stream's last version below `end`: every
                        // position below `end` is now passed (the others
                        // belong to other streams).
                        self.passed = if self.next == len {
                            self.end
                        } else {
                            position + 1
                        };
                        return Some(event);
                    }
                }
            }
        }
        None
    }

    /// The signal to park on once the cursor has passed everything
    /// committed: its stream's for a one-stream cursor (woken by commits to
    /// that stream only), the watermark's otherwise (woken by every
    /// commit). Both are woken on poisoning.
    #[inline]
    pub(crate) fn signal<'a>(&'a self, inner: &'a Inner<E>) -> &'a Signal {
        match self.pin.as_deref() {
            Some(stream) => &stream.signal,
            None => &inner.log.watermark.signal,
        }
    }

    /// Whether a commit the cursor has not looked at may hold an event for
    /// it: the wait condition paired with [`signal`](Self::signal). For one
    /// stream, whether the stream has committed versions past those looked
    /// at; otherwise whether the watermark moved past `passed`.
    #[inline]
    pub(crate) fn may_have_more(&self, inner: &Inner<E>) -> bool {
        let watermark = inner.log.watermark.get();
        match self.pin.as_deref() {
            // `watermark` was loaded (Acquire) just before, as
            // `committed_len` needs.
            Some(stream) => stream.committed_len(watermark) > self.next,
            None => watermark > self.passed,
        }
    }

    /// The held stream, for a sleeper that must keep it alive.
    pub(crate) fn pinned_stream(&self) -> Option<&Arc<Stream>> {
        self.pin.as_ref()
    }
}

/// One stream: the first of the committed versions `next..len` whose
/// position is at least `first`, by binary search (positions ascend along a
/// stream's versions, rule 3), instead of walking every version before the
/// start.
fn seek(stream: &Stream, next: u64, len: u64, first: u64) -> u64 {
    let (mut low, mut high) = (next, len);
    while low < high {
        let middle = low + (high - low) / 2;
        if stream.committed_position(middle) < first {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

/// `len` committed slots from position `start`, in the log of the store a
/// subscription holds: a `&[Slot<E>]` without its lifetime, which the
/// subscription cannot name (it owns the store the slice borrows from).
/// Slots never move or go while the store lives.
struct Run<E> {
    slots: *const Slot<E>,
    start: u64,
    len: u64,
}

// SAFETY: a `Run` is a shared slice of slots in disguise, and `&[Slot<E>]`
// is `Send` and `Sync` exactly when `Slot<E>` is `Sync`, which it is for
// `E: Send + Sync`.
unsafe impl<E: Send + Sync> Send for Run<E> {}
// SAFETY: as above.
unsafe impl<E: Send + Sync> Sync for Run<E> {}

/// A pull subscription; see [`MemoryStore::subscribe`].
///
/// Events are borrowed straight from the log: each [`Envelope`] lives until
/// the next call on the subscription. Copy out what you need to keep.
///
/// For an event that outlives the next call, a [`futures_core::Stream`] or
/// an [`Iterator`], turn it into its owned forms:
/// [`into_stream`](Self::into_stream) and [`into_iter`](Self::into_iter)
/// yield [`OwnedEnvelope`](crate::OwnedEnvelope)s.
pub struct Subscription<E> {
    pub(crate) store: MemoryStore<E>,
    pub(crate) cursor: Cursor<E>,
}

impl<E> MemoryStore<E> {
    /// Subscribes to the events `selector` selects: history first, then live
    /// events as they commit, each exactly once and in position order.
    ///
    /// The subscription keeps the store alive. Subscriptions started before,
    /// during or after a burst of writes all see the same sequence.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, Selector, StreamId, Transaction};
    /// use std::time::Duration;
    ///
    /// let store = MemoryStore::new();
    /// let stream = StreamId::new();
    /// store.insert(Transaction::single(stream, ExpectedVersion::Any, "history")).unwrap();
    ///
    /// let mut subscription = store.subscribe(Selector::all());
    /// assert_eq!(*subscription.next().unwrap().payload(), "history");
    ///
    /// let writer = store.clone();
    /// std::thread::spawn(move || {
    ///     writer.insert(Transaction::single(stream, ExpectedVersion::Any, "live")).unwrap();
    /// });
    /// assert_eq!(*subscription.next().unwrap().payload(), "live"); // blocks until it commits
    /// assert!(subscription.try_next().unwrap().is_none());
    /// assert!(subscription.next_timeout(Duration::from_millis(1)).unwrap().is_none());
    /// ```
    pub fn subscribe(&self, selector: Selector<E>) -> Subscription<E> {
        Subscription {
            store: self.clone(),
            cursor: Cursor::new(selector, &self.inner),
        }
    }
}

impl<E> Subscription<E> {
    /// The next selected event, if one is committed; never blocks.
    ///
    /// # Errors
    ///
    /// [`SubscriptionError::Poisoned`] once every committed event was
    /// delivered from a poisoned store.
    pub fn try_next(&mut self) -> Result<Option<Envelope<'_, E>>, SubscriptionError> {
        match self.cursor.advance(&self.store.inner) {
            Some(event) => Ok(Some(event)),
            None if self.store.inner.log.watermark.is_poisoned() => {
                Err(SubscriptionError::Poisoned)
            }
            None => Ok(None),
        }
    }

    /// The next selected event, blocking until one commits.
    ///
    /// # Errors
    ///
    /// As for [`try_next`](Self::try_next).
    #[allow(clippy::should_implement_trait)] // lending: the event borrows `self`, which `Iterator` cannot express
    pub fn next(&mut self) -> Result<Envelope<'_, E>, SubscriptionError> {
        let event = self
            .wait_next(None, &|| false)?
            .expect("without a deadline or a stop condition, only an event ends the wait");
        Ok(event)
    }

    /// The next selected event, blocking for at most `timeout`; `None` if
    /// none committed in time.
    ///
    /// # Errors
    ///
    /// As for [`try_next`](Self::try_next).
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Envelope<'_, E>>, SubscriptionError> {
        let deadline = Instant::now().checked_add(timeout);
        self.wait_next(deadline, &|| false)
    }

    /// Delivers every selected event committed now to `visit`, in order,
    /// and returns how many it delivered; never blocks. The batch form of
    /// [`try_next`](Self::try_next): the watermark is loaded once per batch,
    /// not once per event, which is how a subscriber catches up at the speed
    /// of a read.
    ///
    /// # Errors
    ///
    /// As for [`try_next`](Self::try_next), once nothing is left to deliver.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, Selector, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// store.insert(Transaction::new().append(StreamId::new(), ExpectedVersion::Any, [1, 2, 3])).unwrap();
    /// let mut subscription = store.subscribe(Selector::all());
    /// let mut sum = 0;
    /// assert_eq!(subscription.drain(|event| sum += *event.payload()).unwrap(), 3);
    /// assert_eq!(sum, 6);
    /// assert_eq!(subscription.drain(|_| unreachable!()).unwrap(), 0);
    /// ```
    pub fn drain(
        &mut self,
        mut visit: impl FnMut(Envelope<'_, E>),
    ) -> Result<u64, SubscriptionError> {
        let mut delivered = 0;
        while let Some(event) = self.cursor.advance(&self.store.inner) {
            visit(event);
            delivered += 1;
        }
        if delivered == 0 && self.store.inner.log.watermark.is_poisoned() {
            return Err(SubscriptionError::Poisoned);
        }
        Ok(delivered)
    }

    /// The next selected event, waiting asynchronously: parks the task, not
    /// the thread, so it is safe on any async runtime's worker threads.
    ///
    /// # Errors
    ///
    /// As for [`try_next`](Self::try_next).
    ///
    /// ```
    /// # use hindsight::{ExpectedVersion, MemoryStore, Selector, StreamId, Transaction};
    /// # let store = MemoryStore::new();
    /// # store.insert(Transaction::single(StreamId::new(), ExpectedVersion::Any, 7)).unwrap();
    /// let mut subscription = store.subscribe(Selector::all());
    /// let first = futures_lite_block_on(async { *subscription.next_async().await.unwrap().payload() });
    /// assert_eq!(first, 7);
    /// # fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     let waker = std::task::Waker::noop();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v } }
    /// # }
    /// ```
    pub async fn next_async(&mut self) -> Result<Envelope<'_, E>, SubscriptionError> {
        loop {
            if let Some(event) = self.cursor.advance(&self.store.inner) {
                return Ok(event);
            }
            let inner = &*self.store.inner;
            if inner.log.watermark.is_poisoned() {
                return Err(SubscriptionError::Poisoned);
            }
            let sleeper = self.cursor.signal(inner).prepare();
            if self.cursor.may_have_more(inner) || inner.log.watermark.is_poisoned() {
                continue;
            }
            sleeper.notified().await;
        }
    }

    /// The last position delivered or passed over: every position up to and
    /// including it has been seen. `None` until position 0 is passed.
    pub fn passed(&self) -> Option<Position> {
        self.cursor.passed().checked_sub(1).map(Position)
    }

    /// Whether the subscription has caught up: every event committed when
    /// it last looked at the watermark has been delivered (or skipped, as
    /// other streams and types are). It looks whenever it has delivered
    /// everything below the value it loaded before, so this turns true with
    /// the delivery of the last event committed then (for a one-stream
    /// subscription, its stream's last; with a type filter, possibly only
    /// when the next call finds nothing more), and at once when a call
    /// finds nothing to deliver. It stays true until the subscription
    /// loads a watermark with more to deliver. `false` before the first
    /// call. Never blocks, never loads anything: a history-then-live
    /// consumer asks it after each event to learn that the history is done.
    ///
    /// ```
    /// use hindsight::{ExpectedVersion, MemoryStore, Selector, StreamId, Transaction};
    /// let store = MemoryStore::new();
    /// store.insert(Transaction::new().append(StreamId::new(), ExpectedVersion::Any, [1, 2])).unwrap();
    /// let mut subscription = store.subscribe(Selector::all());
    /// assert!(!subscription.is_caught_up()); // nothing checked yet
    /// subscription.try_next().unwrap();
    /// assert!(!subscription.is_caught_up());
    /// subscription.try_next().unwrap();
    /// assert!(subscription.is_caught_up()); // the last event committed when it looked
    /// assert!(subscription.try_next().unwrap().is_none());
    /// assert!(subscription.is_caught_up());
    /// ```
    pub fn is_caught_up(&self) -> bool {
        self.cursor.is_caught_up()
    }

    /// The store this subscription reads.
    pub fn store(&self) -> &MemoryStore<E> {
        &self.store
    }

    // Used by handler subscriptions, which loom builds leave out.
    #[cfg_attr(loom, allow(dead_code))]
    /// Moves past the next selected committed event and returns it with
    /// the selector (for the event's context); see `Cursor::advance`.
    #[inline]
    pub(crate) fn advance(&mut self) -> Option<(Envelope<'_, E>, &Selector<E>)> {
        let event = self.cursor.advance(&self.store.inner)?;
        Some((event, &self.cursor.selector))
    }

    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn cursor(&self) -> &Cursor<E> {
        &self.cursor
    }

    /// The next selected event, waiting until `deadline` or until `stop()`
    /// (both give `None`). `stop` is checked whenever the subscription would
    /// wait; whoever makes it true must then wake the cursor's signal
    /// (`Cursor::signal`).
    pub(crate) fn wait_next(
        &mut self,
        deadline: Option<Instant>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Envelope<'_, E>>, SubscriptionError> {
        loop {
            if let Some(event) = self.cursor.advance(&self.store.inner) {
                return Ok(Some(event));
            }
            if !self.wait_more(deadline, stop, false)? {
                return Ok(None);
            }
        }
    }

    /// Having passed everything committed, waits until a commit may hold
    /// an event for the cursor (`true`), or `stop()` or the deadline
    /// (`false`): spins, yields, then parks
    /// ([`Signal::wait_until`](crate::signal::Signal::wait_until)) on the
    /// cursor's signal. With `wide`, waits for any commit instead, on the
    /// watermark's signal: a handler subscriber of one stream that a
    /// `wait_processed` needs to see other streams' positions pass.
    pub(crate) fn wait_more(
        &self,
        deadline: Option<Instant>,
        stop: &dyn Fn() -> bool,
        wide: bool,
    ) -> Result<bool, SubscriptionError> {
        let inner = &*self.store.inner;
        let watermark = &inner.log.watermark;
        let passed = self.cursor.passed();
        let (signal, moved): (&Signal, &dyn Fn() -> bool) = if wide {
            (&watermark.signal, &|| watermark.get() > passed)
        } else {
            (self.cursor.signal(inner), &|| {
                self.cursor.may_have_more(inner)
            })
        };
        signal.wait_until(|| moved() || watermark.is_poisoned() || stop(), deadline);
        if moved() {
            Ok(true)
        } else if watermark.is_poisoned() {
            Err(SubscriptionError::Poisoned)
        } else {
            Ok(false)
        }
    }
}

impl<E> Drop for Subscription<E> {
    fn drop(&mut self) {
        // Hand the held stream back: the index drops its entry if the
        // stream never held an event and nobody else holds it.
        if let Some(stream) = self.cursor.pin.take() {
            self.store.inner.streams.release(stream);
        }
    }
}

impl<E> fmt::Debug for Subscription<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("selector", &self.cursor.selector)
            .field("passed", &self.cursor.passed)
            .finish_non_exhaustive()
    }
}
