//! Memory per stored event beyond the 32-byte payload, for every
//! contender: the heap a store holds after `EVENTS` events, counted by a
//! global allocator that tracks live bytes, divided by the events.
//!
//! Measured for 100-event and for 1-event transactions (per-transaction
//! metadata shows in the second), over 100 streams. Includes whatever
//! capacity the store has reserved but not filled yet (a `Vec`'s doubling,
//! a segment's tail), as a process's memory would. Writes
//! `perf/memory.md`.

mod harness;

use harness::contender::{fill, Contender};
use harness::contenders::{
    cqrs_es::CqrsEs, eventcore::Eventcore, eventually::Eventually, locked::Locked, seed::Seed,
};
use harness::{benching, write_table, Payload};
use hindsight::MemoryStore;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// The system allocator, counting live bytes.
struct Counting;

/// Live heap bytes. Relaxed: a statistic read by the one thread that
/// allocated them, after the fill has returned.
static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's own
// arguments, so `Counting` upholds `GlobalAlloc`'s contract exactly as
// `System` does; the counter has no effect on the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's `layout` obligations pass through unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator (that is, from `System`)
        // with this `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as for `dealloc`, and `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes per event beyond the payload once `C` holds `events` events
/// written in `size`-event transactions over 100 streams.
fn per_event<C: Contender>(events: u64, size: u64) -> f64 {
    let before = LIVE.load(Ordering::Relaxed);
    let store = C::new();
    // The fill's own vectors (batches, stream handles) are freed when it
    // returns, so only what the store holds stays counted.
    fill(&store, events, size);
    let held = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(
        (0..100)
            .map(|i| store.read_stream(&store.stream(i), |_| {}))
            .sum::<u64>(),
        events,
        "{} kept every event",
        C::NAME
    );
    drop(store);
    held as f64 / events as f64 - std::mem::size_of::<Payload>() as f64
}

fn main() {
    let events = if benching() { 100_000 } else { 2_000 };
    let mut table = String::from(
        "| contender | bytes per event beyond the 32-byte payload, 100-event transactions | 1-event transactions |\n|---|---|---|\n",
    );
    fn row<C: Contender>(table: &mut String, events: u64) {
        let (hundred, one) = (per_event::<C>(events, 100), per_event::<C>(events, 1));
        *table += &format!("| {} | {hundred:.1} | {one:.1} |\n", C::NAME);
    }
    row::<MemoryStore<Payload>>(&mut table, events);
    row::<Locked>(&mut table, events);
    row::<Seed>(&mut table, events);
    row::<Eventcore>(&mut table, events);
    row::<Eventually>(&mut table, events);
    row::<CqrsEs>(&mut table, events);
    let log = std::mem::size_of::<(u64, Payload)>() as f64 - 32.0;
    table += &format!("| vec-push (position, payload) | {log:.1} | {log:.1} |\n");
    table += &format!(
        "\n{} events over 100 streams; live heap bytes after the fill, less the payloads, per event. `vec-push` is the element size alone (no capacity slack).\n",
        harness::si(events as f64)
    );
    write_table("memory", &table);
}
