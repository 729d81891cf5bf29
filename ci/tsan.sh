#!/usr/bin/env bash
# Runs ThreadSanitizer over the concurrent tests: the integration suites
# tests/concurrency.rs, tests/subscriptions.rs and tests/regressions.rs
# (those present) and the library's unit tests, with std rebuilt
# instrumented (-Zbuild-std).
#
# Skipped (exit 0, with a line saying why) when nightly with rust-src is not
# installed and cannot be installed, or the host is not x86_64 Linux.
set -euo pipefail
IFS=$'\n\t'
cd "$(dirname "$0")"/..

skip() {
  echo "SKIPPED: tsan unavailable: $*"
  exit 0
}

target=x86_64-unknown-linux-gnu
[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] ||
  skip "ThreadSanitizer is only set up here for $target"
command -v rustup >/dev/null 2>&1 || skip "rustup is not installed"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  timeout 600 rustup toolchain install nightly --profile minimal >/dev/null 2>&1 ||
    skip "no nightly toolchain, and 'rustup toolchain install nightly' failed"
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
  timeout 600 rustup component add --toolchain nightly rust-src >/dev/null 2>&1 ||
    skip "'rustup component add --toolchain nightly rust-src' failed (-Zbuild-std needs it)"
fi

export RUSTFLAGS="${RUSTFLAGS:-} -Zsanitizer=thread"
export RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -Zsanitizer=thread"
# Any report fails the run (TSan's exit code 66 otherwise only at exit).
export TSAN_OPTIONS="${TSAN_OPTIONS:-} halt_on_error=1"

tests=(--lib)
for suite in concurrency subscriptions regressions; do
  [ -f "tests/$suite.rs" ] && tests+=(--test "$suite")
done

cargo +nightly test -Zbuild-std --target "$target" --target-dir target/tsan \
  "${tests[@]}" "$@"
