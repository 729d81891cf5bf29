#!/usr/bin/env bash
# The insert cost with the default clock, without and with the monotone
# `created_at` (the contract's rule 26), in one run: builds the harness
# `main.rs` as an example of three trees (a550304^: the clock read before
# the lock and stored as is; a550304: the commit that raises each
# transaction's time to the one before it; HEAD: main as it is now), then
# runs them in turn, ROUNDS times (default 7), each a fresh process doing
# INSERTS one-event inserts (default 2,000,000), and prints every timing
# and the median per tree, in nanoseconds per insert.
#
# Usage: perf/clock-ab/run.sh [ROUNDS] [INSERTS]
#
# BEFORE and AFTER (commits) replace a550304^ and a550304, to time another
# change of the insert path with the same loop (e.g. BEFORE=1ece72b
# AFTER=e6bf77f: before and after named streams).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
rounds="${1:-7}"
inserts="${2:-2000000}"
work="$(mktemp -d /tmp/hindsight-clock-ab.XXXXXX)"
trap 'git -C "$root" worktree remove --force "$work/before" >/dev/null 2>&1 || true;
      git -C "$root" worktree remove --force "$work/after" >/dev/null 2>&1 || true;
      git -C "$root" worktree remove --force "$work/head" >/dev/null 2>&1 || true;
      rm -rf "$work"' EXIT

declare -A commit=([before]="${BEFORE:-a550304^}" [after]="${AFTER:-a550304}" [head]=HEAD)
for tree in before after head; do
  git -C "$root" worktree add --detach --quiet "$work/$tree" "${commit[$tree]}"
  cp "$root/perf/clock-ab/main.rs" "$work/$tree/examples/clock_ab.rs"
  (cd "$work/$tree" && CARGO_TARGET_DIR="$work/target-$tree" \
    cargo build --quiet --release --example clock_ab)
done

declare -A times
for round in $(seq 1 "$rounds"); do
  for tree in before after head; do
    t="$("$work/target-$tree/release/examples/clock_ab" "$inserts")"
    times[$tree]="${times[$tree]:-} $t"
    echo "round $round $tree $t ns/insert"
  done
done
for tree in before after head; do
  median="$(printf '%s\n' ${times[$tree]} | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')"
  echo "median $tree (${commit[$tree]} = $(git -C "$root" rev-parse --short "${commit[$tree]}")): $median ns/insert"
done
