//! Idempotent appends (contract rule 29): recognising a re-sent stream
//! write by its events' client-supplied ids.
//!
//! Checked per stream under the stream's lock, before anything is
//! reserved. A write is located in two ways: at the place its expectation
//! names (`Exact(v)`: version `v + 1`; `ExactPosition`: the version after
//! that position; `NoStream`: the version the stream starts from), read
//! from the log itself and so exact however old the events are; and by its
//! first id in the stream's [`IdWindow`], a map of the ids of the stream's
//! last `n` versions kept under the lock. Once located, the stored events
//! are compared with the write's one by one: id, payload (by the captured
//! `PartialEq::eq`) and metadata. Stored events may be recorded but not
//! committed yet: the check waits until they are (their writers hold no
//! lock any more, so this cannot deadlock) before reading them.

use crate::epoch;
use crate::error::EventIdMismatch;
use crate::ids::{EventId, StreamVersion};
use crate::log::{Log, OwnedStamp, TxRange};
use crate::stream::{Locked, Marks};
use crate::transaction::{Events, ExpectedVersion};
use crate::watermark::Poisoned;
use std::collections::{HashMap, VecDeque};

/// How many of a stream's last versions the memory store searches for a
/// re-sent event id when the write expects `Any` or `StreamExists`
/// ([contract](crate::contract) rule 29), unless it is built with another
/// number
/// ([`MemoryStoreBuilder::idempotency_window`](crate::MemoryStoreBuilder::idempotency_window)).
///
/// ```
/// assert_eq!(hindsight::DEFAULT_IDEMPOTENCY_WINDOW, 1024);
/// ```
pub const DEFAULT_IDEMPOTENCY_WINDOW: u64 = 1024;

/// The client ids of a stream's last versions, kept under the stream's
/// lock: the id of each event with one whose version is within the
/// window of the stream's end. About 60 bytes per id (a map entry and a
/// queue entry); a stream never written with ids has none (its lock's
/// `Option` stays `None`).
#[derive(Default)]
pub(crate) struct IdWindow {
    /// Each id, and the version of its latest event.
    by_id: HashMap<EventId, u64>,
    /// `(version, id)` in version order, for eviction.
    order: VecDeque<(u64, EventId)>,
}

impl IdWindow {
    /// The version of the latest event with `id`, if within the window.
    pub(crate) fn find(&self, id: EventId) -> Option<u64> {
        self.by_id.get(&id).copied()
    }

    /// Makes room for `additional` ids, so that [`record`](Self::record)
    /// allocates nothing: called before the reservation.
    pub(crate) fn prepare(&mut self, additional: usize) {
        self.by_id.reserve(additional);
        self.order.reserve(additional);
    }

    /// Adds `ids` (`(version, id)`, ascending) now that the stream is
    /// `len` versions long, keeping only the ids of its last `window`
    /// versions. Never panics, and allocates nothing after
    /// [`prepare`](Self::prepare) with at least as many ids.
    pub(crate) fn record(
        &mut self,
        ids: impl Iterator<Item = (u64, EventId)>,
        len: u64,
        window: u64,
    ) {
        let oldest = len.saturating_sub(window);
        for (version, id) in ids {
            if version >= oldest {
                self.by_id.insert(id, version);
                self.order.push_back((version, id));
            }
        }
        while let Some(&(version, id)) = self.order.front() {
            if version >= oldest {
                break;
            }
            self.order.pop_front();
            // Only if no later event took the id (written again once the
            // first fell out of the window).
            if self.by_id.get(&id) == Some(&version) {
                self.by_id.remove(&id);
            }
        }
    }
}

/// One stream write as the check sees it: its events, where they start in
/// the transaction's stamp, and the captured comparison of payloads.
pub(crate) struct Write<'a, E> {
    pub(crate) expected: ExpectedVersion,
    pub(crate) events: &'a Events<E>,
    /// The write's first event's offset in the transaction.
    pub(crate) offset: u32,
    pub(crate) eq: Option<fn(&E, &E) -> bool>,
}

/// What the check found for one stream write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not a retry: the expectation decides, as for any write.
    Fresh,
    /// A retry of events stored by the transaction `TxRange`, which holds
    /// all of them.
    Retry(TxRange),
}

/// Why a write with client ids is neither fresh nor a retry.
#[derive(Debug)]
pub(crate) enum Refusal {
    Conflict(EventId, EventIdMismatch),
    Poisoned,
}

impl From<Poisoned> for Refusal {
    fn from(_: Poisoned) -> Self {
        Refusal::Poisoned
    }
}

