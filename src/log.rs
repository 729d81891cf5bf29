//! The append-only log of records, with reservation and commit.
//!
//! A writer reserves a contiguous range of positions with one `fetch_add`,
//! moves its records into the range's slots, and commits by publishing a
//! [`Marker`] on the range's first slot. A writer whose range starts at the
//! watermark moves the watermark itself with a plain store (no other thread
//! can move it past a range whose marker is not set); any other writer
//! helps the [`Watermark`] over every contiguous committed range. A slot is
//! read only below the watermark, and written exactly once, by the writer
//! that reserved it, before its range is published.
//!
//! A slot holds one event: its commit marker, its stream, its version, its
//! transaction's [`Stamp`] (creation time, and correlation id and per-event
//! metadata if any) and the payload: 32 bytes beside the payload, 64 for a
//! 32-byte event. The position is the slot's index, and the event id is
//! derived from it (see [`EventIds`]) unless the writer gave one (kept in
//! the transaction's [`TxMeta`], contract rule 29), so neither is stored
//! in the slot.

use crate::envelope::Envelope;
use crate::epoch;
use crate::ids::{CorrelationId, EventId, EventIds};
use crate::metadata::{Metadata, EMPTY};
use crate::segments::{self, Segments, CAPACITY};
use crate::segments::{Hold, SegmentPin};
use crate::stream::{StreamIndex, StreamPtr};
use crate::sync::{
    self, fence, Arc, AtomicBool, AtomicU64, AtomicUsize, CachePadded, Mutex, Ordering, UnsafeCell,
};
use crate::watermark::{Poisoned, Watermark};
use std::mem::{ManuallyDrop, MaybeUninit};
use std::time::{Duration, SystemTime};

/// Slots in the log's first segments: 2^10; 2 under loom, 2^6 under Miri
/// (see `LOG_MAX`).
#[cfg(not(any(loom, miri)))]
const LOG_SHIFT: u32 = 10;
#[cfg(all(miri, not(loom)))]
const LOG_SHIFT: u32 = 6;
#[cfg(loom)]
const LOG_SHIFT: u32 = 1;

/// Segments per size: 8 (at most 1/16 of the log's memory is allocated
/// ahead of use); 1 under loom (plain doubling, the smallest model), and
/// in the crate's unit tests and under Miri (see `LOG_MAX`).
#[cfg(not(any(loom, test, miri)))]
const LOG_GROUP: u32 = 3;
#[cfg(any(loom, test, miri))]
const LOG_GROUP: u32 = 0;

/// The largest segments: 2^16 slots (4 MiB for a 32-byte event), so that
/// no segment grows with the log and whole segments of removed events can
/// be freed one by one (`Log::reclaim`). Under loom 4 slots (segments of
/// 2, 4, 4, ...), so that the models reach the capped region; in the
/// crate's unit tests 2^12, with segments of 1,024, 2,048 and 4,096 slots,
/// then of 4,096: reclamation is reached after 7,168 events instead of
/// 1,040,384 (tests/reclaim.rs runs the real layout); under Miri, which
/// interprets every instruction, 2^8 after segments of 64 and 128 (448
/// slots).
#[cfg(not(any(loom, test, miri)))]
const LOG_MAX: u32 = 16;
#[cfg(all(test, not(any(loom, miri))))]
const LOG_MAX: u32 = 12;
#[cfg(all(miri, not(loom)))]
const LOG_MAX: u32 = 8;
#[cfg(loom)]
const LOG_MAX: u32 = 2;

/// The size of a memory page: a slot that starts this close to a page
/// boundary may be the first touch of a fresh page (see `committed_len`).
const PAGE: usize = 4096;

/// The commit marker of a slot, as stored in its atomic word.
///
/// Only the first slot of a transaction ever holds a non-empty marker:
/// empty until the transaction commits, then its length, with the top bit
/// set if the range was abandoned by a panicking writer (its written records
/// already dropped; the watermark never covers it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Marker(u64);

impl Marker {
    /// The abandoned bit, above every length (lengths are below `CAPACITY`).
    const ABANDONED: u64 = 1 << 63;
    /// Nothing committed here (yet).
    const EMPTY: Marker = Marker(0);

    /// A committed transaction of `len > 0` events.
    fn committed(len: u64) -> Self {
        Marker(len)
    }

    /// A range of `len > 0` positions that will never commit.
    fn abandoned(len: u64) -> Self {
        Marker(len | Self::ABANDONED)
    }

    /// The length of the committed transaction, if this marks one.
    fn committed_len(self) -> Option<u64> {
        (self.0 != 0 && self.0 & Self::ABANDONED == 0).then_some(self.0)
    }

    /// The range's length, committed or abandoned; `None` if empty.
    fn range_len(self) -> Option<u64> {
        (self.0 != 0).then_some(self.0 & !Self::ABANDONED)
    }

    fn is_abandoned(self) -> bool {
        self.0 & Self::ABANDONED != 0
    }
}

/// What a transaction stamps on each of its events: its creation time, and
/// its correlation id and its events' metadata if it has any.
///
/// One word: the creation time in nanoseconds since the Unix epoch, shifted
/// left by one (bit 0 clear), or, for a transaction with a correlation id,
/// an event with [`Metadata`] or an event with a client id, a pointer to a
/// [`TxMeta`] holding all of it, with bit 0 set (a `TxMeta` is 8-aligned). The `TxMeta` belongs to
/// the log once the transaction is written, and is freed with it; every
/// event of the transaction carries a copy of the pointer. A transaction
/// without either allocates nothing and stores nothing more.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Stamp(u64);

/// The per-transaction metadata a [`Stamp`] points to.
struct TxMeta {
    /// Nanoseconds since the Unix epoch. Atomic because it may be raised
    /// after the transaction is written, before it becomes visible (see
    /// [`Log::order_created_at`]).
    created_at: AtomicU64,
    correlation_id: Option<CorrelationId>,
    /// The transaction's first position (above [`SPAN_BITS`]), and how
    /// many units of reclamation its range still holds (below): each
    /// capped log segment it touches is one, and the geometric region (never
    /// freed before the log drops) is one. Set by [`Log::reserve`], while
    /// the reserving writer still owns the `TxMeta` alone, before any
    /// record points to it; the position never changes after, and each
    /// unit freed (a retired segment, or the log's teardown) takes one
    /// from the count: the last frees the `TxMeta`.
    first_spans: AtomicU64,
    /// The transaction's length (at most `MAX_TRANSACTION_EVENTS`, 2^24):
    /// set with `first`, read by the idempotency check (contract rule 29)
    /// to tell whether a retry covers all of it.
    len: u32,
    /// The metadata of the transaction's events that have some, by offset
    /// from `first`, in ascending offset order (offsets are below
    /// `MAX_TRANSACTION_EVENTS`, 2^24).
    events: Box<[(u32, Metadata)]>,
    /// The client-supplied ids of the transaction's events that have one
    /// (contract rule 29), by offset from `first`, ascending; `None` when
    /// none has. Behind a thin pointer: a `TxMeta` of metadata only stays
    /// small (64 bytes).
    ids: Option<Box<ClientIds>>,
    /// Under loom only: a cell read by every look at the `TxMeta` through
    /// a record and by each `release_span`, and written by `free_stamp`
    /// just before the free, so that loom flags a free not ordered after
    /// every release and every read (as the chunk's `born` does in
    /// `segments.rs`). Synchronises nothing.
    #[cfg(loom)]
    born: UnsafeCell<()>,
}

/// The bits of [`TxMeta::first_spans`] that count units: a transaction
/// of at most 2^24 events touches at most 2^8 + 2 capped segments.
const SPAN_BITS: u32 = 24;

/// The client ids of one transaction: `(offset, id)`, offsets ascending.
struct ClientIds(Box<[(u32, EventId)]>);

impl TxMeta {
    /// The transaction's first position.
    #[inline]
    fn first(&self) -> u64 {
        // Relaxed: written before the records that point here, which the
        // reader acquired (its commit) or wrote; never changed after (the
        // decrements only touch the bits below `SPAN_BITS`).
        self.first_spans.load(Ordering::Relaxed) >> SPAN_BITS
    }

