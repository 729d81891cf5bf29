//! Stream lifecycle on the memory store's inherent API (contract rule 30):
//! soft delete, hard delete, truncate before; iterators and pull
//! subscriptions in progress; concurrent writers and deleters.

use hindsight::{
    ExpectedVersion, InsertError, MemoryStore, Position, Selector, Start, StreamId, StreamName,
    StreamVersion, Transaction,
};
use std::sync::Arc;
use ExpectedVersion::{Any, Exact, NoStream, StreamExists};

fn positions<E>(store: &MemoryStore<E>) -> Vec<u64> {
    store
        .read_all(Start::Beginning)
        .map(|e| e.position().0)
        .collect()
}

fn versions<E>(store: &MemoryStore<E>, stream: StreamId) -> Vec<u64> {
    store
        .read_stream(stream, StreamVersion(0))
        .map(|e| e.version().0)
        .collect()
}

#[test]
fn a_soft_deleted_stream_reads_as_missing_and_continues_its_versions_when_written() {
    let store = MemoryStore::new();
    let name = StreamName::new("order-1").unwrap();
    let a = name.id();
    store
        .insert(Transaction::new().append_named(&name, NoStream, [0, 1, 2]))
        .unwrap();
    store.delete_stream(a, Exact(StreamVersion(2))).unwrap();
    assert_eq!(store.stream_head(a), None);
    assert_eq!(store.stream_name(a), None);
    assert_eq!(store.read_stream_backward(a).count(), 0);
    assert_eq!(positions(&store), Vec::<u64>::new());
    assert_eq!(store.head(), Some(Position(2)), "the log's head stays");

    let done = store.insert(Transaction::single(a, NoStream, 3)).unwrap();
    let head = done.stream(a).unwrap();
    assert_eq!((head.version.0, head.position.0), (3, 3));
    assert_eq!(versions(&store, a), [3]);
    assert_eq!(store.stream_name(a).unwrap().as_str(), "order-1");
    // Conflicts name the stream after a delete too.
    let Err(InsertError::VersionConflict(mismatches)) =
        store.insert(Transaction::single(a, NoStream, 4))
    else {
        panic!("the stream exists again")
    };
    assert_eq!(
        mismatches[0].stream_name.as_ref().unwrap().as_str(),
        "order-1"
    );
}

#[test]
fn a_failed_delete_changes_nothing() {
    let store = MemoryStore::new();
    let a = StreamId::new();
    store.insert(Transaction::single(a, NoStream, 0)).unwrap();
    let Err(InsertError::VersionConflict(mismatches)) =
        store.delete_stream(a, Exact(StreamVersion(5)))
    else {
        panic!("version 5 is not the head")
    };
    assert_eq!(mismatches.len(), 1);
    assert_eq!(mismatches[0].found.unwrap().version, StreamVersion(0));
    assert_eq!(versions(&store, a), [0]);
    assert!(matches!(
        store.tombstone_stream(a, NoStream),
        Err(InsertError::VersionConflict(_))
    ));
    store.insert(Transaction::single(a, Any, 1)).unwrap();
    assert_eq!(versions(&store, a), [0, 1]);
}

#[test]
fn a_hard_deleted_stream_refuses_handle_appends_and_pure_checks() {
    let store = MemoryStore::new();
    let a = StreamId::new();
    let handle = store.stream(a);
    handle.append(NoStream, [0, 1]).unwrap();
    store.tombstone_stream(a, StreamExists).unwrap();
    let deleted = InsertError::StreamDeleted {
        stream: a,
        stream_name: None,
    };
    assert_eq!(handle.append_one(Any, 2).err(), Some(deleted.clone()));
    assert_eq!(handle.append(NoStream, []).err(), Some(deleted.clone()));
    assert_eq!(
        store
            .insert(Transaction::new().append(a, StreamExists, []))
            .err(),
        Some(deleted.clone())
    );
    // A zero-event `Any` append checks nothing and writes nothing: it passes.
    assert!(store.insert(Transaction::new().append(a, Any, [])).is_ok());
    assert_eq!(store.truncate_stream(a, StreamVersion(1)), Err(deleted));
    assert_eq!(store.head(), Some(Position(1)));
    assert_eq!(handle.head(), None);
}

#[test]
fn a_hard_deleted_missing_stream_is_remembered_after_every_handle_is_gone() {
    let store = MemoryStore::new();
    let a = StreamId::new();
    store.tombstone_stream(a, NoStream).unwrap();
    // Nothing holds the stream now; the mark must stay.
    for _ in 0..3 {
        drop(store.stream(a));
        assert!(matches!(
            store.insert(Transaction::single(a, NoStream, 0)),
            Err(InsertError::StreamDeleted { .. })
        ));
    }
    assert_eq!(store.head(), None);
}

