//! Reclaiming removed events (contract rule 30): whole log segments whose
//! events are all removed are freed once nobody can read them, with
//! their payloads dropped exactly once; readers that hold events keep
//! their segments. Unit tests run a small layout (segments of 4,096 slots
//! after the first 7,168): see `log::LOG_MAX`.

use crate::log::Log;
use crate::{
    CorrelationId, ExpectedVersion, MemoryStore, Position, Selector, Start, StreamId,
    StreamVersion, Transaction,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A payload that counts its drops, and panics in its drop if told to.
#[derive(Debug)]
struct Counted {
    value: u64,
    drops: Arc<AtomicUsize>,
    panics: bool,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::Relaxed);
        if self.panics {
            panic!("Counted::drop({})", self.value);
        }
    }
}

/// The first capped position and the capped segments' length.
fn layout() -> (u64, u64) {
    Log::<Counted>::capped_layout()
}

struct Fixture {
    store: MemoryStore<Counted>,
    drops: Arc<AtomicUsize>,
    written: u64,
}

impl Fixture {
    fn new() -> Self {
        Self {
            store: MemoryStore::new(),
            drops: Arc::new(AtomicUsize::new(0)),
            written: 0,
        }
    }

    fn event(&mut self, panics: bool) -> Counted {
        self.written += 1;
        Counted {
            value: self.written - 1,
            drops: Arc::clone(&self.drops),
            panics,
        }
    }

    /// Appends `n` one-event transactions to `stream`.
    fn append(&mut self, stream: StreamId, n: u64) {
        for _ in 0..n {
            let event = self.event(false);
            self.store
                .insert(Transaction::single(stream, ExpectedVersion::Any, event))
                .unwrap();
        }
    }

    fn drops(&self) -> usize {
        self.drops.load(Ordering::Relaxed)
    }

    /// Runs `reclaim` until every queued segment is retired and past every
    /// epoch guard older than its retirement (other tests' threads pin and
    /// unpin meanwhile; the flags are set by whichever thread collects),
    /// then once more: what is still queued after that is pinned by a
    /// reader. Fails after 60 s (a guard held that long is a bug).
    fn settle(&self) {
        let log = &self.store.inner.log;
        let start = std::time::Instant::now();
        loop {
            log.reclaim();
            if log.unquiet() == 0 {
                log.reclaim();
                return;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "the epoch never passed a retirement"
            );
            crate::epoch::pin().flush();
            std::thread::yield_now();
        }
    }
}

/// A stream with a maximum count, written past several capped segments:
/// every capped segment below its last `max` versions is freed, with each
/// payload dropped once, while the geometric region stays; reads see only
/// the last versions, and dropping the store drops everything else once.
#[test]
fn segments_whose_events_are_all_removed_are_freed_and_their_payloads_dropped_once() {
    let (capped, segment) = layout();
    let mut fixture = Fixture::new();
    let stream = StreamId::new();
    fixture.store.set_max_count(stream, Some(10)).unwrap();
    let total = capped + 4 * segment;
    fixture.append(stream, total);
    fixture.settle();
    // Capped segments 0, 1 and 2 hold removed events only; segment 3 holds
    // the 10 visible ones.
    assert_eq!(fixture.drops(), 3 * segment as usize);
    let visible: Vec<u64> = fixture
        .store
        .read_all(Start::Beginning)
        .map(|event| event.payload().value)
        .collect();
    assert_eq!(visible, (total - 10..total).collect::<Vec<_>>());
    let drops = Arc::clone(&fixture.drops);
    drop(fixture);
    assert_eq!(drops.load(Ordering::Relaxed), total as usize);
}

/// Fills the geometric region with `filler`'s events and capped segment 0
/// with `kept`'s, then writes one event of `filler` past it (so that the
/// watermark is past the segment, which retirement needs).
fn fill_segment_zero(fixture: &mut Fixture, filler: StreamId, kept: StreamId) {
    let (capped, segment) = layout();
    fixture.append(filler, capped);
    fixture.append(kept, segment);
}

/// Removes every event of `kept` and writes one more event, so that
/// capped segment 0 is wholly removed and the watermark past it.
fn remove_segment_zero(fixture: &mut Fixture, filler: StreamId, kept: StreamId) {
    let (_, segment) = layout();
    fixture
        .store
        .truncate_stream(kept, StreamVersion(segment))
        .unwrap();
    fixture.append(filler, 1);
}

/// A subscription holding an event of a capped segment keeps the segment
/// when all its events are removed, and releases it when it moves on.
#[test]
fn a_subscription_keeps_its_segment_until_it_moves_past_it() {
    let (capped, segment) = layout();
    let mut fixture = Fixture::new();
    let (filler, kept) = (StreamId::new(), StreamId::new());
    fill_segment_zero(&mut fixture, filler, kept);
    let mut subscription = fixture
        .store
        .subscribe(Selector::stream(kept).start(Start::After(Position(capped))));
    let event = subscription.try_next().unwrap().unwrap();
    assert_eq!(event.payload().value, capped + 1);
    remove_segment_zero(&mut fixture, filler, kept);
    fixture.settle();
    assert_eq!(fixture.drops(), 0, "pinned by the subscription");
    // Every later event of `kept` is removed: the subscription passes them
    // and holds nothing more.
    assert!(subscription.try_next().unwrap().is_none());
    fixture.settle();
    assert_eq!(fixture.drops(), segment as usize);
}