    /// The client ids, empty if none.
    fn ids(&self) -> &[(u32, EventId)] {
        match &self.ids {
            Some(ids) => &ids.0,
            None => &[],
        }
    }
}

/// The most nanoseconds a [`Stamp`] keeps: 63 bits, until the year 2262.
const MAX_NANOS: u64 = u64::MAX >> 1;

/// The wall clock now, in nanoseconds since the Unix epoch (see
/// [`nanos_since_epoch`]).
pub(crate) fn now_nanos() -> u64 {
    #[cfg(all(unix, not(miri)))]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid, writable `timespec`, and
        // `CLOCK_REALTIME` is a clock every Unix has.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) } == 0 {
            return match (u64::try_from(now.tv_sec), u64::try_from(now.tv_nsec)) {
                (Ok(secs), Ok(nanos)) => secs
                    .checked_mul(1_000_000_000)
                    .and_then(|secs| secs.checked_add(nanos))
                    .map_or(MAX_NANOS, |total| total.min(MAX_NANOS)),
                // Before 1970.
                _ => 0,
            };
        }
    }
    nanos_since_epoch(SystemTime::now())
}

/// Nanoseconds since the Unix epoch, in the 63 bits a [`Stamp`] keeps
/// (clocks before 1970 read as 1970; 63 bits last until the year 2262).
pub(crate) fn nanos_since_epoch(time: SystemTime) -> u64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => since
            .as_secs()
            .checked_mul(1_000_000_000)
            .and_then(|nanos| nanos.checked_add(u64::from(since.subsec_nanos())))
            .map_or(MAX_NANOS, |nanos| nanos.min(MAX_NANOS)),
        Err(_) => 0,
    }
}

impl Stamp {
    /// The creation time.
    pub(crate) fn created_at(self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.created_at_nanos())
    }

    /// The creation time in nanoseconds since the Unix epoch.
    pub(crate) fn created_at_nanos(self) -> u64 {
        match self.meta() {
            // Relaxed: a raise (`Log::order_created_at`) is published with
            // the range, by the watermark's Release store or CAS that the
            // reader acquired before reading the record.
            Some(meta) => meta.created_at.load(Ordering::Relaxed),
            None => self.0 >> 1,
        }
    }

    /// The correlation id, if the transaction had one.
    pub(crate) fn correlation_id(self) -> Option<CorrelationId> {
        self.meta().and_then(|meta| meta.correlation_id)
    }

    fn meta(&self) -> Option<&TxMeta> {
        (self.0 & 1 == 1).then(|| {
            // SAFETY: a tagged stamp holds a pointer from `Box::into_raw`
            // (`OwnedStamp::new`), freed only by `OwnedStamp`'s drop before
            // it was ever copied into the log, or by `Log::drop` (which needs
            // `&mut Log`, so no stamp read from the log is alive then).
            let meta = unsafe { &*meta_pointer(*self) };
            #[cfg(loom)]
            meta.born.with(|_| ());
            meta
        })
    }
}

/// A stamp whose `TxMeta` (if any) is not owned by the log yet: dropping it
/// frees the metadata.
pub(crate) struct OwnedStamp(Stamp);

impl OwnedStamp {
    /// Stamps a transaction created `created_at` nanoseconds after the
    /// Unix epoch (at most 2^63 - 1), allocating its metadata if it has a
    /// correlation id.
    #[inline]
    pub(crate) fn new(created_at: u64, correlation_id: Option<CorrelationId>) -> Self {
        debug_assert!(created_at <= MAX_NANOS);
        match correlation_id {
            None => OwnedStamp(Stamp(created_at << 1)),
            Some(_) => Self::with_metadata(created_at, correlation_id, Vec::new(), Vec::new()),
        }
    }

    /// [`new`](Self::new), with the metadata of the transaction's events
    /// that have some: `(offset in the transaction, metadata)`, offsets
    /// ascending and below 2^24, none of them empty; and the client ids of
    /// those that have one, `(offset, id)`, offsets ascending.
    pub(crate) fn with_metadata(
        created_at: u64,
        correlation_id: Option<CorrelationId>,
        events: Vec<(u32, Metadata)>,
        ids: Vec<(u32, EventId)>,
    ) -> Self {
        debug_assert!(created_at <= MAX_NANOS);
        debug_assert!(events.windows(2).all(|pair| pair[0].0 < pair[1].0));
        debug_assert!(ids.windows(2).all(|pair| pair[0].0 < pair[1].0));
        OwnedStamp(Stamp(
            if correlation_id.is_none() && events.is_empty() && ids.is_empty() {
                created_at << 1
            } else {
                Self::allocate(created_at, correlation_id, events, ids)
            },
        ))
    }

    /// A tagged stamp word for a new `TxMeta`.
    fn allocate(
        created_at: u64,
        correlation_id: Option<CorrelationId>,
        events: Vec<(u32, Metadata)>,
        ids: Vec<(u32, EventId)>,
    ) -> u64 {
        {
            let meta = Box::into_raw(Box::new(TxMeta {
                created_at: AtomicU64::new(created_at),
                correlation_id,
                first_spans: AtomicU64::new(0),
                len: 0,
                events: events.into_boxed_slice(),
                ids: (!ids.is_empty()).then(|| Box::new(ClientIds(ids.into_boxed_slice()))),
                #[cfg(loom)]
                born: UnsafeCell::new(()),
            }));
            #[cfg(loom)]
            crate::loom_api::note_tx_meta(1);
            // Exposed: the pointer round-trips through an integer.
            meta.expose_provenance() as u64 | 1
        }
    }

    /// Records the transaction's first position, length and units of
    /// reclamation (`spans`) in its metadata, if it has some.
    fn set_range(&mut self, first: u64, len: u64, spans: u64) {
        if self.0 .0 & 1 == 1 {
            // SAFETY: not given to the log yet, so this stamp owns the
            // `TxMeta` alone (no record holds a copy of the pointer, and no
            // reference to it is alive): a plain write through the pointer
            // from `Box::into_raw` is exclusive.
            unsafe {
                // Relaxed: published with the records that copy the
                // stamp, by their commit.
                (*meta_pointer(self.0))
                    .first_spans
                    .store(first << SPAN_BITS | spans, Ordering::Relaxed);
                // A transaction is at most 2^24 events (`measure`).
                (*meta_pointer(self.0)).len = len as u32;
            }
        }
    }

    /// The transaction's `TxMeta`, if it has one; readable while the
    /// stamp is owned here (nobody else holds it).
    fn tx_meta(&self) -> Option<&TxMeta> {
        self.0.meta()
    }

    /// The client ids of the transaction's events at offsets `from..to`,
    /// `(offset, id)` in ascending order (contract rule 29).
    pub(crate) fn client_ids(&self, from: u32, to: u32) -> &[(u32, EventId)] {
        let Some(meta) = self.tx_meta() else {
            return &[];
        };
        let ids = meta.ids();
        let start = ids.partition_point(|(at, _)| *at < from);
        let end = ids.partition_point(|(at, _)| *at < to);
        &ids[start..end]
    }

    /// The metadata of the transaction's event at `offset` (the empty
    /// `Metadata` if it has none).
    pub(crate) fn metadata_at(&self, offset: u32) -> &Metadata {
        match self.tx_meta() {
            Some(meta) => match meta.events.binary_search_by_key(&offset, |(at, _)| *at) {
                Ok(index) => &meta.events[index].1,
                Err(_) => &EMPTY,
            },
            None => &EMPTY,
        }
    }

    /// Gives the metadata to the log, which frees it when it drops.
    fn into_log(self) -> Stamp {
        ManuallyDrop::new(self).0
    }
}

impl Drop for OwnedStamp {
    fn drop(&mut self) {
        // SAFETY: not given to the log, so this is the only owner.
        unsafe { free_stamp(self.0) };
    }
}

/// The `TxMeta` pointer a tagged stamp holds (its provenance was exposed
/// when the stamp was made).
fn meta_pointer(stamp: Stamp) -> *mut TxMeta {
    std::ptr::with_exposed_provenance_mut((stamp.0 & !1) as usize)
}