/// The place a retry of a write under `expected` would have stored its
/// first event, if the expectation names one.
fn place(expected: ExpectedVersion, locked: &Locked<'_>, marks: Marks) -> Option<u64> {
    match expected {
        ExpectedVersion::Exact(version) => version.0.checked_add(1),
        ExpectedVersion::ExactPosition(position) => {
            locked.version_at(position.0).map(|version| version + 1)
        }
        ExpectedVersion::NoStream => Some(marks.base()),
        ExpectedVersion::Any | ExpectedVersion::StreamExists => None,
    }
}

/// Checks one stream write under its stream's lock (held by `locked`),
/// before anything is reserved: rule 29. Runs the write's `eq` (user
/// code), which may panic: nothing is reserved yet, so a panic fails the
/// insert and writes nothing.
pub(crate) fn check<E>(
    log: &Log<E>,
    locked: &Locked<'_>,
    marks: Marks,
    stamp: &OwnedStamp,
    write: &Write<'_, E>,
) -> Result<Verdict, Refusal> {
    let count = write.events.len() as u64;
    let end = write.offset.saturating_add(count as u32);
    let ids = stamp.client_ids(write.offset, end);
    let (Some(eq), false) = (write.eq, ids.is_empty()) else {
        return Ok(Verdict::Fresh);
    };
    let len = locked.len();
    // The write's first event with an id, `skip` events into the write:
    // the one that locates it.
    let (first_at, first_id) = ids[0];
    let skip = u64::from(first_at - write.offset);
    let place = place(write.expected, locked, marks);
    // Where the write's first event is stored, if it is: at the place its
    // expectation names, else where the window saw its first id.
    let mut anchor = None;
    if let Some(place) = place {
        let at = place.saturating_add(skip);
        if at < len && stored_id(log, locked, at)? == Some(first_id) {
            anchor = Some(place);
        }
    }
    if anchor.is_none() {
        anchor = locked
            .window()
            .and_then(|window| window.find(first_id))
            .and_then(|found| found.checked_sub(skip));
    }
    let Some(anchor) = anchor else {
        // Not stored where a retry would be: any id of the write already
        // in the window is at another place.
        if let Some(window) = locked.window() {
            for &(at, id) in ids {
                if let Some(found) = window.find(id) {
                    let offset = u64::from(at - write.offset);
                    let mismatch = EventIdMismatch::OtherVersion {
                        found: StreamVersion(found),
                        expected: place.map(|place| StreamVersion(place + offset)),
                    };
                    return Err(Refusal::Conflict(id, mismatch));
                }
            }
        }
        return Ok(Verdict::Fresh);
    };
    if let Some(place) = place {
        if anchor != place {
            let mismatch = EventIdMismatch::OtherVersion {
                found: StreamVersion(anchor + skip),
                expected: Some(StreamVersion(place + skip)),
            };
            return Err(Refusal::Conflict(first_id, mismatch));
        }
    }
    if anchor.saturating_add(count) > len {
        return Err(Refusal::Conflict(first_id, EventIdMismatch::Partial));
    }
    Ok(match compare(log, locked, stamp, write, eq, anchor)? {
        Some(range) => Verdict::Retry(range),
        // Reclaimed: removed and freed, so forgotten.
        None => Verdict::Fresh,
    })
}

/// The client id of the stream's recorded version `version`, once its
/// event is committed; `None` also if the event was removed and its
/// memory reclaimed (rule 30): its id is forgotten.
fn stored_id<E>(
    log: &Log<E>,
    locked: &Locked<'_>,
    version: u64,
) -> Result<Option<EventId>, Poisoned> {
    let Some(position) = locked.position_of(version) else {
        return Ok(None);
    };
    log.wait_for(position + 1)?;
    let _guard = epoch::pin();
    // SAFETY: `wait_for` returned after loading the watermark above
    // `position` with Acquire; the record is read under `_guard`.
    Ok(unsafe { log.committed(position) }.and_then(|record| record.client_id(position)))
}

