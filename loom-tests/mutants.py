#!/usr/bin/env python3
"""Mutation checks of the loom models: does each model fail when the
ordering, fence or step it exists to protect is weakened or removed?

For every mutation below, copies the repository (without target/ and .git/)
to $MUTANTS_DIR/<id>/ (default /tmp/hindsight-mutants), applies one textual
change to one file of src/ (the exact old text must occur exactly once), and
runs every loom model of loom-tests/ against the copy, each in its own
process (a loom deadlock report aborts the test binary it happens in):

    RUSTFLAGS="--cfg loom" cargo test --release -p loom-tests \
        --target-dir $MUTANTS_DIR/target --test <file> -- --exact <model>

The repository itself is never modified. Prints one line per mutation and
writes $MUTANTS_DIR/results.json; loom's output for each mutant is kept in
$MUTANTS_DIR/<id>.log.

Usage: python3 loom-tests/mutants.py [ID ...]   (no ID: baseline + all)
       python3 loom-tests/mutants.py --table   (MUTATIONS.md's table, from results.json)
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.environ.get("MUTANTS_DIR", "/tmp/hindsight-mutants")
TIMEOUT = int(os.environ.get("MUTANT_TIMEOUT", "600"))
TEST_FILES = ["store", "log", "signal", "segments"]

# id, file, old text(s), new text(s), what the mutation breaks
MUTATIONS = [
    ("baseline", None, None, None, "no change: every model must pass"),
    # ---- log.rs: commit marker, fence, committed_len ----
    ("commit-no-fence", "src/log.rs",
     "        fence(Ordering::SeqCst);\n        log.watermark\n",
     "        log.watermark\n",
     "drop the fence(SeqCst) in Reservation::commit"),
    ("commit-fence-before-marker", "src/log.rs",
     ["        first.commit.store(len, Ordering::Release);\n",
      "        fence(Ordering::SeqCst);\n        log.watermark\n"],
     ["        fence(Ordering::SeqCst);\n        first.commit.store(len, Ordering::Release);\n",
      "        log.watermark\n"],
     "Reservation::commit issues its fence(SeqCst) before the marker store instead of after"),
    ("marker-store-relaxed", "src/log.rs",
     "first.commit.store(len, Ordering::Release);",
     "first.commit.store(len, Ordering::Relaxed);",
     "commit marker store Release -> Relaxed"),
    ("marker-load-relaxed", "src/log.rs",
     "let marker = slot.commit.load(Ordering::Acquire);",
     "let marker = slot.commit.load(Ordering::Relaxed);",
     "committed_len marker load Acquire -> Relaxed"),
    ("abandoned-counts-as-committed", "src/log.rs",
     "        if marker & ABANDONED != 0 {\n            0\n        } else {\n            marker\n        }",
     "        marker & !ABANDONED",
     "committed_len treats an abandoned range as committed"),
    # ---- watermark.rs ----
    ("watermark-get-relaxed", "src/watermark.rs",
     "        self.value.load(Ordering::Acquire)\n    }",
     "        self.value.load(Ordering::Relaxed)\n    }",
     "Watermark::get Acquire -> Relaxed"),
    ("advance-cas-relaxed", "src/watermark.rs",
     "                Ordering::AcqRel,\n                Ordering::Acquire,",
     "                Ordering::Relaxed,\n                Ordering::Relaxed,",
     "Watermark::advance CAS AcqRel/Acquire -> Relaxed/Relaxed"),
    ("advance-cas-release-only", "src/watermark.rs",
     "                Ordering::AcqRel,\n                Ordering::Acquire,",
     "                Ordering::Release,\n                Ordering::Relaxed,",
     "Watermark::advance CAS AcqRel/Acquire -> Release/Relaxed (drop the Acquire side)"),
    ("advance-initial-load-relaxed", "src/watermark.rs",
     "let mut current = self.value.load(Ordering::Acquire);",
     "let mut current = self.value.load(Ordering::Relaxed);",
     "Watermark::advance initial load Acquire -> Relaxed"),
    ("advance-single-step", "src/watermark.rs",
     "                    moved = true;\n                    current += len;\n",
     "                    moved = true;\n                    current += len;\n                    break;\n",
     "Watermark::advance stops after one range instead of helping over every committed range"),
    ("poison-no-wake", "src/watermark.rs",
     "        self.poisoned.store(true, Ordering::SeqCst);\n        self.signal.wake();",
     "        self.poisoned.store(true, Ordering::SeqCst);",
     "Watermark::poison does not wake the signal"),
    ("poison-store-relaxed", "src/watermark.rs",
     "self.poisoned.store(true, Ordering::SeqCst);",
     "self.poisoned.store(true, Ordering::Relaxed);",
     "Watermark::poison flag store SeqCst -> Relaxed (the fence in wake still follows it)"),
    # ---- signal.rs ----
    ("wake-no-fence", "src/signal.rs",
     "        fence(Ordering::SeqCst);\n        // Relaxed: ordered by the fence above.\n",
     "        // Relaxed: ordered by the fence above.\n",
     "drop the fence(SeqCst) in Signal::wake"),
    ("wake-fence-after-load", "src/signal.rs",
     "        fence(Ordering::SeqCst);\n        // Relaxed: ordered by the fence above.\n"
     "        if self.sleepers.load(Ordering::Relaxed) > 0 {\n",
     "        let sleepers = self.sleepers.load(Ordering::Relaxed);\n"
     "        fence(Ordering::SeqCst);\n        if sleepers > 0 {\n",
     "Signal::wake loads the sleeper count before its fence instead of after"),
    ("prepare-no-fence", "src/signal.rs",
     "        fence(Ordering::SeqCst);\n        Sleeper {",
     "        Sleeper {",
     "drop the fence(SeqCst) in Signal::prepare"),
    ("prepare-increment-relaxed", "src/signal.rs",
     "self.sleepers.fetch_add(1, Ordering::SeqCst);",
     "self.sleepers.fetch_add(1, Ordering::Relaxed);",
     "Signal::prepare sleeper increment SeqCst -> Relaxed (the fence still follows it)"),
    ("park-checks-before-registering", "src/signal.rs",
     "        let sleeper = self.prepare();\n        if ready() {\n            return true;\n        }\n",
     "        if ready() {\n            return true;\n        }\n        let sleeper = self.prepare();\n",
     "Signal::park_until checks the condition before registering, not after"),
    # ---- segments.rs ----
    ("install-cas-relaxed", "src/segments.rs",
     "            Ordering::AcqRel,\n            Ordering::Acquire,",
     "            Ordering::Relaxed,\n            Ordering::Relaxed,",
     "Segments::install CAS AcqRel/Acquire -> Relaxed/Relaxed"),
    ("install-cas-success-acquire-only", "src/segments.rs",
     "            Ordering::AcqRel,\n            Ordering::Acquire,",
     "            Ordering::Acquire,\n            Ordering::Acquire,",
     "Segments::install CAS success AcqRel -> Acquire (no Release: segment published unsynchronised)"),
    ("segments-get-relaxed", "src/segments.rs",
     "        let base = self.segments[segment].load(Ordering::Acquire);",
     "        let base = self.segments[segment].load(Ordering::Relaxed);",
     "Segments::get load Acquire -> Relaxed"),
    ("get-or-alloc-load-relaxed", "src/segments.rs",
     "let mut base = self.segments[segment].load(Ordering::Acquire);",
     "let mut base = self.segments[segment].load(Ordering::Relaxed);",
     "Segments::get_or_alloc load Acquire -> Relaxed"),
    ("install-loser-leaks", "src/segments.rs",
     "                unsafe { free_segment(fresh, Self::capacity(segment)) };\n",
     "                let _ = fresh;\n",
     "Segments::install: the CAS loser does not free its segment"),
    ("install-loser-keeps-its-segment", "src/segments.rs",
     "                unsafe { free_segment(fresh, Self::capacity(segment)) };\n                winner\n",
     "                let _ = winner;\n                fresh\n",
     "Segments::install: the CAS loser uses (and leaks) its own segment instead of the winner's"),
    # ---- stream.rs ----
    ("stream-len-store-relaxed", "src/stream.rs",
     "self.stream.len.store(len + count, Ordering::Release);",
     "self.stream.len.store(len + count, Ordering::Relaxed);",
     "Locked::append length store Release -> Relaxed"),
    ("stream-len-load-relaxed", "src/stream.rs",
     "let mut len = self.len.load(Ordering::Acquire);",
     "let mut len = self.len.load(Ordering::Relaxed);",
     "Stream::committed_len length load Acquire -> Relaxed"),
    ("stream-no-watermark-cut", "src/stream.rs",
     "while len > 0 && self.position(len - 1) >= watermark {",
     "while len > 0 && self.position(len - 1) >= watermark && false {",
     "Stream::committed_len does not cut positions at the watermark"),
    ("stream-cut-off-by-one", "src/stream.rs",
     "while len > 0 && self.position(len - 1) >= watermark {",
     "while len > 0 && self.position(len - 1) > watermark {",
     "Stream::committed_len cuts at > watermark instead of >="),
    ("stream-lock-excludes-nothing", "src/stream.rs",
     "_guard: sync::lock(&self.lock),",
     "_guard: sync::lock(Box::leak(Box::new(Mutex::new(())))),",
     "Stream::lock locks a fresh mutex: no mutual exclusion between writers of a stream"),
    ("read-stream-len-before-watermark", "src/read.rs",
     "        let watermark = log.committed();\n"
     "        let len = stream.as_ref().map_or(0, |s| s.committed_len(watermark));\n",
     "        let len_hint = stream.as_ref().map_or(0, |s| s.committed_len(u64::MAX));\n"
     "        let watermark = log.committed();\n"
     "        let len = stream.as_ref().map_or(0, |s| s.committed_len(watermark)).min(len_hint);\n",
     "ReadStream::new loads the stream length before the watermark"),
    ("cursor-len-before-watermark", "src/subscription.rs",
     ["        let watermark = log.committed();\n        match self.selector.stream {\n",
      "let len = stream.committed_len(watermark);"],
     ["        let len_hint = self.stream.as_ref().map(|s| s.committed_len(u64::MAX));\n"
      "        let watermark = log.committed();\n        match self.selector.stream {\n",
      "let len = stream.committed_len(watermark).min(len_hint.unwrap_or(u64::MAX));"],
     "a one-stream subscription's cursor loads the stream length before the watermark"),
    # ---- transaction.rs / store.rs ----
    ("no-lock-order", "src/transaction.rs",
     "        appends.sort_by_key(|append| append.stream);\n",
     "",
     "Transaction::into_normalized does not sort appends: streams locked in builder order"),
    ("check-against-committed-head", "src/store.rs",
     "let found = stream.as_ref().and_then(Locked::head);",
     "let found = stream.as_ref().and_then(|_| index.get(append.stream))"
     ".and_then(|s| s.committed_head(log.committed()));",
     "expectations checked against the committed head, not the recorded (reserved) one"),
    ("conflict-no-wait", "src/store.rs",
     "            log.wait_committed(seen_end)\n                .map_err(|_| InsertError::Poisoned)?;\n",
     "",
     "a failed (or pure) check returns without waiting for the head it saw to commit"),
    ("pure-check-takes-no-lock", "src/store.rs",
     "                let inert = a.events.is_empty() && a.expected == ExpectedVersion::Any;\n"
     "                (!inert).then(|| index.get_or_create(a.stream))\n",
     "                let _ = ExpectedVersion::Any;\n"
     "                if a.events.is_empty() { index.get(a.stream) } else { Some(index.get_or_create(a.stream)) }\n",
     "a zero-event expectation on a missing stream takes no lock (the bug fixed in 8756c15)"),
    ("wait-for-ignores-poison", "src/watermark.rs",
     ".park_until(|| ready() || self.is_poisoned(), None);",
     ".park_until(|| ready(), None);",
     "Watermark::wait_for's re-check after registering ignores the poison flag"),
    ("subscription-ignores-poison", "src/subscription.rs",
     "|| watermark.get() > passed || watermark.is_poisoned() || stop(),",
     "|| watermark.get() > passed || stop(),",
     "Subscription::wait_more's re-check after registering ignores the poison flag"),
    ("insert-no-wait", "src/store.rs",
     "        log.wait_committed(start + total)\n            .map_err(|_| InsertError::Poisoned)?;\n",
     "",
     "insert returns without waiting for the watermark (no read-your-writes)"),
]


def copy_repo(dest):
    if os.path.exists(dest):
        shutil.rmtree(dest)

    def ignore(directory, names):
        if os.path.abspath(directory) == ROOT:
            return [n for n in names if n in ("target", ".git")]
        return [n for n in names if n == "target"]

    # `shutil.copy` gives every file a fresh mtime: all mutants share one
    # target dir (and the same artifact names), so cargo must see the copy's
    # sources as newer than the previous mutant's build.
    shutil.copytree(ROOT, dest, ignore=ignore, copy_function=shutil.copy)


def mutate(dest, path, olds, news):
    """Replaces each old text (which must occur exactly once) by its new one."""
    if isinstance(olds, str):
        olds, news = [olds], [news]
    full = os.path.join(dest, path)
    with open(full) as f:
        text = f.read()
    for old, new in zip(olds, news):
        count = text.count(old)
        if count != 1:
            raise SystemExit(f"{path}: expected the old text exactly once, found {count}:\n{old}")
        text = text.replace(old, new)
    with open(full, "w") as f:
        f.write(text)


def cargo(dest, args, timeout):
    # The same bound as ci/loom.sh: LOOM_MAX_PREEMPTIONS, default 2 (each
    # model raises it to the minimum it declares).
    env = dict(os.environ, RUSTFLAGS="--cfg loom",
               LOOM_MAX_PREEMPTIONS=os.environ.get("LOOM_MAX_PREEMPTIONS", "2"))
    command = ["cargo", "test", "--release", "-p", "loom-tests",
               "--target-dir", os.path.join(WORK, "target")] + args
    try:
        out = subprocess.run(command, cwd=dest, env=env, capture_output=True,
                             text=True, timeout=timeout)
        return out.returncode, out.stdout + out.stderr
    except subprocess.TimeoutExpired as e:
        output = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
        return None, output + f"\nTIMEOUT after {timeout}s\n"


def run(dest, log_path):
    """Builds the models against `dest`, then runs each model in its own
    process (a loom deadlock report aborts the whole test binary)."""
    start = time.time()
    log = open(log_path, "w")
    code, output = cargo(dest, ["--no-run"], TIMEOUT)
    log.write(output)
    if code != 0:
        return {}, {}, False, time.time() - start
    results, reasons = {}, {}
    for binary in TEST_FILES:
        _, listing = cargo(dest, ["--test", binary, "--", "--list"], TIMEOUT)
        names = re.findall(r"^(\S+): test$", listing, re.M)
        for name in names:
            args = ["--test", binary, "--", "--exact", name, "--test-threads=1"]
            code, output = cargo(dest, args, TIMEOUT)
            log.write(f"\n==== {binary}::{name} (exit {code}) ====\n{output}")
            results[name] = "ok" if code == 0 else ("TIMEOUT" if code is None else "FAILED")
            if code != 0:
                match = re.search(r"panicked at [^\n]*:\n([^\n]*)", output)
                reasons[name] = match.group(1).strip() if match else f"exit {code}"
    log.close()
    return results, reasons, True, time.time() - start


# Short names of the models, as used in MUTATIONS.md.
MODELS = {
    "two_writers_committing_out_of_order_both_return_and_the_watermark_covers_both": "a",
    "a_reader_sees_all_or_nothing_of_a_concurrent_transaction": "b1",
    "a_reader_racing_two_inserts_sees_whole_published_transactions": "b2",
    "a_pull_subscription_blocked_in_next_receives_a_concurrent_insert": "c1",
    "an_async_subscription_receives_a_concurrent_insert": "c2",
    "a_stream_subscription_blocked_in_next_receives_only_its_stream": "c3",
    "opposite_builder_orders_over_two_streams_never_deadlock_and_versions_follow_positions": "d",
    "exactly_one_of_two_writers_expecting_the_same_version_wins": "f",
    "a_stream_read_racing_an_insert_sees_only_committed_published_positions": "g1",
    "a_no_stream_check_is_ordered_with_the_write_that_creates_the_stream": "g2",
    "poisoning_wakes_a_subscription_blocked_in_next": "g3",
    "two_committers_never_strand_the_watermark": "L1",
    "a_reader_racing_two_committers_reads_only_published_slots": "L2",
    "three_committers_hand_the_watermark_along": "L3",
    "abandoning_a_reservation_poisons_the_log_and_wakes_a_waiting_writer": "L4",
    "park_until_never_misses_a_wake_after_a_seqcst_store": "S1",
    "park_until_never_misses_a_wake_after_an_acqrel_cas": "S2",
    "a_wake_with_no_sleeper_skips_notify_and_a_later_sleeper_does_not_park": "S3",
    "one_wake_releases_two_sleepers": "S4",
    "racing_get_or_alloc_share_one_segment_and_free_the_losers": "E1",
    "racing_get_or_alloc_on_atomic_slots_agree_on_the_segment": "E2",
}


def short_reason(reason):
    reason = reason.replace("`", "'")
    if reason.startswith("deadlock"):
        return "deadlock"
    if reason.startswith("Causality violation"):
        return reason.rstrip(".")
    match = re.match(r"assertion 'left == right' failed(: (.*))?", reason)
    if match:
        message = re.split(r": \[| 0000", match.group(2) or "")[0]
        return "assert_eq failed" + (f": {message}" if message else "")
    return reason[:70]


def table():
    with open(os.path.join(WORK, "results.json")) as f:
        summary = json.load(f)
    order = list(MODELS.values())
    print("| Mutation | File | Change | Models that fail | Loom's report |")
    print("|---|---|---|---|---|")
    for mid, _, _, _, _ in MUTATIONS:
        if mid == "baseline" or mid not in summary:
            continue
        v = summary[mid]
        failed = sorted((MODELS.get(n, n) for n in v["failed"]), key=lambda a: order.index(a) if a in order else 99)
        reasons = sorted({short_reason(r) for r in v["reasons"].values()})
        print(f"| `{mid}` | `{v['file']}` | {v['what']} | "
              f"{', '.join(failed) if failed else '**not caught**'} | {'; '.join(reasons) or '-'} |")


def main():
    if sys.argv[1:] == ["--table"]:
        table()
        return
    wanted = set(sys.argv[1:])
    os.makedirs(WORK, exist_ok=True)
    summary_path = os.path.join(WORK, "results.json")
    summary = {}
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
    for mid, path, old, new, what in MUTATIONS:
        if wanted and mid not in wanted:
            continue
        dest = os.path.join(WORK, mid)
        copy_repo(dest)
        if path:
            mutate(dest, path, old, new)
        results, reasons, compiled, seconds = run(dest, os.path.join(WORK, f"{mid}.log"))
        failed = sorted(n for n, s in results.items() if s != "ok")
        summary[mid] = {
            "file": path, "what": what, "compiled": compiled, "seconds": round(seconds, 1),
            "passed": sorted(n for n, s in results.items() if s == "ok"),
            "failed": failed, "reasons": {n: str(reasons.get(n, "")) for n in failed},
        }
        status = "DID NOT COMPILE" if not compiled else (
            f"caught by {len(failed)}: " + ", ".join(failed) if failed else "NOT CAUGHT")
        print(f"[{mid}] {what}: {status} ({seconds:.0f}s)", flush=True)
        with open(summary_path, "w") as f:
            json.dump(summary, f, indent=1)
        shutil.rmtree(dest)


if __name__ == "__main__":
    main()