/// Frees a stamp's metadata, if it has some.
///
/// # Safety
///
/// The caller owns the stamp's metadata (it was never given to the log, or
/// this is the log's teardown), frees it once, and no copy of the stamp is
/// read afterwards.
#[inline]
unsafe fn free_stamp(stamp: Stamp) {
    if stamp.0 & 1 == 1 {
        // SAFETY: a tagged stamp holds a pointer from `Box::into_raw`; the
        // caller owns it and frees it once.
        let meta = unsafe { Box::from_raw(meta_pointer(stamp)) };
        #[cfg(loom)]
        {
            meta.born.with_mut(|_| ());
            crate::loom_api::note_tx_meta(-1);
        }
        drop(meta);
    }
}

/// Gives back one unit of reclamation of a stamp's metadata (see
/// [`TxMeta::first_spans`]), freeing it with the last.
///
/// # Safety
///
/// The caller frees one unit the transaction touches (a retired segment,
/// or one the teardown walks) and calls this once for it; no record of
/// that unit is read afterwards.
unsafe fn release_span(stamp: Stamp) {
    if stamp.0 & 1 == 1 {
        // SAFETY: a tagged stamp holds a live `TxMeta` while any unit it
        // spans is not freed, and this unit is not freed yet.
        let meta = unsafe { &*meta_pointer(stamp) };
        #[cfg(loom)]
        meta.born.with(|_| ());
        // AcqRel: the last release reads every earlier one in the RMW
        // chain, so every read of the `TxMeta` through another unit's
        // records happens before the free.
        if meta.first_spans.fetch_sub(1, Ordering::AcqRel) & ((1 << SPAN_BITS) - 1) == 1 {
            // SAFETY: the last unit is gone: nobody can reach the `TxMeta`.
            unsafe { free_stamp(stamp) };
        }
    }
}

/// An event as the log keeps it; its position is its slot's index.
pub(crate) struct Record<E> {
    /// The event's stream. Streams that hold events are never removed from
    /// the index, which lives as long as the log.
    pub(crate) stream: StreamPtr,
    /// The event's version in its stream.
    pub(crate) version: u64,
    /// The transaction's creation time and correlation id.
    pub(crate) stamp: StampCell,
    pub(crate) payload: E,
}

/// A record's [`Stamp`]. Atomic because a creation time kept in the stamp
/// itself may be raised after the record is written, before the range
/// becomes visible (see [`Log::order_created_at`]).
pub(crate) struct StampCell(AtomicU64);

impl<E> Record<E> {
    /// The metadata of this record, at `position` (the slot's index): the
    /// empty [`Metadata`] if its transaction gave it none. Borrowed for as
    /// long as the record.
    #[inline]
    pub(crate) fn metadata(&self, position: u64) -> &Metadata {
        let stamp = self.stamp.get();
        if stamp.0 & 1 == 0 {
            return &EMPTY;
        }
        // `first` and `events` were written before the record was (`first`
        // in `Log::reserve`) and never change after.
        // SAFETY: a tagged stamp points to a `TxMeta` from `Box::into_raw`,
        // freed only by `Log::drop`, which needs `&mut Log`: it outlives `&self`.
        let meta = unsafe { &*meta_pointer(stamp) };
        let Some(offset) = position
            .checked_sub(meta.first())
            .and_then(|offset| u32::try_from(offset).ok())
        else {
            return &EMPTY;
        };
        match meta.events.binary_search_by_key(&offset, |(at, _)| *at) {
            Ok(index) => &meta.events[index].1,
            Err(_) => &EMPTY,
        }
    }
}

/// Where a committed event with a client id sits in its transaction, for
/// the idempotency check (contract rule 29).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct TxRange {
    /// The transaction's first position.
    pub(crate) first: u64,
    /// Its number of events.
    pub(crate) len: u64,
}

impl<E> Record<E> {
    /// The client-supplied id of this record, at `position`, if its
    /// transaction gave it one (contract rule 29).
    #[inline]
    pub(crate) fn client_id(&self, position: u64) -> Option<EventId> {
        let stamp = self.stamp.get();
        if stamp.0 & 1 == 0 {
            return None;
        }
        // SAFETY: as in `metadata`.
        let meta = unsafe { &*meta_pointer(stamp) };
        let ids = meta.ids.as_deref()?;
        let offset = u32::try_from(position.checked_sub(meta.first())?).ok()?;
        ids.0
            .binary_search_by_key(&offset, |(at, _)| *at)
            .ok()
            .map(|index| ids.0[index].1)
    }

    /// The range of this record's transaction, if it has a `TxMeta` (every
    /// transaction with a client id does).
    pub(crate) fn tx_range(&self) -> Option<TxRange> {
        let stamp = self.stamp.get();
        // SAFETY: as in `metadata`.
        (stamp.0 & 1 == 1).then(|| unsafe {
            let meta = &*meta_pointer(stamp);
            TxRange {
                first: meta.first(),
                len: u64::from(meta.len),
            }
        })
    }
}

impl StampCell {
    fn new(stamp: Stamp) -> Self {
        Self(AtomicU64::new(stamp.0))
    }

    /// The stamp.
    #[inline]
    pub(crate) fn get(&self) -> Stamp {
        // Relaxed: a raise is published with the range, by the watermark's
        // Release store or CAS that the reader acquired before this load.
        Stamp(self.0.load(Ordering::Relaxed))
    }

    /// The stamp, for a thread that may raise it: see
    /// [`Log::order_created_at`].
    fn get_acquire(&self) -> Stamp {
        // Acquire: pairs with the Release store in `raise_to` on a range's
        // first record, made after the range's other records were raised.
        Stamp(self.0.load(Ordering::Acquire))
    }

    /// Raises an untagged stamp's creation time to `nanos`.
    fn raise_to(&self, nanos: u64, order: Ordering) {
        // Relaxed on every record but a range's first, Release on the
        // first, last (`Log::order_created_at`). All are published by the
        // watermark store or CAS that follows in the raising thread.
        self.0.store(nanos << 1, order);
    }
}

/// One position of the log.
pub(crate) struct Slot<E> {
    /// [`Marker::EMPTY`] until the transaction starting here commits; always
    /// empty on slots that do not start a transaction.
    marker: AtomicU64,
    /// Initialised once the writer moved the record in; read only after
    /// the watermark covers this position.
    record: UnsafeCell<MaybeUninit<Record<E>>>,
}

impl<E> Default for Slot<E> {
    fn default() -> Self {
        Self {
            marker: AtomicU64::new(Marker::EMPTY.0),
            record: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }
}

impl<E> Slot<E> {
    /// The record of a committed slot.
    ///
    /// # Safety
    ///
    /// The slot's position is below a value this thread loaded from the
    /// watermark (with `Acquire`, as `Watermark::get` does).
    #[inline]
    pub(crate) unsafe fn committed_record(&self) -> &Record<E> {
        // Why the shared borrow below is sound: 1. the watermark only covers
        // committed ranges; 2. a range is committed (Release marker, or the
        // fast path's Release watermark store) after all its records were
        // written; 3. the caller's Acquire load of the watermark
        // happens-after that commit (through the helpers' CAS chain).
        // SAFETY: by 1-3 the record is initialised and visible, and nobody
        // writes it again before the log drops (which needs `&mut self`):
        // the one later change, a raise of its stamp (an atomic), happens
        // before the watermark covers it.
        self.record.with(|p| unsafe { (*p).assume_init_ref() })
    }

    /// The record of a slot written but perhaps not committed.
    ///
    /// # Safety
    ///
    /// The record is written and its write is visible to this thread: it
    /// wrote it, or acquired its range's marker or a watermark above it.
    #[inline]
    unsafe fn written_record(&self) -> &Record<E> {
        // SAFETY: the caller's contract: initialised and visible, and records
        // are never written again while shared.
        self.record.with(|p| unsafe { (*p).assume_init_ref() })
    }

    fn marker(&self, order: Ordering) -> Marker {
        Marker(self.marker.load(order))
    }

