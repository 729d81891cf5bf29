//! Checks every contender's adapter before any figure is trusted: each one
//! keeps events per stream and in order, and where it claims them, atomic
//! multi-stream transactions with exact expectations, a global read in
//! commit order, and subscriptions that catch up and follow live writes.
//! Quick (a second); CI runs it.

mod harness;

use harness::contender::{check_global_read, check_multi_stream, check_streams, check_subscribe};
use harness::contenders::{
    cqrs_es::CqrsEs, eventcore::Eventcore, eventually::Eventually, hindsight::Handles,
    locked::Locked, seed::Seed,
};
use harness::Payload;
use hindsight::MemoryStore;

fn main() {
    check_streams::<MemoryStore<Payload>>();
    check_multi_stream::<MemoryStore<Payload>>();
    check_global_read::<MemoryStore<Payload>>();
    check_subscribe::<MemoryStore<Payload>>();
    check_streams::<Handles>();
    check_streams::<Locked>();
    check_multi_stream::<Locked>();
    check_global_read::<Locked>();
    check_subscribe::<Locked>();
    check_streams::<Seed>();
    check_multi_stream::<Seed>();
    check_global_read::<Seed>();
    check_subscribe::<Seed>();
    check_streams::<CqrsEs>();
    check_streams::<Eventually>();
    check_streams::<Eventcore>();
    check_multi_stream::<Eventcore>();
    check_global_read::<Eventcore>();
    check_subscribe::<Eventcore>();
    println!("verify: every contender's adapter passed its checks");
}
