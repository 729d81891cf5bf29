//! Loom models of `Signal` (`signal.rs`): the sleeper count that lets
//! `wake` skip `event_listener`'s notify when nobody sleeps, tied to the
//! waited-on state by two `fence(SeqCst)`s. They also show that
//! `event_listener`'s `Listener::wait` really blocks and is woken under
//! loom: in some executions the sleeper finds its condition false after
//! registering and parks, and the model still ends (a sleeper never woken
//! is a loom deadlock).
#![cfg(loom)]

mod common;

use common::{check, Outcomes};
use hindsight::loom_api::{parks, Signal};
use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

/// Waits on `signal` until `ready()`, the way the crate's callers do
/// (`park_until` may return spuriously), recording whether the check made
/// after registering ever found the condition false, i.e. whether the
/// sleeper really parked.
fn sleep_until(signal: &Signal, ready: impl Fn() -> bool) -> &'static str {
    let parked = std::cell::Cell::new(false);
    while !ready() {
        signal.park_until(|| {
            let ready = ready();
            if !ready {
                parked.set(true);
            }
            ready
        });
    }
    if parked.get() {
        "parked and was woken"
    } else {
        "never parked"
    }
}

/// (c) One thread parks with `park_until(flag)` while another sets the flag
/// (SeqCst, like `Watermark::poison`) and calls `wake`. Loom explores the
/// waker loading the sleeper count before the sleeper registers (notify
/// skipped: the sleeper must then see the flag) and after (notify sent to a
/// parked or parking sleeper). A lost wake-up is a loom deadlock.
#[test]
fn park_until_never_misses_a_wake_after_a_seqcst_store() {
    let name = "park_until_never_misses_a_wake_after_a_seqcst_store";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let signal = Arc::new(Signal::new());
        let flag = Arc::new(AtomicBool::new(false));
        let sleeper = {
            let (signal, flag) = (Arc::clone(&signal), Arc::clone(&flag));
            thread::spawn(move || sleep_until(&signal, || flag.load(Ordering::Acquire)))
        };
        let waker = thread::spawn(move || {
            flag.store(true, Ordering::SeqCst);
            signal.wake();
        });
        waker.join().unwrap();
        record.record(sleeper.join().unwrap());
    });
    outcomes.require(name, &["parked and was woken", "never parked"]);
}

/// (c) The same handshake with the state changed by an AcqRel CAS, as the
/// watermark is in `Watermark::advance`: only the fences order it against
/// the sleeper count.
#[test]
fn park_until_never_misses_a_wake_after_an_acqrel_cas() {
    let name = "park_until_never_misses_a_wake_after_an_acqrel_cas";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let signal = Arc::new(Signal::new());
        let value = Arc::new(AtomicU64::new(0));
        let sleeper = {
            let (signal, value) = (Arc::clone(&signal), Arc::clone(&value));
            thread::spawn(move || sleep_until(&signal, || value.load(Ordering::Acquire) > 0))
        };
        let waker = thread::spawn(move || {
            value
                .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
                .unwrap();
            signal.wake();
        });
        waker.join().unwrap();
        record.record(sleeper.join().unwrap());
    });
    outcomes.require(name, &["parked and was woken", "never parked"]);
}

/// (c) The gate's skip path on its own: the state changes and `wake` runs
/// while nobody sleeps (so `wake` certainly loads a zero count and skips the
/// notify), and a sleeper that arrives later must see the state and return
/// without parking.
#[test]
fn a_wake_with_no_sleeper_skips_notify_and_a_later_sleeper_does_not_park() {
    check(
        "a_wake_with_no_sleeper_skips_notify_and_a_later_sleeper_does_not_park",
        2,
        || {
            let signal = Arc::new(Signal::new());
            let flag = Arc::new(AtomicBool::new(false));
            let waker = {
                let (signal, flag) = (Arc::clone(&signal), Arc::clone(&flag));
                thread::spawn(move || {
                    flag.store(true, Ordering::SeqCst);
                    signal.wake();
                })
            };
            waker.join().unwrap();
            let sleeper = thread::spawn(move || {
                assert!(signal.park_until(|| flag.load(Ordering::Acquire)));
            });
            sleeper.join().unwrap();
        },
    );
}