    /// Whether the slot begins within its first bytes of a memory page, so
    /// that reading it could be the first touch of that page.
    #[inline]
    fn may_start_a_fresh_page(&self) -> bool {
        // Under loom, pretend every slot does: addresses differ between
        // executions, and a model must take the same branches every time.
        cfg!(loom) || (self as *const Self as usize) % PAGE < std::mem::size_of::<Self>()
    }
}

// SAFETY: an all-zero `Slot` is an empty marker (a zero `AtomicU64`, its
// default) and an uninitialised `MaybeUninit`, for which any bytes are valid.
unsafe impl<E> segments::Slot for Slot<E> {}

// SAFETY: a slot's record is written by exactly one thread (the writer that
// reserved its position) before its range is published, and from then on
// only shared as `&Record<E>`. Sharing needs `E: Sync`; dropping it on
// whatever thread drops the store needs `E: Send`.
unsafe impl<E: Send + Sync> Sync for Slot<E> {}
// SAFETY: as above; moving a slot moves its record.
unsafe impl<E: Send> Send for Slot<E> {}

/// The log is full: a transaction would need positions at or past
/// [`CAPACITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

/// The log's slots.
type LogSlots<E> = Segments<Slot<E>, LOG_SHIFT, LOG_GROUP, LOG_MAX>;

/// The slots of one capped log segment in which every event is removed:
/// retired (and so hidden from every later reader) once the watermark is
/// past it, freed once nobody can read it.
struct Retired<E> {
    segment: usize,
    /// Null until retired; then the slots that `Segments::retire` took
    /// out of the array.
    base: *mut Slot<E>,
    /// Set once every epoch guard older than the retirement is gone.
    quiet: Option<Arc<AtomicBool>>,
}

// SAFETY: `base` is owned by the list that holds the entry (taken out of
// the array by `retire`), and its records are dropped on whatever thread
// frees them: what moving a `Segments<Slot<E>>` needs, `E: Send`.
unsafe impl<E: Send> Send for Retired<E> {}

pub(crate) struct Log<E> {
    slots: LogSlots<E>,
    /// The next unreserved position.
    next: CachePadded<AtomicU64>,
    /// The first position of the first reservation refused as full
    /// (`CAPACITY` until then): nothing from there on was ever written.
    full_at: AtomicU64,
    /// Capped segments whose events are all removed and counted (contract
    /// rule 30), waiting to be retired or freed.
    retired: Mutex<Vec<Retired<E>>>,
    /// How many entries `retired` holds: `reclaim` looks at the list only
    /// when it is not empty.
    pending: AtomicUsize,
    /// The end of the committed prefix.
    pub(crate) watermark: Watermark,
    /// The event ids of this log's events.
    pub(crate) ids: EventIds,
}

impl<E> Log<E> {
    pub(crate) fn new(ids: EventIds) -> Self {
        Self {
            slots: Segments::new(),
            next: CachePadded::new(AtomicU64::new(0)),
            full_at: AtomicU64::new(CAPACITY),
            retired: Mutex::new(Vec::new()),
            pending: AtomicUsize::new(0),
            watermark: Watermark::new(),
            ids,
        }
    }

    /// Reserves `len > 0` consecutive positions for a transaction stamped
    /// `stamp`, or fails if they would reach past [`CAPACITY`].
    ///
    /// The caller must fill and commit them: dropping the reservation
    /// instead poisons the store (see [`Reservation`]).
    #[inline]
    pub(crate) fn reserve(&self, len: u64, stamp: OwnedStamp) -> Result<Reservation<'_, E>, Full> {
        debug_assert!(len > 0 && len < CAPACITY);
        // Relaxed: positions only need to be unique and contiguous, which
        // the RMW gives. Two transactions on one stream are ordered by that
        // stream's lock, whose unlock/lock happens-before orders their
        // `fetch_add`s the same way. Slot contents are published by the
        // commit, not by this counter.
        let start = self.next.fetch_add(len, Ordering::Relaxed);
        // `next` passes `CAPACITY` by at most one transaction per refused
        // writer: it would take 2^40 refusals to wrap.
        if start > CAPACITY - len {
            // Positions from here on can never be filled: the log is full,
            // for this writer and every later one. Nothing was written, and
            // the watermark never passes `start`, so no reader sees a hole.
            // Relaxed: read only by the teardown, after `&mut self`.
            self.full_at.fetch_min(start, Ordering::Relaxed);
            return Err(Full);
        }
        let mut stamp = stamp;
        // Plain arithmetic and stores, before any record is written: cannot
        // panic.
        let spans = LogSlots::<E>::unit(start + len - 1) - LogSlots::<E>::unit(start) + 1;
        stamp.set_range(start, len, spans);
        Ok(Reservation {
            log: self,
            start,
            len,
            written: 0,
            run: &[],
            first: None,
            stamp: ManuallyDrop::new(stamp),
            streams: None,
        })
    }

