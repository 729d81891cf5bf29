//! The stores under benchmark: Hindsight, the two baselines written here,
//! and the peers from crates.io.

pub mod hindsight;

pub mod cqrs_es;
pub mod eventcore;
pub mod eventually;
pub mod locked;
pub mod seed;
