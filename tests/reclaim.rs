//! Reclaiming removed events (contract rule 30) in the real log layout:
//! the first 1,040,384 positions in segments that grow, then segments of
//! 65,536 that are freed once all their events are removed and nobody
//! reads them. (The crate's unit tests, `src/reclaim_tests.rs`, run a small
//! layout and check pins and metadata; this checks the layout users get.)

use hindsight::{ExpectedVersion, MemoryStore, Selector, Start, StreamId, Transaction};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Where the capped segments start, and their length.
const CAPPED: u64 = 1_040_384;
const SEGMENT: u64 = 65_536;

/// A payload that counts its drops.
#[derive(Debug)]
struct Counted(u64, Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
}

/// A stream with a maximum count of 10 written well past the geometric
/// region: whole capped segments of removed events are freed while the
/// store lives (their payloads dropped once), a subscription following
/// along reads every event it reaches, and dropping the store drops the
/// rest, each once.
#[test]
fn a_stream_with_a_max_count_frees_whole_segments_while_the_store_lives() {
    let store = MemoryStore::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let stream = StreamId::new();
    store.set_max_count(stream, Some(10)).unwrap();
    let mut subscription = store.subscribe(Selector::stream(stream).start(Start::Beginning));
    let mut written = 0u64;
    let mut delivered = 0u64;
    let write = |n: u64, written: &mut u64| {
        let events: Vec<Counted> = (*written..*written + n)
            .map(|value| Counted(value, Arc::clone(&drops)))
            .collect();
        *written += n;
        store
            .insert(Transaction::new().append(stream, ExpectedVersion::Any, events))
            .unwrap();
    };
    // Past the geometric region and four capped segments, in batches.
    while written < CAPPED + 4 * SEGMENT {
        write(1_000, &mut written);
        // The subscription keeps up: it never pins more than the segment
        // it is in, and sees every event not removed when it gets there.
        while let Some(event) = subscription.try_next().unwrap() {
            assert!(event.payload().0 >= delivered);
            delivered = event.payload().0 + 1;
        }
    }
    assert_eq!(delivered, written);
    // Freeing waits for the epoch guards older than each retirement: a few
    // more writes (each runs the reclamation) let it catch up. At least
    // the first three capped segments are wholly removed.
    let freed = 3 * SEGMENT as usize;
    let mut rounds = 0;
    while drops.load(Ordering::Relaxed) < freed {
        rounds += 1;
        assert!(rounds < 1_000_000, "removed segments were never freed");
        write(1, &mut written);
    }
    drop(subscription);
    let visible: Vec<u64> = store
        .read_stream(stream, hindsight::StreamVersion(0))
        .map(|event| event.payload().0)
        .collect();
    assert_eq!(visible, (written - 10..written).collect::<Vec<_>>());
    drop(store);
    assert_eq!(drops.load(Ordering::Relaxed), written as usize);
}

/// Two writers appending to one stream with a maximum count, each counting
/// the events its append removed right after its commit: every capped
/// segment wholly below the stream's floor is freed, none held back. (Two
/// threads counting one stream at once once freed positions the other
/// still read, and the events it missed kept their segments forever.)
#[test]
fn two_writers_of_one_stream_leave_no_removed_segment_behind() {
    let store = MemoryStore::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let (stream, filler) = (StreamId::new(), StreamId::new());
    store.set_max_count(stream, Some(10)).unwrap();
    let per_writer = (CAPPED + 6 * SEGMENT) / 2;
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (store, drops) = (&store, &drops);
            scope.spawn(move || {
                for value in 0..per_writer {
                    let event = Counted(value, Arc::clone(drops));
                    store
                        .insert(Transaction::single(stream, ExpectedVersion::Any, event))
                        .unwrap();
                }
            });
        }
    });
    // Every version below the floor (all but the last 10) is removed: the
    // capped segments wholly below it hold nothing else.
    let floor = 2 * per_writer - 10;
    let freed = ((floor - CAPPED) / SEGMENT * SEGMENT) as usize;
    // Writes to another stream (never removed) run the reclamation and let
    // the epoch pass, without removing anything more.
    let mut rounds = 0;
    while drops.load(Ordering::Relaxed) < freed {
        rounds += 1;
        assert!(
            rounds < 200_000,
            "{} of {freed} removed events freed",
            drops.load(Ordering::Relaxed)
        );
        store
            .insert(Transaction::single(
                filler,
                ExpectedVersion::Any,
                Counted(0, Arc::clone(&drops)),
            ))
            .unwrap();
    }
    assert_eq!(drops.load(Ordering::Relaxed), freed);
}