    /// How many segments wait to be retired or freed.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        sync::lock(&self.retired).len()
    }

    /// How many segments wait to be retired, or for the epoch guards
    /// older than their retirement: those a `reclaim` now would not free
    /// even if nobody pinned them.
    #[cfg(test)]
    pub(crate) fn unquiet(&self) -> usize {
        sync::lock(&self.retired)
            .iter()
            .filter(|retired| {
                !retired
                    .quiet
                    .as_ref()
                    .is_some_and(|quiet| quiet.load(Ordering::Acquire))
            })
            .count()
    }

    /// The first position of the capped region, and the capped segments'
    /// length, in this build's layout.
    #[cfg(test)]
    pub(crate) fn capped_layout() -> (u64, u64) {
        (LogSlots::<E>::CAPPED_START, LogSlots::<E>::SEGMENT_LEN)
    }

    /// Pretends `position` positions were reserved already (and refused):
    /// how tests reach the end of the log without filling it.
    #[cfg(test)]
    pub(crate) fn skip_to(&self, position: u64) {
        self.next.store(position, Ordering::Relaxed);
    }

    /// The length of the transaction committed at `position`, or 0.
    #[inline]
    fn committed_len(&self, position: u64) -> u64 {
        let Some(slot) = self.slots.get(position) else {
            return 0;
        };
        // Reading the marker of a slot nobody reserved yet would touch a
        // fresh page for reading, which maps the shared zero page; the
        // writer's first write then faults a second time. So at a page
        // start, look at `next` first. Relaxed: a stale value only makes this
        // helper stop early, which the commit fences make safe (DESIGN.md,
        // "The stranded commit": a committer whose reservation this load
        // misses fenced after us, and sees our progress).
        if slot.may_start_a_fresh_page() && position >= self.next.load(Ordering::Relaxed) {
            return 0;
        }
        // Acquire: pairs with the Release marker store in `commit`, making
        // the range's records visible to this helper, which then
        // republishes them through the watermark CAS.
        slot.marker(Ordering::Acquire).committed_len().unwrap_or(0)
    }

    /// [`committed_len`](Self::committed_len) for [`Watermark::advance`]:
    /// the length of the transaction committed at `position` (0 if none),
    /// with its `created_at` put in position order first.
    ///
    /// A helper whose `position` is stale may find the slot before it, or
    /// the range itself, in a segment retired since (all its events removed
    /// and covered by the watermark): the watermark is then past
    /// `position`, so its CAS fails, and it skips the ordering (someone
    /// else did it before moving the watermark) but still answers the
    /// length, so that it reloads the watermark as after any failed CAS.
    ///
    /// # Safety
    ///
    /// `position` is a value this thread loaded from the watermark (with
    /// `Acquire`), or the end of a range this thread just moved it over,
    /// and this thread holds an epoch guard.
    #[inline]
    unsafe fn committed_len_ordered(&self, position: u64) -> u64 {
        let len = self.committed_len(position);
        if len != 0 {
            // SAFETY: the marker was loaded with Acquire, so the range's
            // records are written and visible; `position - 1` lies below
            // the watermark (the caller's contract), so its creation time is
            // final; the caller's guard keeps whatever this finds.
            unsafe {
                if let Some(earliest) = self.created_at_before(position) {
                    self.order_created_at(position, len, earliest);
                }
            }
        }
        len
    }

    /// The final creation time of the event just before `position`, in
    /// nanoseconds (0 at position 0); `None` if its segment was retired.
    ///
    /// # Safety
    ///
    /// `position` is at most a value this thread loaded from the watermark
    /// (with `Acquire`), and this thread holds an epoch guard or owns the
    /// uncommitted range that starts at `position` (then the watermark is
    /// not past it, and the slot before it cannot be retired).
    #[inline]
    unsafe fn created_at_before(&self, position: u64) -> Option<u64> {
        match position.checked_sub(1) {
            None => Some(0),
            // SAFETY: `position - 1` is below the watermark, and guarded
            // or not retirable (the caller's contract).
            Some(previous) => unsafe { self.committed(previous) }
                .map(|record| record.stamp.get().created_at_nanos()),
        }
    }

    /// Rule 26: makes the transaction at `start..start + len` created no
    /// earlier than `earliest`, the final creation time of the event before
    /// it.
    ///
    /// Whoever moves the watermark over a range calls this first: the
    /// writer itself on the fast path, or each helper of `advance`. Helpers
    /// may race on one range; each computes the same value
    /// (`max(own, earliest)`, from the final time below the watermark) and
    /// stores it only if the stamp is below it, so a range only ever holds
    /// its original time or that one value, and readers, who look only
    /// below the watermark, see the final value alone.
    ///
    /// A helper that finds the range already raised moves the watermark
    /// without storing anything, so what it read must carry the raise to
    /// its readers: the first record's stamp is raised last, with Release,
    /// and checked with Acquire (a correlated transaction keeps its time in
    /// one `TxMeta` word, where coherence does it).
    ///
    /// # Safety
    ///
    /// The range's records are written and visible to this thread (it
    /// acquired their marker), `earliest` is the final creation time of
    /// position `start - 1` (0 for `start == 0`), and this thread holds an
    /// epoch guard.
    unsafe fn order_created_at(&self, start: u64, len: u64, earliest: u64) {
        // SAFETY: the range is written and visible (the caller's contract);
        // records are only shared, and stamps change only through atomics.
        let Some(first) = (unsafe { self.written(start) }) else {
            // Retired: covered by the watermark already (see
            // `committed_len_ordered`).
            return;
        };
        let own = first.stamp.get_acquire().created_at_nanos();
        if own < earliest {
            // SAFETY: the caller's contract.
            unsafe { self.raise_created_at(first, start, len, earliest) };
        }
    }

    /// The raise of [`order_created_at`](Self::order_created_at), for a
    /// range created before `earliest`, whose first record is `first`:
    /// rare (a clock that stepped back, or two writers that read the clock
    /// in one order and reserved in the other), so kept off the commit's
    /// path.
    ///
    /// # Safety
    ///
    /// As for [`order_created_at`](Self::order_created_at); `first` is the
    /// record at `start`.
    #[cold]
    #[inline(never)]
    unsafe fn raise_created_at(&self, first: &Record<E>, start: u64, len: u64, earliest: u64) {
        let stamp = first.stamp.get();
        match stamp.meta() {
            // Relaxed: published by the watermark store or CAS that follows;
            // a helper that reads this value instead of storing it passes it
            // on by coherence (its readers acquire its CAS).
            Some(meta) => meta.created_at.store(earliest, Ordering::Relaxed),
            None => {
                for position in start + 1..start + len {
                    // SAFETY: as above, for every record of the range.
                    match unsafe { self.written(position) } {
                        Some(record) => record.stamp.raise_to(earliest, Ordering::Relaxed),
                        // A later segment of the range, retired: so is the
                        // range (see `committed_len_ordered`), whose first
                        // record is left as it was.
                        None => return,
                    }
                }
                first.stamp.raise_to(earliest, Ordering::Release);
            }
        }
    }

    /// The record at `position`, written but perhaps not committed; `None`
    /// if its segment was retired (all its events removed and committed).
    ///
    /// # Safety
    ///
    /// The record is written and its write is visible to this thread: it
    /// wrote it, or acquired its range's marker or a watermark above it;
    /// and the record is used only while this thread holds an epoch guard
    /// (or, for a range this thread wrote and has not committed, at all).
    #[inline]
    unsafe fn written(&self, position: u64) -> Option<&Record<E>> {
        let slot = self.slots.get(position)?;
        // SAFETY: the caller's contract.
        Some(unsafe { slot.written_record() })
    }

    /// Waits until every position below `end` is committed.
    pub(crate) fn wait_for(&self, end: u64) -> Result<(), Poisoned> {
        self.watermark.wait_for(end)
    }

    /// The record at `position`; `None` if its segment was retired (every
    /// event in it was removed, rule 30).
    ///
    /// # Safety
    ///
    /// `position` is below a value this thread loaded from the watermark
    /// (with `Acquire`, as `Watermark::get` does), and the record is used
    /// only while this thread holds an epoch guard (see [`epoch`]), a pin
    /// of its segment, or while that segment cannot be retired (a
    /// geometric one, or the one before the caller's uncommitted range).
    #[inline]
    pub(crate) unsafe fn committed(&self, position: u64) -> Option<&Record<E>> {
        // The watermark covers `position`, so its writer allocated the
        // segment (happens-before the commit we acquired): `get` misses it
        // only once it is retired.
        let slot = self.slots.get(position)?;
        // SAFETY: the caller's contract is `committed_record`'s.
        Some(unsafe { slot.committed_record() })
    }

    /// The committed slots from `position` to `end`, or to the end of
    /// `position`'s segment if that comes first (never empty), for a reader
    /// that keeps references to them across calls: a run it can walk
    /// without looking up each slot, protected by `held`. Read each with
    /// [`Slot::committed_record`].
    ///
    /// `held` is reused if it holds `position`'s segment; otherwise the
    /// segment is pinned and the pin replaces what `held` had, which is
    /// handed to `keep` first (to drop it, or to keep it for borrows that
    /// outlive the call). A segment never freed needs no pin, and leaves
    /// `held` as it was. Answers [`Reach::Gone`] for a retired segment:
    /// every event in it was removed (rule 30), so the reader skips to its
    /// end.
    ///
    /// # Safety
    ///
    /// `position < end`, and `end` is at most a value this thread loaded
    /// from the watermark (with `Acquire`, as `Watermark::get` does). The
    /// run is used only while `held` (or wherever `keep` put it) holds it.
    #[inline]
    pub(crate) unsafe fn reach(
        &self,
        position: u64,
        end: u64,
        held: &mut Option<Held<E>>,
        keep: impl FnOnce(Held<E>),
    ) -> Reach<'_, E> {
        let cut = |run: &'_ [Slot<E>]| {
            let len = usize::try_from(end - position).map_or(run.len(), |left| left.min(run.len()));
            run.as_ptr_range().start..run.as_ptr().wrapping_add(len)
        };
        if let Some(current) = held
            .as_ref()
            .filter(|h| h.start <= position && position < h.end)
        {
            // SAFETY: `held` pins the segment, whose slots stay put at
            // `base` until the pin drops; `position` lies in it.
            let run = unsafe {
                std::slice::from_raw_parts(
                    current.base.add((position - current.start) as usize),
                    (current.end - position) as usize,
                )
            };
            let range = cut(run);
            // SAFETY: a prefix of `run`.
            return Reach::Run(unsafe { slice_of(range) });
        }
        match self.slots.pin(position) {
            Hold::Forever => {
                // A segment never freed while the log lives: its entry is
                // never null once the watermark covers it.
                let Some(run) = self.slots.run(position) else {
                    return Reach::Gone { end: position + 1 };
                };
                let range = cut(run);
                // SAFETY: a prefix of `run`, which lives as long as `self`.
                Reach::Run(unsafe { slice_of(range) })
            }
            Hold::Pinned {
                pin,
                base,
                start,
                end: segment_end,
            } => {
                if let Some(previous) = held.take() {
                    keep(previous);
                }
                let current = held.insert(Held {
                    _pin: pin,
                    base,
                    start,
                    end: segment_end,
                });
                // SAFETY: as above, for the pin just taken.
                let run = unsafe {
                    std::slice::from_raw_parts(
                        current.base.add((position - start) as usize),
                        (segment_end - position) as usize,
                    )
                };
                let range = cut(run);
                // SAFETY: a prefix of `run`.
                Reach::Run(unsafe { slice_of(range) })
            }
            Hold::Gone { end } => Reach::Gone { end },
        }
    }

    /// The committed record at `position` for a reader that keeps it across
    /// calls, protected by `held` as in [`reach`](Self::reach); `Err` with
    /// the end of its segment if that was retired.
    ///
    /// # Safety
    ///
    /// As for [`reach`](Self::reach), with `end` a watermark above
    /// `position`.
    #[inline]
    pub(crate) unsafe fn reach_one(
        &self,
        position: u64,
        held: &mut Option<Held<E>>,
        keep: impl FnOnce(Held<E>),
    ) -> Result<Envelope<'_, E>, u64> {
        // SAFETY: the caller's contract.
        match unsafe { self.reach(position, position + 1, held, keep) } {
            // SAFETY: the slot is committed (below the watermark), and held.
            Reach::Run(run) => Ok(Envelope::new(
                unsafe { run[0].committed_record() },
                position,
                &self.ids,
            )),
            Reach::Gone { end } => Err(end),
        }
    }

    /// Counts the events at `positions` as removed (contract rule 30), and
    /// retires each capped segment whose events are now all counted. Each
    /// position must be committed and covered by the watermark, and counted
    /// once in the log's whole life: the caller takes disjoint ranges of
    /// its stream's versions (`Stream::count_removed`). Never panics and
    /// runs no user code (it may run under a stream's lock).
    pub(crate) fn count_removed(&self, positions: impl Iterator<Item = u64>) {
        let mut batch: Option<(usize, u64)> = None;
        for position in positions {
            let Some(segment) = LogSlots::<E>::capped_segment(position) else {
                continue;
            };
            match &mut batch {
                Some((current, n)) if *current == segment => *n += 1,
                _ => {
                    if let Some((current, n)) = batch.replace((segment, 1)) {
                        self.count_in(current, n);
                    }
                }
            }
        }
        if let Some((current, n)) = batch {
            self.count_in(current, n);
        }
    }

    /// Counts `n` removed events in capped segment `segment`, queueing it
    /// for retirement if that completes it.
    fn count_in(&self, segment: usize, n: u64) {
        if self.slots.remove(segment, n) {
            #[cfg(loom)]
            crate::loom_api::note_completed_segment();
            sync::lock(&self.retired).push(Retired {
                segment,
                base: std::ptr::null_mut(),
                quiet: None,
            });
            // Relaxed: a hint for `reclaim`, which takes the lock to look.
            self.pending.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Retires the queued segments that the watermark has passed, and frees
    /// the retired ones nobody can read any more: no [`SegmentPin`] holds
    /// them and every epoch guard older than their retirement is gone.
    ///
    /// Drops the freed records: a payload's `Drop` may panic, and then this
    /// panics too, once the segment is freed (the rest wait for the next
    /// call). Call it only where user code may run: after a commit, with no
    /// lock held.
    #[inline]
    pub(crate) fn reclaim(&self) {
        // Relaxed: a hint; an entry pushed since is seen at the next call.
        if self.pending.load(Ordering::Relaxed) != 0 {
            self.reclaim_pending();
        }
    }

    /// [`reclaim`](Self::reclaim) when something waits.
    #[cold]
    #[inline(never)]
    fn reclaim_pending(&self) {
        let mut free = Vec::new();
        {
            // Another thread is at it: it sees what this one would.
            let Some(mut list) = sync::try_lock(&self.retired) else {
                return;
            };
            // The watermark must be past a segment before it is retired,
            // strictly: a writer at the watermark reads the creation time
            // of the event before its range (`created_at_before`) unguarded,
            // and the watermark cannot pass its range before it commits.
            let watermark = self.watermark.get();
            let guard = epoch::pin();
            list.retain_mut(|retired| {
                if retired.base.is_null() {
                    if LogSlots::<E>::bounds(retired.segment).1 >= watermark {
                        return true;
                    }
                    retired.base = self.slots.retire(retired.segment);
                    if retired.base.is_null() {
                        // Never allocated, or retired already: nothing to free.
                        return false;
                    }
                    let quiet = Arc::new(AtomicBool::new(false));
                    guard.defer_flag(Arc::clone(&quiet));
                    retired.quiet = Some(quiet);
                    return true;
                }
                // Acquire: pairs with the Release store of the deferred
                // function, which ran after every older guard was gone.
                let quiet = retired
                    .quiet
                    .as_ref()
                    .is_some_and(|quiet| quiet.load(Ordering::Acquire));
                if quiet && self.slots.unpinned(retired.segment) {
                    free.push(retired.base);
                    return false;
                }
                true
            });
            // Relaxed: as above; under the lock, so exact.
            self.pending.store(list.len(), Ordering::Relaxed);
        }
        // Every one is freed even if a payload's `Drop` panics: each
        // `Freeing` finishes its segment when dropped during the unwind.
        let mut freeing: Vec<Freeing<'_, E>> = free
            .into_iter()
            .map(|base| Freeing {
                // SAFETY: retired, unpinned and quiet: nobody else reads
                // these slots, and every one holds a committed record.
                slots: unsafe { LogSlots::<E>::retired_slots(base) },
                next: 0,
                last: 0,
            })
            .collect();
        for segment in freeing.iter_mut() {
            segment.run();
        }
    }
}

/// The slice `range` points to.
///
/// # Safety
///
/// `range` is a range of initialised slots that outlive `'a`.
unsafe fn slice_of<'a, E>(range: std::ops::Range<*const Slot<E>>) -> &'a [Slot<E>] {
    // SAFETY: the caller's contract; `end >= start`, in one allocation.
    unsafe { std::slice::from_raw_parts(range.start, range.end.offset_from(range.start) as usize) }
}

/// What [`Log::reach`] found.
pub(crate) enum Reach<'a, E> {
    /// Committed slots, from the position asked for.
    Run(&'a [Slot<E>]),
    /// The segment is retired: every event below `end` (from the position
    /// asked for) was removed.
    Gone { end: u64 },
}

/// A reader's pin on one capped segment of the log, with where its slots
/// are: what [`Log::reach`] reads through.
pub(crate) struct Held<E> {
    _pin: SegmentPin,
    base: *const Slot<E>,
    start: u64,
    end: u64,
}

// SAFETY: a `Held` is a shared borrow of a segment's slots in disguise
// (and a `SegmentPin`, which is `Send` and `Sync`): `&[Slot<E>]` is `Send`
// and `Sync` exactly when `Slot<E>` is `Sync`, which it is for `E: Send +
// Sync`.
unsafe impl<E: Send + Sync> Send for Held<E> {}
// SAFETY: as above.
unsafe impl<E: Send + Sync> Sync for Held<E> {}

impl<E> Held<E> {
    /// The pin alone, to keep after the reader that took it is gone.
    pub(crate) fn into_pin(self) -> SegmentPin {
        self._pin
    }

    /// The end of the pinned segment.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Another pin on this segment, if it holds `position`.
    pub(crate) fn pin_for(&self, position: u64) -> Option<SegmentPin> {
        (self.start <= position && position < self.end).then(|| self._pin.clone())
    }
}

/// The segment pins a store handle keeps for its borrowed reads
/// (`MemoryStore::read_all`, `read_stream`...), whose envelopes borrow the
/// handle and may outlive the read: released when the handle drops. One
/// per segment, however many reads went through it.
#[derive(Default)]
pub(crate) struct Kept(Mutex<Vec<SegmentPin>>);

impl Kept {
    /// Keeps `pin`, unless a pin on its segment is kept already.
    fn keep(&self, pin: SegmentPin) {
        let mut pins = sync::lock(&self.0);
        if !pins.iter().any(|kept| kept.same_segment(&pin)) {
            pins.push(pin);
        }
    }
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kept").finish_non_exhaustive()
    }
}

