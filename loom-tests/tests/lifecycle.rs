//! Loom models of the stream lifecycle (contract rule 30): a delete racing
//! an append and a reader, the lock-free trim of a stream with a maximum
//! count, and a maximum age racing a reader of the whole log.
//!
//! A delete, a truncation and a change of the maximum count run under the
//! stream's lock, as a writer's check and record do; the visibility floor
//! they raise is read by readers without the lock, and raised by writers
//! of a stream with a maximum count after their commit, without the lock
//! (`Stream::trim`): every raise is a `fetch_max`, so they commute.
#![cfg(loom)]

mod common;

use common::{check, stream, Outcomes};
use hindsight::{
    loom_api, ExpectedVersion, MemoryStore, Start, StreamVersion, TestClock, Transaction,
};
use loom::thread;
use std::time::{Duration, SystemTime};

/// (D1) A soft delete racing an append to the same stream and a reader of
/// the whole log. Whichever order they take, the append continues the
/// versions (version 1 after the set-up's 0), the delete removes exactly
/// what was written before it, and the reader sees the set-up's event only
/// if it read before the delete, and the append's only if it was not
/// deleted by the time the reader reached it.
#[test]
fn a_delete_racing_an_append_and_a_reader_removes_exactly_what_came_before_it() {
    let name = "a_delete_racing_an_append_and_a_reader_removes_exactly_what_came_before_it";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let store = MemoryStore::<u32>::new();
        let s = stream(1);
        store
            .insert(Transaction::single(s, ExpectedVersion::NoStream, 0))
            .unwrap();
        let deleter = {
            let store = store.clone();
            thread::spawn(move || store.delete_stream(s, ExpectedVersion::Any).unwrap())
        };
        let writer = {
            let store = store.clone();
            thread::spawn(move || {
                store
                    .insert(Transaction::single(s, ExpectedVersion::Any, 7))
                    .unwrap()
                    .stream(s)
                    .unwrap()
            })
        };
        let reader = {
            let store = store.clone();
            thread::spawn(move || {
                store
                    .read_all(Start::Beginning)
                    .map(|e| (e.version().0, *e.payload()))
                    .collect::<Vec<_>>()
            })
        };
        deleter.join().unwrap();
        let head = writer.join().unwrap();
        let read = reader.join().unwrap();
        assert_eq!(head.version, StreamVersion(1), "versions continue");
        let after: Vec<(u64, u32)> = store
            .read_stream(s, StreamVersion(0))
            .map(|e| (e.version().0, *e.payload()))
            .collect();
        match after.as_slice() {
            [] => {
                // The delete came after the append: the stream is missing.
                assert_eq!(store.stream_head(s), None);
                record.record("append, then delete");
            }
            [(1, 7)] => {
                assert_eq!(store.stream_head(s), Some(head));
                record.record("delete, then append");
            }
            other => panic!("the stream reads {other:?}"),
        }
        assert!(
            matches!(read.as_slice(), [] | [(0, 0)] | [(1, 7)] | [(0, 0), (1, 7)]),
            "the reader saw {read:?}"
        );
        if read.first() == Some(&(0, 0)) {
            record.record("reader before the delete");
        }
    });
    outcomes.require(
        name,
        &[
            "append, then delete",
            "delete, then append",
            "reader before the delete",
        ],
    );
}