#[test]
fn reads_in_progress_skip_events_removed_before_they_reach_them() {
    let store = MemoryStore::new();
    let (a, b) = (StreamId::new(), StreamId::new());
    store
        .insert(
            Transaction::new()
                .append(a, NoStream, [0, 1, 2, 3])
                .append(b, NoStream, [4, 5]),
        )
        .unwrap();
    // `a` sorts before or after `b`: find where each one's events lie.
    let a_first = store.read_all(Start::Beginning).next().unwrap().stream_id() == a;

    let mut all = store.read_all(Start::Beginning);
    let mut forward = store.read_stream(a, StreamVersion(0));
    let mut backward = store.read_stream_backward(a);
    assert_eq!(forward.next().unwrap().version(), StreamVersion(0));
    assert_eq!(backward.next().unwrap().version(), StreamVersion(3));
    let first = all.next().unwrap();
    assert_eq!(first.position(), Position(0));

    store.truncate_stream(a, StreamVersion(3)).unwrap();
    // Delivered events stay delivered; the rest of each read skips what
    // is gone.
    assert_eq!(
        forward.map(|e| *e.payload()).collect::<Vec<_>>(),
        [3],
        "forward read: versions 1 and 2 were removed"
    );
    assert_eq!(
        backward.map(|e| *e.payload()).collect::<Vec<_>>(),
        Vec::<i32>::new(),
        "backward read: stops at the floor"
    );
    let rest: Vec<i32> = all.map(|e| *e.payload()).collect();
    if a_first {
        assert_eq!(rest, [3, 4, 5]);
    } else {
        assert_eq!(rest, [5, 3]);
    }
}

#[test]
fn size_hints_bound_reads_that_skip_removed_events() {
    let store = MemoryStore::new();
    let a = StreamId::new();
    store
        .insert(Transaction::new().append(a, NoStream, [0, 1, 2]))
        .unwrap();
    store.truncate_stream(a, StreamVersion(2)).unwrap();
    let all = store.read_all(Start::Beginning);
    let (low, high) = all.size_hint();
    assert!(low <= 1 && high >= Some(1));
    assert_eq!(all.count(), 1);
    let stream = store.read_stream(a, StreamVersion(0));
    assert_eq!(stream.size_hint(), (0, Some(1)));
    assert_eq!(stream.count(), 1);
}

#[test]
fn a_pull_subscription_skips_events_removed_before_it_reaches_them() {
    let store = MemoryStore::new();
    let (a, b) = (StreamId::new(), StreamId::new());
    let mut all = store.subscribe(Selector::all());
    let mut one = store.subscribe(Selector::stream(a));
    store.insert(Transaction::single(a, NoStream, 0)).unwrap();
    assert_eq!(*all.next().unwrap().payload(), 0);
    assert_eq!(*one.next().unwrap().payload(), 0);
    store.insert(Transaction::single(a, Any, 1)).unwrap();
    store.insert(Transaction::single(b, Any, 2)).unwrap();
    store.delete_stream(a, Any).unwrap();
    store.insert(Transaction::single(a, NoStream, 3)).unwrap();
    assert_eq!(*all.next().unwrap().payload(), 2);
    let recreated = all.next().unwrap();
    assert_eq!(
        (*recreated.payload(), recreated.version()),
        (3, StreamVersion(2))
    );
    let recreated = one.next().unwrap();
    assert_eq!(
        (*recreated.payload(), recreated.version()),
        (3, StreamVersion(2))
    );
    assert!(all.try_next().unwrap().is_none());
    assert!(one.try_next().unwrap().is_none());
}

/// Writers append while another thread deletes and truncates: no
/// position is reused, versions go on across every delete, and what a
/// read shows of a stream is a suffix of its versions.
#[test]
fn concurrent_writers_and_deleters_never_reuse_positions_or_versions() {
    const WRITERS: u64 = 4;
    const EACH: u64 = if cfg!(miri) { 20 } else { 2_000 };
    let store = MemoryStore::new();
    let stream = StreamId::new();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let remover = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if n.is_multiple_of(2) {
                    store.delete_stream(stream, Any).unwrap();
                } else if let Some(head) = store.stream_head(stream) {
                    store.truncate_stream(stream, head.version).unwrap();
                }
                let read = versions(&store, stream);
                assert!(read.windows(2).all(|w| w[1] == w[0] + 1), "{read:?}");
                n += 1;
            }
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                for i in 0..EACH {
                    let done = store
                        .insert(Transaction::single(stream, Any, w * EACH + i))
                        .unwrap();
                    let head = done.stream(stream).unwrap();
                    seen.push((head.version.0, head.position.0));
                }
                seen
            })
        })
        .collect();
    let mut seen: Vec<(u64, u64)> = writers
        .into_iter()
        .flat_map(|writer| writer.join().unwrap())
        .collect();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    remover.join().unwrap();
    seen.sort_unstable();
    let total = WRITERS * EACH;
    // Every event got version == position: one stream, positions from 0.
    assert_eq!(seen, (0..total).map(|i| (i, i)).collect::<Vec<_>>());
    assert_eq!(store.head(), Some(Position(total - 1)));
    let next = store
        .insert(Transaction::single(stream, Any, total))
        .unwrap();
    assert_eq!(next.stream(stream).unwrap().version, StreamVersion(total));
}