/// What a reader does with the pin of a segment it moves past.
#[derive(Clone, Copy)]
pub(crate) enum Keep<'a> {
    /// Hands it to its store handle: the reader's envelopes borrow the
    /// handle and may outlive the reader.
    Kept(&'a Kept),
    /// Drops it: the reader's envelopes are gone by then (a subscription's
    /// `next` takes `&mut self`; a visitor's event is borrowed for one
    /// call).
    Drop,
}

impl Keep<'_> {
    /// Keeps or drops the pin of `held`.
    pub(crate) fn keep<E>(self, held: Held<E>) {
        match self {
            Keep::Kept(kept) => kept.keep(held.into_pin()),
            Keep::Drop => drop(held),
        }
    }
}

/// Drops the records of a freed segment and frees it, finishing even if a
/// payload's `Drop` panics (the guard's own drop goes on with the next
/// record while the panic unwinds, as `Vec` does; a second panic during
/// that unwind aborts, as it does for `Vec`).
struct Freeing<'a, E> {
    slots: &'a [Slot<E>],
    /// The next slot to drop.
    next: usize,
    /// The stamp word of the last record whose metadata was released:
    /// each transaction's is released once per segment.
    last: u64,
}

impl<E> Freeing<'_, E> {
    fn run(&mut self) {
        while let Some(slot) = self.slots.get(self.next) {
            self.next += 1;
            // SAFETY: every slot of a retired segment holds a committed
            // record (each was counted removed, and only committed events
            // are), dropped only here, once (`next` moved past it first).
            let stamp = unsafe { slot.committed_record() }.stamp.get();
            if stamp.0 & 1 == 1 && stamp.0 != self.last {
                self.last = stamp.0;
                // SAFETY: this segment is one unit of the transaction, and
                // this is its one release for it (its records are
                // contiguous); none of its records here is read after.
                unsafe { release_span(stamp) };
            }
            // SAFETY: as above: initialised, and dropped once.
            slot.record
                .with_mut(|record| unsafe { (*record).assume_init_drop() });
        }
    }
}

