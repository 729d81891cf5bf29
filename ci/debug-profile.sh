#!/usr/bin/env bash
# What a user's build profile does to hindsight in their own tests.
#
# `MemoryStore<E>` is generic, so most of the store is compiled in the
# user's crate, at the user's opt-level: `cargo test` (opt-level 0) runs it
# many times slower than `cargo test --release`, and a
# `[profile.dev.package."*"]` override of dependencies barely helps. This
# script measures it as a user would meet it: it creates a throwaway crate
# in a temporary directory that path-depends on this repository, with one
# test that inserts $INSERTS one-event transactions into a `MemoryStore` and
# reads them back, and for each build profile below it times
#   - a clean build (`cargo test --no-run`, dependencies included),
#   - a rebuild after the test file changed (the edit-test loop),
#   - the test itself, $RUNS times (the median is reported),
# then prints a table. The README's "In your tests" quotes its figures.
#
# Usage: bash ci/debug-profile.sh            (about 5 minutes on 2 cores)
#        INSERTS=50000 RUNS=1 bash ci/debug-profile.sh   (quick)
#        KEEP=1 bash ci/debug-profile.sh     (keep the temporary crate)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
inserts="${INSERTS:-200000}"
runs="${RUNS:-3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/hindsight-debug-profile.XXXXXX")"
if [ -z "${KEEP:-}" ]; then
  trap 'rm -rf "$work"' EXIT
else
  echo "keeping $work"
fi

# The variants: a name, the cargo flags, and the profile sections appended to
# the user's Cargo.toml. `cargo test` builds with the `test` profile, which
# inherits `dev` (and its package overrides).
names=(
  "cargo test --release"
  "cargo test (opt-level 0, the default)"
  "[profile.test] opt-level = 1"
  "[profile.test] opt-level = 2"
  "[profile.dev.package.hindsight] opt-level = 3"
  "[profile.dev.package.\"*\"] opt-level = 3"
)
flags=("--release" "" "" "" "" "")
profiles=(
  ""
  ""
  $'[profile.test]\nopt-level = 1'
  $'[profile.test]\nopt-level = 2'
  $'[profile.dev.package.hindsight]\nopt-level = 3'
  $'[profile.dev.package."*"]\nopt-level = 3'
)

mkdir -p "$work/tests"
# The same dependency versions as the repository's own build.
cp "$repo/Cargo.lock" "$work/Cargo.lock"
cat > "$work/tests/inserts.rs" <<'EOF'
use hindsight::{ExpectedVersion, MemoryStore, Start, StreamId, Transaction};
use std::time::Instant;

#[test]
fn inserts_then_reads() {
    let n: u64 = std::env::var("INSERTS").unwrap().parse().unwrap();
    let store = MemoryStore::new();
    let streams: Vec<StreamId> = (0..100).map(|_| StreamId::new()).collect();

    let start = Instant::now();
    for i in 0..n {
        let stream = streams[(i % 100) as usize];
        store.insert(Transaction::single(stream, ExpectedVersion::Any, i)).unwrap();
    }
    let insert = start.elapsed();

    let start = Instant::now();
    let mut next = 0;
    for event in store.read_all(Start::Beginning) {
        assert_eq!(*event.payload(), next);
        next += 1;
    }
    assert_eq!(next, n);
    let read = start.elapsed();

    println!(
        "RESULT {} {}",
        insert.as_nanos() / u128::from(n),
        read.as_nanos() / u128::from(n)
    );
}
EOF

now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

rows=()
for i in "${!names[@]}"; do
  cat > "$work/Cargo.toml" <<EOF
[package]
name = "user-tests"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
hindsight = { path = "$repo" }

${profiles[$i]}
EOF
  export CARGO_TARGET_DIR="$work/target-$i"
  # shellcheck disable=SC2086 # empty flags expand to nothing
  set -- ${flags[$i]}
  echo "== ${names[$i]}" >&2

  t0="$(now)"
  (cd "$work" && cargo test -q "$@" --no-run 2>/dev/null)
  t1="$(now)"
  touch "$work/tests/inserts.rs"
  (cd "$work" && cargo test -q "$@" --no-run 2>/dev/null)
  t2="$(now)"

  insert_ns=()
  read_ns=()
  for _ in $(seq "$runs"); do
    line="$(cd "$work" && INSERTS="$inserts" cargo test -q "$@" -- --nocapture 2>/dev/null | grep '^RESULT')"
    insert_ns+=("$(echo "$line" | awk '{ print $2 }')")
    read_ns+=("$(echo "$line" | awk '{ print $3 }')")
  done
  insert="$(printf '%s\n' "${insert_ns[@]}" | median)"
  read="$(printf '%s\n' "${read_ns[@]}" | median)"
  rows+=("| ${names[$i]} | $(seconds "$t0" "$t1") | $(seconds "$t1" "$t2") | $(awk -v n="$insert" 'BEGIN { printf "%.2f", n / 1000 }') | $read |")
done

echo
echo "$inserts one-event inserts into a MemoryStore<u64> from a user's test, then read_all;"
echo "median of $runs runs; $(nproc) cores; $(rustc --version)"
echo
echo "| build | clean build (s) | rebuild after a test edit (s) | µs per insert | ns per event read |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
