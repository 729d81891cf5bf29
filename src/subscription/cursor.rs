//! Where a pull subscription is in the log: the [`Cursor`] every form of
//! subscription (pull, stream, iterator, handler) moves through the log,
//! and how it finds its first event in one stream (`seek`).
//!
//! Rules cited by number ("rule 17") are those of the contract
//! ([`crate::contract`]).

use crate::envelope::Envelope;
use crate::log::{Held, Keep, Reach, Slot};
use crate::read::Start;
use crate::segments::SegmentPin;
use crate::selector::Selector;
use crate::signal::Signal;
use crate::store::Inner;
use crate::stream::Stream;
use crate::sync::Arc;

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
    pub(super) pin: Option<Arc<Stream>>,
    /// The watermark as last loaded: everything below it is committed.
    end: u64,
    /// The clock reading maximum ages are compared with (rule 30): taken
    /// when the cursor first reaches an event of a stream with one after
    /// loading the watermark, forgotten at each load.
    now: Option<u64>,
    /// All streams: the committed slots the cursor walks, looked up once
    /// per run instead of once per event.
    run: Run<E>,
    /// Every position below this has been looked at (delivered or skipped);
    /// when `advance` returns `None`, it equals the watermark it observed.
    passed: u64,
    /// The pin on the segment of `run` (all streams) or of the last event
    /// read (one stream), if that segment can be freed (rule 30). Replaced
    /// when the cursor moves to the next such segment: every caller of
    /// `advance` is done with the envelopes it returned by then (they
    /// borrow the subscription mutably, or are owned and hold a pin of
    /// their own, `pin_of`).
    held: Option<Held<E>>,
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
            now: None,
            run: Run {
                slots: std::ptr::null(),
                start: 0,
                len: 0,
            },
            passed: first,
            selector,
            held: None,
        }
    }

    /// A pin of its own for an event `advance` just returned at
    /// `position`, if its segment can be freed: what an owned envelope
    /// keeps.
    pub(crate) fn pin_of(&self, position: u64) -> Option<SegmentPin> {
        self.held.as_ref().and_then(|held| held.pin_for(position))
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
        self.now = None;
        if watermark > self.end {
            self.end = watermark;
            if let Some(event) = self.advance_below_end(inner) {
                return Some(event);
            }
        }
        self.passed = self.passed.max(self.end);
        // Everything below `end` is looked at: whatever the cursor returns
        // next lies at or past it, so a pinned segment that ends there is
        // never read again (a cursor following live writes keeps the pin
        // of the segment they go to).
        if self
            .held
            .as_ref()
            .is_some_and(|held| held.end() <= self.end)
        {
            self.held = None;
        }
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
                        // with Acquire; the run is read while `held` pins
                        // it, and the pin it replaces guarded only
                        // envelopes the caller is done with (see `held`).
                        match unsafe { log.reach(position, self.end, &mut self.held, drop) } {
                            Reach::Run(run) => {
                                self.run = Run {
                                    slots: run.as_ptr(),
                                    start: position,
                                    len: run.len() as u64,
                                }
                            }
                            // Every event of the segment was removed and its
                            // memory reclaimed: skipped as removed (rule 30).
                            Reach::Gone { end } => {
                                self.next = end.min(self.end);
                                continue;
                            }
                        }
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
                    // Removed and too old events are skipped when reached
                    // (rule 30); the stream is looked at only once anything
                    // was ever removed from the store (see `Inner::skips`).
                    // A custom clock may panic here: before moving past
                    // the event.
                    if inner.skips(inner.removals(), event, &mut self.now) {
                        self.next = position + 1;
                        continue;
                    }
                    // The category first: no user code, and tested for
                    // `None` here so that a subscription without one never
                    // reads the event's stream (`stream_name` follows the
                    // slot's stream pointer). The type name is user code
                    // and may panic: move past the event only once it
                    // returned (rule 17).
                    let selected = (self.selector.category.is_none()
                        || self.selector.selects_stream_name(event.stream_name()))
                        && self.selector.selects_type(event.payload());
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
                    // Versions removed by the time they are reached are
                    // skipped (rule 30): the floor only rises.
                    let floor = stream.floor();
                    if self.next < floor {
                        self.next = floor;
                        continue;
                    }
                    let Some(position) = stream.committed_position(self.next) else {
                        // Removed, and its position freed (rule 30).
                        self.next += 1;
                        continue;
                    };
                    if position < self.first {
                        self.next += 1;
                        continue;
                    }
                    // SAFETY: a committed version's position lies below
                    // `end`, a watermark value loaded with Acquire; held
                    // as in the all-streams case.
                    let Ok(event) = (unsafe {
                        log.reach_one(position, &mut self.held, |held| Keep::Drop.keep(held))
                    }) else {
                        // Removed, and its memory reclaimed (rule 30).
                        self.next += 1;
                        continue;
                    };
                    // So are events older than the stream's maximum age
                    // when reached (one load for a stream without one; a
                    // custom clock may panic: before moving past it).
                    if event.is_too_old(|| inner.reading(&mut self.now)) {
                        self.next += 1;
                        continue;
                    }
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
        // A freed position was removed, and lies before every other
        // (freed positions are a prefix): skipped as before `first`.
        if stream
            .committed_position(middle)
            .is_none_or(|position| position < first)
        {
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