impl<E> Drop for Freeing<'_, E> {
    fn drop(&mut self) {
        self.run();
        // SAFETY: every record is dropped, and the slots came from
        // `retire`, freed once (this `Freeing` owns them).
        unsafe { LogSlots::<E>::free(self.slots.as_ptr().cast_mut()) };
    }
}

impl<E> Drop for Log<E> {
    fn drop(&mut self) {
        // Segments retired but not freed yet: `&mut self` means nobody reads
        // them any more (every reader borrows the log). Freed first, while
        // each still counts as a unit of its transactions' metadata.
        let retired = std::mem::take(&mut *sync::lock(&self.retired));
        let freeing: Vec<Freeing<'_, E>> = retired
            .into_iter()
            .filter(|retired| !retired.base.is_null())
            .map(|retired| Freeing {
                // SAFETY: retired, and nobody else can read the log: every
                // slot holds a committed record, dropped once, here.
                slots: unsafe { LogSlots::<E>::retired_slots(retired.base) },
                next: 0,
                last: 0,
            })
            .collect();
        // If a payload's `Drop` panics, each `Freeing` still finishes its
        // segment while the panic unwinds.
        drop(freeing);
        // Relaxed: `&mut self` means all writes happened-before (the last
        // `Arc` drop synchronises). Positions at or past `CAPACITY` were
        // never handed out, nor those of a reservation refused as full.
        let end = self
            .next
            .load(Ordering::Relaxed)
            .min(self.full_at.load(Ordering::Relaxed));
        let mut teardown = Teardown {
            log: self,
            position: 0,
            tx_end: 0,
            end,
            last: (0, 0),
        };
        // If a payload's `Drop` panics, the guard's own drop goes on with
        // the next event while the panic unwinds, as `Vec` does; a second
        // panic during that unwind aborts, as it does for `Vec`.
        let guard = TeardownGuard(&mut teardown);
        guard.0.run();
        std::mem::forget(guard);
    }
}

/// Drops every committed record left and frees every transaction's
/// metadata, walking the commit markers from position 0.
struct Teardown<'a, E> {
    log: &'a Log<E>,
    /// The next position to look at.
    position: u64,
    /// The end of the transaction `position` is in (`position` itself at a
    /// transaction's start).
    tx_end: u64,
    /// Below this, every position was reserved by a reservation that
    /// committed or was abandoned.
    end: u64,
    /// The stamp word and unit of reclamation of the last record whose
    /// metadata was released: each transaction's is released once per
    /// unit (see `TxMeta::first_spans`).
    last: (u64, u64),
}

impl<E> Teardown<'_, E> {
    fn run(&mut self) {
        while self.position < self.end {
            let Some(slot) = self.log.slots.get(self.position) else {
                match LogSlots::<E>::capped_segment(self.position) {
                    // A freed segment (every position below `end` had its
                    // segment allocated by its writer): its records and its
                    // units are gone. A transaction may go on past it.
                    Some(segment) => {
                        let (_, segment_end) = LogSlots::<E>::bounds(segment);
                        self.position = segment_end;
                        self.tx_end = self.tx_end.max(segment_end);
                        continue;
                    }
                    None => break,
                }
            };
            if self.position == self.tx_end {
                // Every reservation below `end` ended in a commit or an
                // abandonment (both need the `&self` borrow that `&mut self`
                // excludes), so a transaction starts here, or one whose
                // start was in a freed segment goes on here.
                let marker = slot.marker(Ordering::Relaxed);
                match marker.range_len() {
                    // The rest of a committed transaction whose first
                    // record (and marker) was freed: one more record.
                    None => self.tx_end = self.position + 1,
                    Some(len) if marker.is_abandoned() => {
                        // `abandon` already dropped what it wrote.
                        self.position += len;
                        self.tx_end = self.position;
                        continue;
                    }
                    Some(len) => self.tx_end = self.position + len,
                }
            }
            // SAFETY: the range is committed, so the record is initialised.
            let stamp = unsafe { slot.committed_record() }.stamp.get();
            let unit = LogSlots::<E>::unit(self.position);
            if stamp.0 & 1 == 1 && self.last != (stamp.0, unit) {
                self.last = (stamp.0, unit);
                // SAFETY: one release per unit the transaction touches
                // (its records are contiguous); freed units released
                // theirs when freed. No record of the unit is read after.
                unsafe { release_span(stamp) };
            }
            // Moved past before the drop: if the payload's `Drop` panics, the
            // guard resumes with the next one.
            self.position += 1;
            // SAFETY: the range is committed, so the record is initialised;
            // it is dropped only here, once.
            slot.record
                .with_mut(|record| unsafe { (*record).assume_init_drop() });
        }
    }
}

/// Resumes a [`Teardown`] when a payload's `Drop` unwinds out of it.
struct TeardownGuard<'a, 'b, E>(&'a mut Teardown<'b, E>);

impl<E> Drop for TeardownGuard<'_, '_, E> {
    fn drop(&mut self) {
        self.0.run();
    }
}

/// Positions reserved by one writer, to be filled and then committed.
///
/// Dropping it uncommitted (only possible if something panicked between
/// reservation and commit) drops what was written, marks the range
/// abandoned and poisons the store: the range can never be committed, and
/// every waiter is told instead of hanging.
pub(crate) struct Reservation<'a, E> {
    log: &'a Log<E>,
    start: u64,
    len: u64,
    written: u64,
    /// The slots from `start + written` to the end of their segment.
    run: &'a [Slot<E>],
    /// The range's first slot, once written: where the marker goes.
    first: Option<&'a Slot<E>>,
    /// Given to the log at commit; freed if the range is abandoned.
    stamp: ManuallyDrop<OwnedStamp>,
    /// The store's stream index, whose streams' sleepers an abandoned
    /// range wakes (see `wake_on_poison`); `None` for a log used alone.
    streams: Option<&'a StreamIndex>,
}

impl<'a, E> Reservation<'a, E> {
    /// Makes an abandoned range (which poisons the store) also wake the
    /// sleepers of every stream of `streams`: poisoning commits nothing,
    /// so no writer would wake the one-stream subscriptions parked on their
    /// streams (targeted wake-ups), and every wait checks for poison.
    #[inline]
    pub(crate) fn wake_on_poison(mut self, streams: &'a StreamIndex) -> Self {
        self.streams = Some(streams);
        self
    }

    /// The first reserved position.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// Moves the next event of the transaction into its slot.
    ///
    /// Never panics (allocation failure aborts).
    #[inline]
    pub(crate) fn write(&mut self, stream: StreamPtr, version: u64, payload: E) {
        debug_assert!(self.written < self.len, "more records than reserved");
        if self.run.is_empty() {
            self.run = self.log.slots.run_or_alloc(self.start + self.written);
        }
        let (slot, rest) = self.run.split_first().expect("a run is never empty");
        self.run = rest;
        if self.written == 0 {
            self.first = Some(slot);
        }
        let record = Record {
            stream,
            version,
            stamp: StampCell::new(self.stamp.0),
            payload,
        };
        // SAFETY: this reservation owns the position (unique by `fetch_add`)
        // and writes it once (`written` only grows); readers wait for the
        // commit below, which happens after this write.
        slot.record.with_mut(|r| unsafe { (*r).write(record) });
        self.written += 1;
    }