/// Compares the write's events with the stream's versions from `anchor`
/// (all recorded): the same ids, payloads and metadata, all stored by one
/// transaction, whose range is returned; `None` if any of those events was
/// removed and its memory reclaimed (rule 30): then the ids are forgotten,
/// and the write is not a retry.
fn compare<E>(
    log: &Log<E>,
    locked: &Locked<'_>,
    stamp: &OwnedStamp,
    write: &Write<'_, E>,
    eq: fn(&E, &E) -> bool,
    anchor: u64,
) -> Result<Option<TxRange>, Refusal> {
    let count = write.events.len() as u64;
    // The last of them committed means all of them are.
    // Freed positions are a prefix: the last one freed means all are.
    let Some(last) = locked.position_of(anchor + count - 1) else {
        return Ok(None);
    };
    log.wait_for(last + 1)?;
    let mut range = None;
    let mut ids = stamp
        .client_ids(write.offset, write.offset.saturating_add(count as u32))
        .iter()
        .peekable();
    let first_id = ids.peek().map(|(_, id)| *id);
    // The write has ids (`check` returned early otherwise): one to name.
    let fallback = first_id.unwrap_or(EventId::from_uuid(uuid::Uuid::nil()));
    // Keeps the records read below from being freed while they are.
    let _guard = epoch::pin();
    for (index, payload) in (0..count).zip(write.events.iter()) {
        let offset = write.offset + index as u32;
        let version = anchor + index;
        let want = ids.next_if(|(at, _)| *at == offset).map(|(_, id)| *id);
        let blame = want.or(first_id).unwrap_or(fallback);
        let Some(position) = locked.position_of(version) else {
            return Ok(None);
        };
        // SAFETY: `wait_for` above loaded the watermark above the
        // position of the last of these versions (positions ascend with
        // versions) with Acquire; the record is read under `_guard`.
        let Some(record) = (unsafe { log.committed(position) }) else {
            return Ok(None);
        };
        let at = StreamVersion(version);
        if record.client_id(position) != want {
            let mismatch = EventIdMismatch::OtherId { version: at };
            return Err(Refusal::Conflict(blame, mismatch));
        }
        if !eq(payload, &record.payload) {
            let mismatch = EventIdMismatch::OtherPayload { version: at };
            return Err(Refusal::Conflict(blame, mismatch));
        }
        if stamp.metadata_at(offset) != record.metadata(position) {
            let mismatch = EventIdMismatch::OtherMetadata { version: at };
            return Err(Refusal::Conflict(blame, mismatch));
        }
        let tx = record.tx_range();
        if tx.is_none() || range.is_some_and(|range| Some(range) != tx) {
            let mismatch = EventIdMismatch::PartOfTransaction;
            return Err(Refusal::Conflict(blame, mismatch));
        }
        range = tx;
    }
    range
        .map(Some)
        .ok_or(Refusal::Conflict(fallback, EventIdMismatch::Partial))
}

/// The first id given twice in the transaction whose client ids `stamp`
/// holds, if any: refused before anything happens. `O(n log n)` in the
/// ids, nothing without.
pub(crate) fn duplicate(stamp: &OwnedStamp) -> Option<EventId> {
    let ids = stamp.client_ids(0, u32::MAX);
    if ids.len() < 2 {
        return None;
    }
    let mut sorted: Vec<EventId> = ids.iter().map(|(_, id)| *id).collect();
    sorted.sort_unstable();
    sorted
        .windows(2)
        .find(|pair| pair[0] == pair[1])
        .map(|pair| pair[0])
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::{
        EventData, EventId, ExpectedVersion, MemoryStore, Position, StreamId, Transaction,
    };
    use std::panic::{catch_unwind, AssertUnwindSafe};

    /// An event whose `==` panics (user code, rule 27).
    #[derive(Debug)]
    struct Touchy;

    impl PartialEq for Touchy {
        fn eq(&self, _: &Self) -> bool {
            panic!("Touchy::eq");
        }
    }

    /// A panic in the captured `==` of a re-send fails that insert (the
    /// caller's own code panics in its call, as a panicking iterator does)
    /// with nothing reserved: the store is not poisoned, the stream's lock
    /// is usable, and the re-send writes nothing.
    #[test]
    fn a_panicking_eq_fails_the_resend_and_leaves_the_store_usable() {
        let store = MemoryStore::new();
        let stream = StreamId::new();
        let id = EventId::from_uuid(uuid::Uuid::from_u128(1));
        let tx = || {
            Transaction::new().append_with(
                stream,
                ExpectedVersion::Any,
                [EventData::new(Touchy).with_event_id(id)],
            )
        };
        store.insert(tx()).unwrap();
        let resent = catch_unwind(AssertUnwindSafe(|| store.insert(tx())));
        assert!(resent.is_err(), "the re-send ran the panicking `==`");
        assert!(!store.is_poisoned());
        assert_eq!(store.head(), Some(Position(0)));
        store
            .insert(Transaction::single(stream, ExpectedVersion::Any, Touchy))
            .unwrap();
        assert_eq!(
            store.stream_head(stream).map(|head| head.version.0),
            Some(1)
        );
    }
}
