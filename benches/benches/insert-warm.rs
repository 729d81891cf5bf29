//! Insert throughput of every contender beside the limits, each sample into
//! a store in memory the process has already written: the allocator keeps
//! what it frees, and an untimed run of the same work precedes each timed
//! one, so the timed inserts take no page faults (the steady state of a
//! process whose stores come and go). The groups are `insert/*/warm`; the
//! scenarios are in `harness/insert.rs`, and `insert` runs the same ones in
//! fresh memory.

mod harness;

fn main() {
    // Before anything else, and before any thread exists.
    harness::heap::keep_freed_memory();
    harness::insert::run(harness::insert::Memory::Warm);
}
