//! What every model shares: a bounded loom builder that reports how many
//! executions it explored and how long that took.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hindsight::{StreamId, Uuid};

/// Runs `model` under loom, then prints the number of executions loom
/// explored and the time taken (visible with `--nocapture`).
///
/// The preemption bound is `LOOM_MAX_PREEMPTIONS` (`ci/loom.sh` sets 2 by
/// default), but never less than `min_preemptions`: the bound a model needs
/// to reach the race it exists for (established by the mutation checks in
/// `MUTATIONS.md`). Every model is run by its own `#[test]`, one
/// `Builder::check` each.
pub fn check<F>(name: &str, min_preemptions: usize, model: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut builder = loom::model::Builder::new();
    let bound = builder.preemption_bound.unwrap_or(0).max(min_preemptions);
    builder.preemption_bound = Some(bound);
    // A plain std counter: loom calls the closure once per execution, one
    // execution at a time.
    let executions = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&executions);
    let start = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        model();
    });
    println!(
        "loom model {name}: {} executions explored in {:.2?} (preemption bound {bound})",
        executions.load(Ordering::Relaxed),
        start.elapsed(),
    );
}

/// A fixed stream id: loom needs every execution to make the same choices,
/// and `insert` orders streams by id.
#[allow(dead_code)] // not every model file uses it
pub fn stream(n: u128) -> StreamId {
    StreamId::from_uuid(Uuid::from_u128(n))
}

/// Which outcomes a model's executions reached, counted across all of them
/// (a plain std map outside loom's world). Loom explores a bounded subset
/// of the interleavings; a model that asserts a property "for every
/// execution" proves little if no execution reached the interesting case,
/// so each model also requires the outcomes that show the race happened.
#[derive(Clone, Default)]
#[allow(dead_code)] // not every model file uses it
pub struct Outcomes(Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>>);

#[allow(dead_code)] // not every model file uses it
impl Outcomes {
    /// Counts one execution that reached `outcome`.
    pub fn record(&self, outcome: impl Into<String>) {
        *self.0.lock().unwrap().entry(outcome.into()).or_default() += 1;
    }

    /// Prints the counts and panics unless every one of `required` was
    /// reached at least once.
    pub fn require(&self, name: &str, required: &[&str]) {
        let seen = self.0.lock().unwrap();
        println!("loom model {name}: outcomes {seen:?}");
        for outcome in required {
            assert!(
                seen.get(*outcome).copied().unwrap_or(0) > 0,
                "model {name} never reached outcome `{outcome}` (reached: {seen:?}): \
                 the race it checks was not explored"
            );
        }
    }
}
