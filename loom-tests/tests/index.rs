//! Loom models of the stream index's entry removal (`stream.rs`,
//! `StreamIndex::release` and `remove_if_unused`): an entry created for a
//! failed insert, a pure check or a handle that never appends is removed
//! when its last user lets go of it, under the index lock, if its reference
//! count is one and it is still empty. A removal that is wrong (an entry in
//! use, or one that holds events) orphans a `Stream`: a writer appends to
//! it, its event is in the log, and stream reads never see it. Each model
//! checks, after the threads are joined, that the stream reads what was
//! written and that no entry is left behind.
//!
//! Under loom the index is one `Mutex<HashMap>`, and the one-stream insert
//! path (`with_or_create`) holds an `Arc` clone of its stream instead of the
//! dashmap shard's read guard it holds outside loom, so every user of a
//! stream here holds a counted reference (MUTATIONS.md says what that
//! leaves unmodelled). Fixed stream ids, as in `store.rs`; the main thread
//! only sets up, spawns and joins.
#![cfg(loom)]

mod common;

use common::{check, stream, Outcomes};
use hindsight::loom_api::indexed_streams;
use hindsight::{
    ExpectedVersion, InsertError, MemoryStore, Position, StreamId, StreamVersion, Transaction,
};
use loom::thread;

/// Checks that `s` holds exactly one event, `payload` at version 0 and
/// position 0, through every read, and that the index holds `entries`
/// streams.
fn assert_one_event(store: &MemoryStore<u32>, s: StreamId, payload: u32, entries: usize) {
    let read: Vec<(u64, u64, u32)> = store
        .read_stream(s, StreamVersion(0))
        .map(|e| (e.version().0, e.position().get(), *e.payload()))
        .collect();
    assert_eq!(
        read,
        [(0, 0, payload)],
        "read_stream sees the written event"
    );
    let head = store.stream_head(s).map(|h| (h.version, h.position));
    assert_eq!(head, Some((StreamVersion(0), Position(0))), "stream_head");
    assert_eq!(store.head(), Some(Position(0)), "one event in the log");
    assert_eq!(indexed_streams(store), entries, "entries left in the index");
}

/// A two-stream insert that fails (`{S: NoStream [1], T: StreamExists [2]}`
/// on an empty store: it creates entries for S and T, locks both, fails on
/// T, and releases both) racing a successful one-stream insert to S
/// (`Any`). However the release of S interleaves with the writer's lookup,
/// append and drop of S, the writer's event is in S afterwards, and T's
/// entry is gone.
#[test]
fn a_failed_insert_releasing_its_streams_never_orphans_a_concurrent_writer() {
    let name = "a_failed_insert_releasing_its_streams_never_orphans_a_concurrent_writer";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let store = MemoryStore::<u32>::new();
        let (s, t) = (stream(1), stream(2));
        let failing = {
            let store = store.clone();
            thread::spawn(move || {
                store.insert(
                    Transaction::new()
                        .append(s, ExpectedVersion::NoStream, [1])
                        .append(t, ExpectedVersion::StreamExists, [2]),
                )
            })
        };
        let writer = {
            let store = store.clone();
            thread::spawn(move || {
                store
                    .insert(Transaction::single(s, ExpectedVersion::Any, 7))
                    .expect("Any on one stream succeeds")
            })
        };
        let committed = writer.join().unwrap();
        assert_eq!(committed.last_position(), Some(Position(0)));
        let Err(InsertError::VersionConflict(mismatches)) = failing.join().unwrap() else {
            panic!("T does not exist: the two-stream insert fails");
        };
        let failed: Vec<StreamId> = mismatches.iter().map(|m| m.stream).collect();
        record.record(if failed == [t] {
            "failed on T only (checked S before the write)"
        } else {
            assert_eq!(failed, [s, t]);
            "failed on S and T (checked S after the write)"
        });
        assert_one_event(&store, s, 7, 1);
    });
    outcomes.require(
        name,
        &[
            "failed on T only (checked S before the write)",
            "failed on S and T (checked S after the write)",
        ],
    );
}

/// A handle on S dropped without appending (its entry may be the one the
/// handle created, and the last reference to it) racing an append through
/// a second handle on S: the drop removes the entry only if nobody else
/// holds it and it is empty, so the append is never lost, and no entry is
/// left but S's.
#[test]
fn a_handle_dropped_unused_never_orphans_an_append_through_another_handle() {
    let name = "a_handle_dropped_unused_never_orphans_an_append_through_another_handle";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let store = MemoryStore::<u32>::new();
        let s = stream(1);
        let dropper = {
            let store = store.clone();
            thread::spawn(move || drop(store.stream(s)))
        };
        let appender = {
            let store = store.clone();
            thread::spawn(move || {
                let handle = store.stream(s);
                let head = handle.append_one(ExpectedVersion::NoStream, 7).unwrap();
                assert_eq!(
                    (head.version, head.position),
                    (StreamVersion(0), Position(0))
                );
                // Still held by this handle: the dropper cannot have
                // removed it, whatever it saw.
                handle.head().map(|h| h.version)
            })
        };
        dropper.join().unwrap();
        let seen = appender.join().unwrap();
        assert_eq!(seen, Some(StreamVersion(0)), "the handle reads its append");
        record.record("appended");
        assert_one_event(&store, s, 7, 1);
    });
    outcomes.require(name, &["appended"]);
}

/// Two one-stream `NoStream` inserts to S: exactly one wins. The loser
/// fails on a stream that now holds the winner's event and, like every
/// failed one-stream insert, calls `remove_if_unused` for the entry it may
/// have created: it must keep the entry (it holds an event), whether the
/// winner still holds its reference or has let go of it.
#[test]
fn a_failed_one_stream_insert_never_removes_the_winners_stream() {
    let name = "a_failed_one_stream_insert_never_removes_the_winners_stream";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let store = MemoryStore::<u32>::new();
        let s = stream(1);
        let writers: Vec<_> = [7u32, 8]
            .into_iter()
            .map(|payload| {
                let store = store.clone();
                thread::spawn(move || {
                    store
                        .insert(Transaction::single(s, ExpectedVersion::NoStream, payload))
                        .map(|_| payload)
                })
            })
            .collect();
        let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        let winners: Vec<u32> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .copied()
            .collect();
        assert_eq!(winners.len(), 1, "exactly one NoStream wins: {results:?}");
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(InsertError::VersionConflict(_)))),
            "the loser gets a conflict: {results:?}"
        );
        record.record(format!("{} won", winners[0]));
        assert_one_event(&store, s, winners[0], 1);
    });
    outcomes.require(name, &["7 won", "8 won"]);
}