/// (D2) Two appends to a stream with a maximum count of one race, and each
/// trims the stream after its commit without the lock: the floor must end
/// at the later one's version whatever order the trims take (a plain store
/// instead of `fetch_max` lets the earlier append's trim move it back, and
/// two events show).
#[test]
fn racing_trims_of_a_stream_with_a_max_count_never_move_the_floor_back() {
    let name = "racing_trims_of_a_stream_with_a_max_count_never_move_the_floor_back";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let store = MemoryStore::<u32>::new();
        let s = stream(1);
        store.set_max_count(s, Some(1)).unwrap();
        let writers: Vec<_> = [10u32, 20]
            .into_iter()
            .map(|payload| {
                let store = store.clone();
                thread::spawn(move || {
                    store
                        .insert(Transaction::single(s, ExpectedVersion::Any, payload))
                        .unwrap();
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let read: Vec<(u64, u32)> = store
            .read_stream(s, StreamVersion(0))
            .map(|e| (e.version().0, *e.payload()))
            .collect();
        match read.as_slice() {
            [(1, 10)] => record.record("20 first"),
            [(1, 20)] => record.record("10 first"),
            other => panic!("a max count of 1 shows {other:?}"),
        }
    });
    outcomes.require(name, &["10 first", "20 first"]);
}

/// (D4) Two appends to a stream with a maximum count of 1 that holds one
/// event: each removes the version before its own and asks for it to be
/// counted (rule 30's reclamation) after its commit, racing for the one
/// counting thread. A caller that finds another counting leaves its
/// request, which the counter must see before it leaves: afterwards both
/// removed versions are counted, once. Requires a caller that left its
/// request to the other (it returned with fewer versions counted than it
/// asked for), and one that counted its own.
#[test]
fn racing_counts_of_removed_events_lose_no_request() {
    let name = "racing_counts_of_removed_events_lose_no_request";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let store = MemoryStore::<u32>::new();
        let s = stream(1);
        store
            .insert(Transaction::single(s, ExpectedVersion::NoStream, 0))
            .unwrap();
        store.set_max_count(s, Some(1)).unwrap();
        let writers: Vec<_> = [10u32, 20]
            .into_iter()
            .map(|payload| {
                let store = store.clone();
                thread::spawn(move || {
                    let done = store
                        .insert(Transaction::single(s, ExpectedVersion::Any, payload))
                        .unwrap();
                    // With a maximum count of 1, version `v` removes the
                    // versions below it: `v` is what this writer asked for.
                    let asked = done.stream(s).unwrap().version.0;
                    (asked, loom_api::counted_removed(&store, s))
                })
            })
            .collect();
        let seen: Vec<(u64, u64)> = writers
            .into_iter()
            .map(|writer| writer.join().unwrap())
            .collect();
        assert_eq!(
            loom_api::counted_removed(&store, s),
            2,
            "both removed versions are counted"
        );
        for (asked, counted) in seen {
            if counted < asked {
                record.record("a request left to the other");
            } else {
                record.record("a request counted by its caller or before");
            }
        }
    });
    outcomes.require(
        name,
        &[
            "a request left to the other",
            "a request counted by its caller or before",
        ],
    );
}

/// (D3) A maximum age set, then an insert into another stream, racing a
/// reader of the whole log: the age is not turned into a floor, so the
/// reader finds it through the store-wide flag's `AGED` bit and the
/// stream's `max_age`, which it reads after reaching the old event. A
/// reader that sees the insert (so loaded the watermark after it, and
/// after the age was set, in happens-before) must not see the old event:
/// `[0, 1]` is the outcome the flag exists to forbid (a `set_max_age`
/// that leaves the flag unset shows it). Requires a reader before the age
/// and one after the insert.
#[test]
fn a_reader_that_sees_a_write_made_after_a_max_age_hides_the_old_event() {
    let name = "a_reader_that_sees_a_write_made_after_a_max_age_hides_the_old_event";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        // A test clock: a plain value under loom (std atomics), set
        // before the threads start.
        let clock = TestClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
        let store = MemoryStore::<u32>::builder().clock(clock.clone()).build();
        let (s, t) = (stream(1), stream(2));
        store
            .insert(Transaction::single(s, ExpectedVersion::NoStream, 0))
            .unwrap();
        clock.advance(Duration::from_secs(60));
        let setter = {
            let store = store.clone();
            thread::spawn(move || {
                store.set_max_age(s, Some(Duration::from_secs(30))).unwrap();
                store
                    .insert(Transaction::single(t, ExpectedVersion::NoStream, 1))
                    .unwrap();
            })
        };
        let reader = {
            let store = store.clone();
            thread::spawn(move || {
                store
                    .read_all(Start::Beginning)
                    .map(|e| *e.payload())
                    .collect::<Vec<u32>>()
            })
        };
        setter.join().unwrap();
        let read = reader.join().unwrap();
        match read.as_slice() {
            [0] => record.record("reader before the age"),
            [] => record.record("reader between the age and the insert"),
            [1] => record.record("reader after the insert"),
            other => panic!("the reader saw {other:?}"),
        }
        let after: Vec<u32> = store
            .read_all(Start::Beginning)
            .map(|e| *e.payload())
            .collect();
        assert_eq!(after, [1], "a read after both hides the old event");
    });
    outcomes.require(name, &["reader before the age", "reader after the insert"]);
}