/// Two sleepers and one waker: `wake` notifies every registered listener
/// (`notify(usize::MAX)`), and the count stays right as sleepers come and go.
#[test]
fn one_wake_releases_two_sleepers() {
    let name = "one_wake_releases_two_sleepers";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let signal = Arc::new(Signal::new());
        let flag = Arc::new(AtomicBool::new(false));
        let sleepers: Vec<_> = (0..2)
            .map(|_| {
                let (signal, flag) = (Arc::clone(&signal), Arc::clone(&flag));
                thread::spawn(move || sleep_until(&signal, || flag.load(Ordering::Acquire)))
            })
            .collect();
        let waker = thread::spawn(move || {
            flag.store(true, Ordering::SeqCst);
            signal.wake();
        });
        waker.join().unwrap();
        let parked = sleepers
            .into_iter()
            .map(|s| s.join().unwrap())
            .filter(|outcome| *outcome == "parked and was woken")
            .count();
        record.record(format!("{parked} parked"));
    });
    outcomes.require(name, &["2 parked"]);
}

/// `Signal::wait_until`, the crate's one waiting loop (under loom its
/// `Backoff` never spins, so it parks at once), waits for a condition that
/// takes two state changes, each followed by a `wake`: a sleeper woken by
/// the first must check again, find its condition still false and park
/// again, and still be woken by the second. It returns only once the
/// condition holds.
#[test]
fn wait_until_parks_again_until_its_condition_holds() {
    let name = "wait_until_parks_again_until_its_condition_holds";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let signal = Arc::new(Signal::new());
        let value = Arc::new(AtomicU64::new(0));
        let sleeper = {
            let (signal, value) = (Arc::clone(&signal), Arc::clone(&value));
            thread::spawn(move || {
                signal.wait_until(|| value.load(Ordering::Acquire) >= 2);
                assert_eq!(
                    value.load(Ordering::Acquire),
                    2,
                    "returned before its condition held"
                );
                parks()
            })
        };
        let waker = thread::spawn(move || {
            for _ in 0..2 {
                value.fetch_add(1, Ordering::AcqRel);
                signal.wake();
            }
        });
        waker.join().unwrap();
        record.record(format!("parked {} times", sleeper.join().unwrap()));
    });
    outcomes.require(
        name,
        &["parked 0 times", "parked 1 times", "parked 2 times"],
    );
}

/// `Signal::wait_until_async`, the loop of the async subscription waits
/// (`SubscriberHandle::wait_processed`, `wait_caught_up`, `cancel` on the
/// memory store), polled by loom's `block_on`: it registers its listener
/// (`prepare`), checks again, and awaits the listener as a future. The
/// condition takes two state changes, each followed by a `wake`, so a
/// sleeper woken by the first must register again and still be woken by
/// the second. A lost wake-up leaves the future pending forever: a loom
/// deadlock.
#[test]
fn wait_until_async_awaits_again_until_its_condition_holds() {
    let name = "wait_until_async_awaits_again_until_its_condition_holds";
    let outcomes = Outcomes::default();
    let record = outcomes.clone();
    check(name, 2, move || {
        let signal = Arc::new(Signal::new());
        let value = Arc::new(AtomicU64::new(0));
        let sleeper = {
            let (signal, value) = (Arc::clone(&signal), Arc::clone(&value));
            thread::spawn(move || {
                let ready = loom::future::block_on(
                    signal.wait_until_async(|| value.load(Ordering::Acquire) >= 2),
                );
                assert!(ready, "no timeout under loom");
                assert_eq!(
                    value.load(Ordering::Acquire),
                    2,
                    "returned before its condition held"
                );
                parks()
            })
        };
        let waker = thread::spawn(move || {
            for _ in 0..2 {
                value.fetch_add(1, Ordering::AcqRel);
                signal.wake();
            }
        });
        waker.join().unwrap();
        record.record(format!("awaited {} times", sleeper.join().unwrap()));
    });
    outcomes.require(
        name,
        &["awaited 0 times", "awaited 1 times", "awaited 2 times"],
    );
}
