//! Loom models of `Segments` (`segments.rs`): racing allocators install one
//! segment, the loser frees its own, and the winner's initialised slots are
//! published to everyone who gets the pointer.
#![cfg(loom)]

mod common;

use common::{check, Outcomes};
use hindsight::loom_api::{
    created_tracked_slots, live_tracked_slots, AtomicSegments, TrackedSegments,
};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;

/// (e) Two threads call `get_or_alloc` on an empty `Segments` (slots 0 and 1
/// of segment 0). Both get the same segment; each slot lives in a loom
/// `UnsafeCell` created inside `install` on the allocating thread, so loom
/// flags any access not ordered after that creation (a publication CAS or
/// `get` load weaker than Release/Acquire). A value one thread writes is
/// visible to the other once it acquires a flag the writer released. Every
/// slot allocated, by the winner or the loser, is dropped by the end
/// (the loser frees its segment; the winner's goes with the array).
#[test]
fn racing_get_or_alloc_share_one_segment_and_free_the_losers() {
    let name = "racing_get_or_alloc_share_one_segment_and_free_the_losers";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let live_before = live_tracked_slots();
        let created_before = created_tracked_slots();
        let segments = Arc::new(TrackedSegments::new());
        let written = Arc::new(AtomicBool::new(false));
        let first = {
            let (segments, written) = (Arc::clone(&segments), Arc::clone(&written));
            thread::spawn(move || {
                let slot = segments.get_or_alloc(0);
                slot.set(10);
                written.store(true, Ordering::Release);
                slot as *const _ as usize
            })
        };
        let second = {
            let (segments, written) = (Arc::clone(&segments), Arc::clone(&written));
            thread::spawn(move || {
                let slot = segments.get_or_alloc(1);
                slot.set(20);
                let zero = segments.get_or_alloc(0);
                let saw_write = written.load(Ordering::Acquire);
                if saw_write {
                    assert_eq!(zero.get(), 10, "the other thread's write is visible");
                }
                (zero as *const _ as usize, saw_write)
            })
        };
        let first = first.join().unwrap();
        let (second, saw_write) = second.join().unwrap();
        assert_eq!(first, second, "both got the same slot");
        record.record(if saw_write {
            "second thread read the first's value"
        } else {
            "second thread ran before the first's write"
        });
        assert_eq!(segments.get(0).unwrap().get(), 10);
        assert_eq!(segments.get(1).unwrap().get(), 20);
        assert!(segments.get(2).is_none(), "segment 1 was never allocated");
        // Segment 0 holds 2 slots: 4 were created if both threads allocated
        // one (the race), and only the winner's 2 are still alive.
        assert_eq!(
            live_tracked_slots() - live_before,
            2,
            "the loser freed its segment"
        );
        record.record(match created_tracked_slots() - created_before {
            2 => "one thread allocated",
            4 => "both threads allocated, one CAS lost",
            n => panic!("{n} slots created for one 2-slot segment"),
        });
        drop(segments);
        assert_eq!(
            live_tracked_slots(),
            live_before,
            "a segment was leaked (or freed twice)"
        );
    });
    outcomes.require(
        name,
        &[
            "second thread read the first's value",
            "second thread ran before the first's write",
            "one thread allocated",
            "both threads allocated, one CAS lost",
        ],
    );
}

/// (e) The same race on the stream index's slot type (`AtomicU64`): both
/// threads get the same slot, and `get` on a third thread finds either no
/// segment or that same one.
#[test]
fn racing_get_or_alloc_on_atomic_slots_agree_on_the_segment() {
    let name = "racing_get_or_alloc_on_atomic_slots_agree_on_the_segment";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let segments = Arc::new(AtomicSegments::new());
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let segments = Arc::clone(&segments);
                thread::spawn(move || segments.get_or_alloc(1) as *const _ as usize)
            })
            .collect();
        let observer = {
            let segments = Arc::clone(&segments);
            thread::spawn(move || segments.get(1).map(|slot| slot as *const _ as usize))
        };
        let pointers: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(pointers[0], pointers[1], "both got the same slot");
        match observer.join().unwrap() {
            Some(observed) => {
                assert_eq!(observed, pointers[0], "get saw the installed segment");
                record.record("get saw the segment");
            }
            None => record.record("get saw no segment"),
        }
    });
    outcomes.require(name, &["get saw the segment", "get saw no segment"]);
}

/// (e) Two threads allocate the first two segments of the capped region
/// (slots 6 and 10: segments of 4 slots, both pointers in the first chunk)
/// on an empty `Segments`, so they race to install the chunk as well as
/// their own segment. Both end up in one chunk (each sees the other's
/// slot), a chunk or segment published without Release/Acquire is flagged
/// (the chunk carries a loom cell read on every lookup, the slots are loom
/// cells), and every slot allocated is dropped by the end.
#[test]
fn racing_installs_of_one_chunk_share_it() {
    let name = "racing_installs_of_one_chunk_share_it";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let live_before = live_tracked_slots();
        let segments = Arc::new(TrackedSegments::new());
        let written = Arc::new(AtomicBool::new(false));
        let first = {
            let (segments, written) = (Arc::clone(&segments), Arc::clone(&written));
            thread::spawn(move || {
                segments.get_or_alloc(6).set(60);
                written.store(true, Ordering::Release);
            })
        };
        let second = {
            let (segments, written) = (Arc::clone(&segments), Arc::clone(&written));
            thread::spawn(move || {
                segments.get_or_alloc(10).set(100);
                if written.load(Ordering::Acquire) {
                    let six = segments.get(6).expect("the other segment is reachable");
                    assert_eq!(six.get(), 60, "the other thread's write is visible");
                    "second thread read the first's slot"
                } else {
                    "second thread ran before the first's write"
                }
            })
        };
        first.join().unwrap();
        record.record(second.join().unwrap());
        let slots = (
            segments.get(6).map(|s| s.get()),
            segments.get(10).map(|s| s.get()),
        );
        assert_eq!(
            slots,
            (Some(60), Some(100)),
            "both threads' slots are reachable"
        );
        assert!(
            segments.get(14).is_none(),
            "segment 14..18 was never allocated"
        );
        assert_eq!(
            live_tracked_slots() - live_before,
            8,
            "two capped segments of 4 slots live"
        );
        drop(segments);
        assert_eq!(
            live_tracked_slots(),
            live_before,
            "a segment was leaked (or freed twice)"
        );
    });
    outcomes.require(
        name,
        &[
            "second thread read the first's slot",
            "second thread ran before the first's write",
        ],
    );
}
