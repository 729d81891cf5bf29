#!/usr/bin/env bash
# Runs the loom models of loom-tests/ against the crate's real code.
#
# Every atomic, cell and lock of the crate goes through src/sync.rs, which
# switches to loom under `--cfg loom`; the models (loom-tests/tests/*.rs)
# drive `MemoryStore`, `Subscription`, stream handles and the stream index's
# entry removal and, through `hindsight::loom_api`, the log (both commit
# paths), watermark, signal and segments directly, and the reclamation of
# segments of removed events (pins against retirement and free, removal
# counts, epoch guards of helpers, a transaction's metadata shared by two
# segments). Which weakened ordering each model catches is in
# loom-tests/MUTATIONS.md.
#
# Usage: ci/loom.sh [test name filter]
# Environment: LOOM_MAX_PREEMPTIONS (default 2; a model never runs below the
# bound it declares), and loom's own LOOM_LOG, LOOM_LOCATION,
# LOOM_CHECKPOINT_FILE, LOOM_MAX_BRANCHES to investigate a failure.
set -euo pipefail
IFS=$'\n\t'
cd "$(dirname "$0")"/..

export RUSTFLAGS="${RUSTFLAGS:-} --cfg loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"

# --cfg loom changes every crate's build: keep it out of the normal cache.
# One test thread, so that each model's printed count and time are its own.
cargo test -p loom-tests --release --target-dir target/loom \
  -- --nocapture --test-threads=1 "$@"