    /// Publishes the range, moves the watermark over it (or helps whoever
    /// will), and returns the end of the range.
    pub(crate) fn commit(self) -> Commit {
        let mut this = ManuallyDrop::new(self);
        let (log, start, len) = (this.log, this.start, this.len);
        let end = start + len;
        if this.written != len {
            // Never happens: the store writes exactly what it reserved.
            // Failing closed beats publishing uninitialised slots.
            this.abandon();
            return Commit { end, fenced: false };
        }
        // SAFETY: `this` is never used again (it is `ManuallyDrop`, and the
        // abandon path above returned), so the stamp is taken once.
        let stamp = unsafe { ManuallyDrop::take(&mut this.stamp) };
        // The records now hold the stamp's metadata; the log frees it.
        let _ = stamp.into_log();
        let first = match this.first {
            Some(first) => first,
            None => log.slots.get_or_alloc(start),
        };
        let marker = Marker::committed(len).0;
        // What `advance` asks of each range it would move over: its length,
        // once its `created_at` is in position order (rule 26).
        // SAFETY: `advance` passes watermark values it loaded with Acquire,
        // or ends of ranges it just moved the watermark over.
        let committed = |position| unsafe { log.committed_len_ordered(position) };
        // Helpers read slots from watermark values that may be stale by
        // the time they read, in segments that may be retired since: they
        // read under an epoch guard, so a retired segment is not freed
        // before they are done (see `reclaim`). The writer's own range and
        // the slot just before it (read on the fast path, unguarded) are
        // never retired before this commit: retiring needs the watermark
        // past a segment's end.
        if log.watermark.is_at(start) {
            #[cfg(loom)]
            crate::loom_api::note_fast_commit();
            // Rule 26 before the range becomes visible: the creation time of
            // the event before it, from the watermark's line when the last
            // commit was a fast one that ended here, else from its slot.
            let earliest = match log.watermark.created_at_at(start) {
                Some(earliest) => earliest,
                None => {
                    // SAFETY: `is_at` loaded `start` from the watermark with
                    // Acquire. No guard is needed: the slot before `start`
                    // is never retired yet (`reclaim` retires a segment only
                    // once the watermark is past its end, and the watermark
                    // cannot pass `start` before this range commits), so
                    // `None` cannot come back either.
                    unsafe { log.created_at_before(start) }.unwrap_or(0)
                }
            };
            // SAFETY: this writer wrote the range's first record. Nobody
            // else raises the range before it is published, so a plain read
            // of the time it was stamped with is enough.
            let own = unsafe { first.written_record() }
                .stamp
                .get()
                .created_at_nanos();
            let created_at = if own >= earliest {
                own
            } else {
                // SAFETY: this writer wrote the whole range (`written ==
                // len`), `first` is its first record, and `earliest` is the
                // final time before it (`is_at`'s Acquire made it so).
                unsafe { log.raise_created_at(first.written_record(), start, len, earliest) };
                earliest
            };
            // Fast path: the watermark waits at our range, and no other
            // thread can move it past a range whose marker is unset, so we
            // move it with a plain store. Only then the marker (for the
            // teardown, and for helpers): a helper that reads it (Acquire,
            // pairing with this Release) also sees the watermark past it, so
            // its CAS from `start` fails instead of racing our store.
            log.watermark.publish(end, created_at);
            first.marker.store(marker, Ordering::Release);
            // SeqCst fence: pairs with the same fence of every other
            // committer (DESIGN.md, "The stranded commit") and with the
            // fence of every sleeper registering on the signal.
            fence(Ordering::SeqCst);
            // A writer behind us may have committed while the watermark was
            // below its range, and stopped: carry the watermark over it.
            // Only if anyone reserved past our range: then under a guard
            // (a lone writer pins nothing). Relaxed: as in `committed_len`,
            // a reservation this load misses was fenced after ours, and
            // its writer sees our progress.
            if log.next.load(Ordering::Relaxed) > end {
                let _guard = epoch::pin();
                if log.committed_len(end) != 0 {
                    log.watermark.advance(committed);
                }
            }
            log.watermark.signal.wake_fenced();
            Commit { end, fenced: true }
        } else {
            // Release: pairs with the Acquire load in `committed_len`;
            // publishes the records written above to whichever helper moves
            // the watermark.
            first.marker.store(marker, Ordering::Release);
            // SeqCst fence: pairs with the same fence of every other
            // committer. Without it, this writer could read a stale watermark
            // or marker while another writer, blocked on our range, reads our
            // marker as empty: both stop and the watermark is stranded. With
            // it, of two committers, the later fence's loads see the earlier
            // one's marker.
            fence(Ordering::SeqCst);
            let _guard = epoch::pin();
            log.watermark.advance(committed);
            Commit { end, fenced: false }
        }
    }

    fn abandon(&mut self) {
        for p in self.start..self.start + self.written {
            let slot = self.log.slots.get_or_alloc(p);
            // SAFETY: written above by this reservation and never published
            // (the range is never committed), so nobody else can see it.
            slot.record.with_mut(|r| unsafe { (*r).assume_init_drop() });
        }
        // SAFETY: called once, from `commit` (which then returns) or from
        // `drop`; the stamp was not given to the log.
        drop(unsafe { ManuallyDrop::take(&mut self.stamp) });
        let first = self.log.slots.get_or_alloc(self.start);
        // Release: orders the drops above before the marker `Log::drop` reads.
        first
            .marker
            .store(Marker::abandoned(self.len).0, Ordering::Release);
        self.log.watermark.poison();
        if let Some(streams) = self.streams {
            // Safe to run with a shard of the index read-locked by this
            // thread (a writer reserves inside `with_or_create`): it only
            // takes read locks, which a held read lock never blocks.
            streams.wake_all();
        }
    }
}

/// What [`Reservation::commit`] did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Commit {
    /// The end of the range.
    pub(crate) end: u64,
    /// Whether the committer issued a `fence(SeqCst)` after the watermark
    /// covered its whole range (the fast path): a waker of the range's
    /// streams may then skip its own fence (`Signal::wake_fenced`).
    pub(crate) fenced: bool,
}

impl<E> Drop for Reservation<'_, E> {
    fn drop(&mut self) {
        self.abandon();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_32_bytes_beside_its_payload() {
        assert_eq!(std::mem::size_of::<Slot<[u64; 4]>>(), 64);
        assert_eq!(std::mem::size_of::<Slot<()>>(), 32);
    }

    /// A transaction's `TxMeta` (time, correlation id, range, metadata and
    /// client ids) is one 64-byte allocation.
    #[test]
    fn a_tx_meta_is_64_bytes() {
        assert_eq!(std::mem::size_of::<TxMeta>(), 64);
    }

    #[test]
    fn stamps_keep_the_creation_time_and_the_correlation_id() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let plain = OwnedStamp::new(nanos_since_epoch(time), None);
        assert_eq!(plain.0.created_at(), time);
        assert_eq!(plain.0.correlation_id(), None);
        let id = CorrelationId::new();
        let correlated = OwnedStamp::new(nanos_since_epoch(time), Some(id));
        assert_eq!(correlated.0.created_at(), time);
        assert_eq!(correlated.0.correlation_id(), Some(id));
        // Before the epoch reads as the epoch.
        let early = nanos_since_epoch(SystemTime::UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(early, 0);
        // The clock agrees with `SystemTime` (to within a second).
        let (ours, std) = (now_nanos(), nanos_since_epoch(SystemTime::now()));
        assert!(ours.abs_diff(std) < 1_000_000_000, "{ours} vs {std}");
    }

    #[test]
    fn markers_tell_committed_from_abandoned_and_empty() {
        assert_eq!(Marker::EMPTY.committed_len(), None);
        assert_eq!(Marker::EMPTY.range_len(), None);
        assert_eq!(Marker::committed(3).committed_len(), Some(3));
        assert_eq!(Marker::abandoned(3).committed_len(), None);
        assert_eq!(Marker::abandoned(3).range_len(), Some(3));
        assert!(Marker::abandoned(3).is_abandoned());
    }
}
