//! Insert throughput of every contender beside the limits, each sample into
//! a store in fresh memory: page faults included, as a test suite that
//! builds a store per test pays them. The groups are `insert/*/fresh`; the
//! scenarios are in `harness/insert.rs`, and `insert-warm` runs the same
//! ones in memory the process has already written.

mod harness;

fn main() {
    harness::insert::run(harness::insert::Memory::Fresh);
}