/// An event borrowed from a handle's read keeps its segment until the
/// handle drops, and stays readable meanwhile.
#[test]
fn a_handles_borrowed_read_keeps_its_segments_until_the_handle_drops() {
    let (capped, segment) = layout();
    let mut fixture = Fixture::new();
    let (filler, kept) = (StreamId::new(), StreamId::new());
    fill_segment_zero(&mut fixture, filler, kept);
    let handle = fixture.store.clone();
    let event = handle
        .read_all(Start::After(Position(capped + 5)))
        .next()
        .unwrap();
    remove_segment_zero(&mut fixture, filler, kept);
    fixture.settle();
    assert_eq!(fixture.drops(), 0, "kept by the handle");
    assert_eq!(event.payload().value, capped + 6);
    // Reads through the handle pin each segment once, however many.
    for _ in 0..3 {
        assert_eq!(
            handle.read_stream(filler, StreamVersion(0)).count() as u64,
            capped + 1
        );
    }
    drop(handle);
    fixture.settle();
    assert_eq!(fixture.drops(), segment as usize);
}

/// An owned envelope from a subscription's iterator keeps its segment after the
/// subscription is gone.
#[test]
fn an_owned_envelope_keeps_its_segment() {
    let (capped, segment) = layout();
    let mut fixture = Fixture::new();
    let (filler, kept) = (StreamId::new(), StreamId::new());
    fill_segment_zero(&mut fixture, filler, kept);
    let mut events = fixture.store.subscribe(Selector::stream(kept)).into_iter();
    let owned = events.try_next().unwrap().unwrap();
    let copy = owned.clone();
    drop(events);
    remove_segment_zero(&mut fixture, filler, kept);
    fixture.settle();
    assert_eq!(fixture.drops(), 0, "kept by the owned envelope");
    drop(owned);
    fixture.settle();
    assert_eq!(fixture.drops(), 0, "kept by its clone");
    assert_eq!(copy.payload().value, capped);
    drop(copy);
    fixture.settle();
    assert_eq!(fixture.drops(), segment as usize);
}

/// A transaction with a correlation id that straddles the boundary of a
/// freed segment keeps its metadata for its events in the next one, and
/// the teardown frees the rest (and the metadata) once: Miri checks the
/// frees.
#[test]
fn a_transaction_across_a_freed_segment_keeps_its_metadata_for_the_rest() {
    let (capped, segment) = layout();
    let mut fixture = Fixture::new();
    // A transaction lays out its streams in id order: `gone` first.
    let (filler, gone, stays) = (
        StreamId::new(),
        StreamId::from_uuid(uuid::Uuid::from_u128(1)),
        StreamId::from_uuid(uuid::Uuid::from_u128(2)),
    );
    fixture.append(filler, capped);
    fixture.append(gone, segment - 1);
    // Position `capped + segment - 1` (the last of segment 0) is `gone`'s;
    // the two after it (segment 1) are `stays`'s.
    let correlation = CorrelationId::new();
    let (a, b, c) = (
        fixture.event(false),
        fixture.event(false),
        fixture.event(false),
    );
    fixture
        .store
        .insert(
            Transaction::new()
                .append(gone, ExpectedVersion::Any, [a])
                .append(stays, ExpectedVersion::Any, [b, c])
                .with_correlation_id(correlation),
        )
        .unwrap();
    fixture
        .store
        .truncate_stream(gone, StreamVersion(segment))
        .unwrap();
    fixture.append(filler, 1);
    fixture.settle();
    assert_eq!(fixture.drops(), segment as usize);
    let rest: Vec<(u64, Option<CorrelationId>)> = fixture
        .store
        .read_stream(stays, StreamVersion(0))
        .map(|event| (event.position().0, event.correlation_id()))
        .collect();
    assert_eq!(
        rest,
        [
            (capped + segment, Some(correlation)),
            (capped + segment + 1, Some(correlation))
        ]
    );
    let (drops, written) = (Arc::clone(&fixture.drops), fixture.written);
    drop(fixture);
    assert_eq!(drops.load(Ordering::Relaxed), written as usize);
}

/// A payload whose `Drop` panics while its segment is freed: the panic
/// reaches the caller of `reclaim`, the rest of the segment is still
/// dropped and freed, and the store stays usable.
#[test]
fn a_panicking_drop_while_freeing_is_reported_and_the_segment_still_freed() {
    let (capped, segment) = layout();
    let mut fixture = Fixture::new();
    let (filler, kept) = (StreamId::new(), StreamId::new());
    fixture.append(filler, capped);
    fixture.append(kept, 10);
    let touchy = fixture.event(true);
    fixture
        .store
        .insert(Transaction::single(kept, ExpectedVersion::Any, touchy))
        .unwrap();
    fixture.append(kept, segment - 11);
    fixture
        .store
        .truncate_stream(kept, StreamVersion(segment))
        .unwrap();
    // The write that makes the watermark pass the segment may free it
    // itself: its panic is this test's too.
    let event = fixture.event(false);
    let mut panics = usize::from(
        catch_unwind(AssertUnwindSafe(|| {
            fixture
                .store
                .insert(Transaction::single(filler, ExpectedVersion::Any, event))
                .unwrap();
        }))
        .is_err(),
    );
    let start = std::time::Instant::now();
    while fixture.store.inner.log.pending() > 0 {
        assert!(start.elapsed() < std::time::Duration::from_secs(60));
        let log = &fixture.store.inner.log;
        panics += usize::from(catch_unwind(AssertUnwindSafe(|| log.reclaim())).is_err());
        crate::epoch::pin().flush();
        std::thread::yield_now();
    }
    assert_eq!(panics, 1);
    assert_eq!(fixture.drops(), segment as usize);
    assert!(!fixture.store.is_poisoned());
    fixture.append(kept, 1);
    assert_eq!(fixture.store.read_stream(kept, StreamVersion(0)).count(), 1);
}
