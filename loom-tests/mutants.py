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
       MUTANT_FILES=reclaim python3 loom-tests/mutants.py ID...   (only those model files)
       python3 loom-tests/mutants.py --table   (MUTATIONS.md's two tables, from results.json)
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
TEST_FILES = ["store", "index", "log", "signal", "segments", "stream", "reclaim"]
# MUTANT_FILES=reclaim,log runs only those model files (all by default).
if os.environ.get("MUTANT_FILES"):
    TEST_FILES = os.environ["MUTANT_FILES"].split(",")

# id, file, old text(s), new text(s), what the mutation breaks
MUTATIONS = [
    ("baseline", None, None, None, "no change: every model must pass"),
    # ---- log.rs: the slow path of Reservation::commit, committed_len ----
    ("commit-no-fence", "src/log.rs",
     "            fence(Ordering::SeqCst);\n            log.watermark.advance(",
     "            log.watermark.advance(",
     "drop the fence(SeqCst) of Reservation::commit's slow path"),
    ("commit-fence-before-marker", "src/log.rs",
     ["        } else {\n            // Release: pairs with the Acquire load in `committed_len`;\n",
      "            fence(Ordering::SeqCst);\n            log.watermark.advance("],
     ["        } else {\n            fence(Ordering::SeqCst);\n"
      "            // Release: pairs with the Acquire load in `committed_len`;\n",
      "            log.watermark.advance("],
     "Reservation::commit's slow path issues its fence(SeqCst) before the marker store instead of after"),
    ("marker-store-relaxed", "src/log.rs",
     "            // the watermark.\n            first.marker.store(marker, Ordering::Release);",
     "            // the watermark.\n            first.marker.store(marker, Ordering::Relaxed);",
     "slow path's commit marker store Release -> Relaxed"),
    ("marker-load-relaxed", "src/log.rs",
     "slot.marker(Ordering::Acquire).committed_len()",
     "slot.marker(Ordering::Relaxed).committed_len()",
     "committed_len marker load Acquire -> Relaxed"),
    ("abandoned-counts-as-committed", "src/log.rs",
     "slot.marker(Ordering::Acquire).committed_len().unwrap_or(0)",
     "slot.marker(Ordering::Acquire).range_len().unwrap_or(0)",
     "committed_len treats an abandoned range as committed"),
    # ---- log.rs / watermark.rs: the commit fast path ----
    ("fast-path-no-fence", "src/log.rs",
     "            // fence of every sleeper registering on the signal.\n            fence(Ordering::SeqCst);\n",
     "            // fence of every sleeper registering on the signal.\n",
     "drop the fence(SeqCst) of the fast path (shared by the stranded-commit and signal handshakes)"),
    ("fast-path-marker-before-publish", "src/log.rs",
     "            log.watermark.publish(end, created_at);\n            first.marker.store(marker, Ordering::Release);\n",
     "            first.marker.store(marker, Ordering::Release);\n            log.watermark.publish(end, created_at);\n",
     "the fast path stores its marker before Watermark::publish instead of after"),
    ("fast-path-marker-relaxed", "src/log.rs",
     "            log.watermark.publish(end, created_at);\n            first.marker.store(marker, Ordering::Release);\n",
     "            log.watermark.publish(end, created_at);\n            first.marker.store(marker, Ordering::Relaxed);\n",
     "the fast path's marker store (after publish) Release -> Relaxed"),
    ("publish-relaxed", "src/watermark.rs",
     "self.line.value.store(end, Ordering::Release);",
     "self.line.value.store(end, Ordering::Relaxed);",
     "Watermark::publish store Release -> Relaxed"),
    ("is-at-relaxed", "src/watermark.rs",
     "self.line.value.load(Ordering::Acquire) == position",
     "self.line.value.load(Ordering::Relaxed) == position",
     "Watermark::is_at load Acquire -> Relaxed"),
    ("fast-path-no-stranded-check", "src/log.rs",
     "            if log.committed_len(end) != 0 {\n                log.watermark.advance(committed);\n            }\n",
     "",
     "the fast path does not check committed_len(end) after its fence (no help for a writer behind)"),
    ("fast-path-no-wake", "src/log.rs",
     "            log.watermark.signal.wake_fenced();\n",
     "",
     "the fast path wakes nobody (no wake_fenced)"),
    ("fast-path-wake-before-fence", "src/log.rs",
     ["            fence(Ordering::SeqCst);\n            // A writer behind us",
      "            }\n            log.watermark.signal.wake_fenced();\n"],
     ["            log.watermark.signal.wake_fenced();\n            fence(Ordering::SeqCst);\n"
      "            // A writer behind us",
      "            }\n"],
     "the fast path's wake_fenced (its sleeper-count load) runs before the fence instead of after"),
    ("fast-path-check-before-fence", "src/log.rs",
     "            fence(Ordering::SeqCst);\n            // A writer behind us may have committed while the watermark was\n"
     "            // below its range, and stopped: carry the watermark over it.\n"
     "            if log.committed_len(end) != 0 {\n                log.watermark.advance(committed);\n            }\n",
     "            // A writer behind us may have committed while the watermark was\n"
     "            // below its range, and stopped: carry the watermark over it.\n"
     "            if log.committed_len(end) != 0 {\n                log.watermark.advance(committed);\n            }\n"
     "            fence(Ordering::SeqCst);\n",
     "the fast path checks committed_len(end) before its fence (the fence still precedes wake_fenced)"),
    ("fast-path-always", "src/log.rs",
     "        if log.watermark.is_at(start) {\n",
     "        if { let _ = log.watermark.is_at(start); true } {\n",
     "every commit takes the fast path, wherever the watermark is"),
    ("fast-path-never", "src/log.rs",
     "        if log.watermark.is_at(start) {\n",
     "        if { let _ = log.watermark.is_at(start); false } {\n",
     "no commit takes the fast path (every commit marker, fence, advance, wake)"),
    ("advance-wake-unfenced", "src/watermark.rs",
     "        if moved {\n            self.signal.wake();\n",
     "        if moved {\n            self.signal.wake_fenced();\n",
     "Watermark::advance wakes with wake_fenced (no fence between its CAS and the sleeper-count load)"),
    ("committed-len-next-inverted", "src/log.rs",
     "position >= self.next.load(Ordering::Relaxed)",
     "position < self.next.load(Ordering::Relaxed)",
     "committed_len returns 0 for reserved positions (below next) instead of unreserved ones"),
    ("committed-len-next-off-by-one", "src/log.rs",
     "position >= self.next.load(Ordering::Relaxed)",
     "position + 1 >= self.next.load(Ordering::Relaxed)",
     "committed_len returns 0 for the last reserved position too (position + 1 >= next)"),
    ("committed-len-next-without-page-check", "src/log.rs",
     "if slot.may_start_a_fresh_page() && position >= self.next",
     "if position >= self.next",
     "committed_len reads next for every slot, not only at a page start"),
    ("committed-len-no-next-check", "src/log.rs",
     "        if slot.may_start_a_fresh_page() && position >= self.next.load(Ordering::Relaxed) {\n"
     "            return 0;\n        }\n",
     "",
     "committed_len never reads next (reads the marker of unreserved slots)"),
    # ---- watermark.rs ----
    ("watermark-get-relaxed", "src/watermark.rs",
     "        self.line.value.load(Ordering::Acquire)\n    }",
     "        self.line.value.load(Ordering::Relaxed)\n    }",
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
     "let mut current = self.line.value.load(Ordering::Acquire);",
     "let mut current = self.line.value.load(Ordering::Relaxed);",
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
     "        fence(Ordering::SeqCst);\n        self.wake_fenced();\n",
     "        self.wake_fenced();\n",
     "drop the fence(SeqCst) in Signal::wake"),
    ("wake-fence-after-load", "src/signal.rs",
     "        fence(Ordering::SeqCst);\n        self.wake_fenced();\n",
     "        let sleepers = self.sleepers.load(Ordering::Relaxed);\n"
     "        fence(Ordering::SeqCst);\n"
     "        if sleepers > 0 {\n            self.event.notify(usize::MAX);\n        }\n",
     "Signal::wake loads the sleeper count before its fence instead of after"),
    ("prepare-no-fence", "src/signal.rs",
     "        fence(Ordering::SeqCst);\n        listener\n",
     "        listener\n",
     "drop the fence(SeqCst) in Signal::prepare (its registration half, register)"),
    ("prepare-increment-relaxed", "src/signal.rs",
     "self.sleepers.fetch_add(1, Ordering::SeqCst);",
     "self.sleepers.fetch_add(1, Ordering::Relaxed);",
     "Signal::prepare sleeper increment SeqCst -> Relaxed (the fence still follows it)"),
    ("park-checks-before-registering", "src/signal.rs",
     "        let sleeper = self.prepare();\n        if ready() {\n            return true;\n        }\n",
     "        if ready() {\n            return true;\n        }\n        let sleeper = self.prepare();\n",
     "Signal::park_until checks the condition before registering, not after"),
    ("wait-until-parks-without-recheck", "src/signal.rs",
     "                self.park_until(&ready, deadline);",
     "                self.prepare().wait(deadline);",
     "Signal::wait_until registers and parks without checking its condition after registering"),
    ("wait-until-returns-after-park", "src/signal.rs",
     "                self.park_until(&ready, deadline);",
     "                return self.park_until(&ready, deadline);",
     "Signal::wait_until returns after one park, without checking its condition again"),
    ("wait-until-async-checks-before-registering", "src/signal.rs",
     "            let mut sleeper = self.prepare();\n            if ready() {\n                return true;\n            }\n",
     "            if ready() {\n                return true;\n            }\n            let mut sleeper = self.prepare();\n",
     "Signal::wait_until_async checks its condition before registering, not after"),
    # ---- subscription/stream.rs: the Stream's wait ----
    ("stream-keeps-registration-without-recheck", "src/subscription/stream.rs",
     "                    if !cursor.may_have_more(&store.inner) && !watermark.is_poisoned() {\n                        self.sleeper = Some(sleeper);\n                    }",
     "                    self.sleeper = Some(sleeper);\n                    return Poll::Pending;",
     "SubscriptionStream's poll registers and returns Pending without checking for more events again"),
    ("stream-poll-without-waker", "src/subscription/stream.rs",
     "                Some(sleeper) => match sleeper.poll_notified(cx) {",
     "                Some(sleeper) => match sleeper.poll_notified(&mut Context::from_waker(std::task::Waker::noop())) {",
     "a later poll of a registered SubscriptionStream does not register its own task's waker"),
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
     "        let base = self.base(segment)?;\n        // SAFETY: a non-null pointer",
     "        let base = self.segments[segment].load(Ordering::Relaxed);\n"
     "        let base = (!base.is_null()).then_some(base)?;\n        // SAFETY: a non-null pointer",
     "Segments::get load Acquire -> Relaxed"),
    ("segments-run-relaxed", "src/segments.rs",
     "        let base = self.base(segment)?;\n        // SAFETY: as in `get`, `base` points",
     "        let base = self.segments[segment].load(Ordering::Relaxed);\n"
     "        let base = (!base.is_null()).then_some(base)?;\n        // SAFETY: as in `get`, `base` points",
     "Segments::run load Acquire -> Relaxed"),
    ("get-or-alloc-load-relaxed", "src/segments.rs",
     "        let base = match self.base(segment) {\n            Some(base) => base,\n"
     "            None => self.install(segment),\n        };\n        // SAFETY: as in `get`; `install`",
     "        let base = match Some(self.segments[segment].load(Ordering::Relaxed)).filter(|b| !b.is_null()) {\n"
     "            Some(base) => base,\n"
     "            None => self.install(segment),\n        };\n        // SAFETY: as in `get`; `install`",
     "Segments::get_or_alloc load Acquire -> Relaxed"),
    ("run-or-alloc-load-relaxed", "src/segments.rs",
     "        let base = match self.base(segment) {\n            Some(base) => base,\n"
     "            None => self.install(segment),\n        };\n        // SAFETY: as in `run`; `install`",
     "        let base = match Some(self.segments[segment].load(Ordering::Relaxed)).filter(|b| !b.is_null()) {\n"
     "            Some(base) => base,\n"
     "            None => self.install(segment),\n        };\n        // SAFETY: as in `run`; `install`",
     "Segments::run_or_alloc load Acquire -> Relaxed (the writers' path)"),
    ("install-loser-leaks", "src/segments.rs",
     "                unsafe { free_segment(fresh, Self::capacity(segment)) };\n",
     "                let _ = fresh;\n",
     "Segments::install: the CAS loser does not free its segment"),
    ("install-loser-keeps-its-segment", "src/segments.rs",
     "                unsafe { free_segment(fresh, Self::capacity(segment)) };\n                winner\n",
     "                let _ = winner;\n                fresh\n",
     "Segments::install: the CAS loser uses (and leaks) its own segment instead of the winner's"),
    # ---- stream.rs: positions and locks ----
    ("stream-len-store-relaxed", "src/stream.rs",
     "self.stream.len.store(len + count, Ordering::Release);",
     "self.stream.len.store(len + count, Ordering::Relaxed);",
     "Locked::append length store Release -> Relaxed (the multi-event path)"),
    ("stream-len-store-one-relaxed", "src/stream.rs",
     "self.stream.len.store(len + 1, Ordering::Release);",
     "self.stream.len.store(len + 1, Ordering::Relaxed);",
     "Locked::append length store Release -> Relaxed (the one-event path)"),
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
    # ---- stream.rs: removal of unused index entries ----
    ("remove-ignores-users", "src/stream.rs",
     "let alone = Arc::strong_count(stream) == 1;",
     "let alone = Arc::strong_count(stream) >= 1;",
     "StreamIndex::remove_if_unused removes an empty entry even while others hold it (no strong_count == 1)"),
    ("remove-ignores-events", "src/stream.rs",
     "            alone && stream.is_empty()\n",
     "            alone\n",
     "StreamIndex::remove_if_unused removes an unused entry even if it holds events (no is_empty)"),
    ("remove-no-fence", "src/stream.rs",
     "            fence(Ordering::Acquire);\n            alone && stream.is_empty()\n",
     "            alone && stream.is_empty()\n",
     "StreamIndex::remove_if_unused without its fence(Acquire) between the count and the emptiness check"),
    ("release-never-removes", "src/stream.rs",
     "        drop(stream);\n        self.remove_if_unused(id);\n",
     "        drop(stream);\n        let _ = id;\n",
     "StreamIndex::release never removes an entry (failed inserts, pure checks, unused handles leave entries)"),
    ("failed-one-stream-insert-keeps-entry", "src/store.rs",
     "                index.remove_if_unused(id);\n",
     "",
     "a failed one-stream insert does not remove the entry it may have created"),
    # ---- read.rs / subscription/ ----
    ("read-stream-len-before-watermark", "src/read.rs",
     "        let watermark = inner.log.watermark.get();\n"
     "        let found = inner.streams.with(id, |stream| {\n"
     "            (StreamPtr::new(stream), stream.committed_len(watermark))\n",
     "        let len_hint = inner.streams.with(id, |s| s.committed_len(u64::MAX)).unwrap_or(0);\n"
     "        let watermark = inner.log.watermark.get();\n"
     "        let found = inner.streams.with(id, |stream| {\n"
     "            (StreamPtr::new(stream), stream.committed_len(watermark).min(len_hint))\n",
     "ReadStream::new loads the stream length before the watermark"),
    ("cursor-len-before-watermark", "src/subscription/cursor.rs",
     ["    passed: u64,\n}\n",
      "            passed: first,\n",
      "        let watermark = inner.log.watermark.get();\n        self.loaded = true;\n",
      "let len = stream.committed_len(self.end);"],
     ["    passed: u64,\n    len_hint: u64,\n}\n",
      "            passed: first,\n            len_hint: u64::MAX,\n",
      "        self.len_hint = match self.pin.as_deref() {\n"
      "            Some(stream) => stream.committed_len(u64::MAX),\n"
      "            None => u64::MAX,\n        };\n"
      "        let watermark = inner.log.watermark.get();\n        self.loaded = true;\n",
      "let len = stream.committed_len(self.end).min(self.len_hint);"],
     "a one-stream subscription's cursor loads the stream length before the watermark"),
    ("subscription-ignores-poison", "src/subscription/mod.rs",
     ".wait_until(|| moved() || watermark.is_poisoned() || stop(), deadline);",
     ".wait_until(|| moved() || stop(), deadline);",
     "Subscription::wait_more's wait condition ignores the poison flag"),
    # ---- transaction.rs / store.rs ----
    ("no-lock-order", "src/transaction.rs",
     "        appends.sort_by_key(|append| append.stream);\n",
     "",
     "Transaction::into_normalized does not sort appends: streams locked in builder order"),
    ("check-against-committed-head", "src/store.rs",
     ["            let found = locked.head();\n",
      "let (mismatches, seen) = check(&appends, &locked);",
      "    locked: &[Option<Locked<'_>>],\n) -> (Vec<VersionMismatch>, Option<StreamHead>) {",
      "    for (append, stream) in appends.iter().zip(locked) {\n"
      "        let found = stream.as_ref().and_then(Locked::head);\n"],
     ["            let found = stream.committed_head(self.inner.log.watermark.get());\n",
      "let (mismatches, seen) = check(&appends, &locked, streams, self.inner.log.watermark.get());",
      "    locked: &[Option<Locked<'_>>],\n    streams: &[Option<Arc<Stream>>],\n    watermark: u64,\n"
      ") -> (Vec<VersionMismatch>, Option<StreamHead>) {",
      "    for ((append, _), stream) in appends.iter().zip(locked).zip(streams) {\n"
      "        let found = stream.as_ref().and_then(|s| s.committed_head(watermark));\n"],
     "expectations checked against the committed head, not the recorded (reserved) one (both insert paths)"),
    ("conflict-no-wait", "src/store.rs",
     "    fn wait_visible(&self, head: Option<StreamHead>) -> Result<(), InsertError> {\n",
     "    fn wait_visible(&self, head: Option<StreamHead>) -> Result<(), InsertError> {\n"
     "        if head.is_some() {\n            return Ok(());\n        }\n",
     "a failed (or pure) check returns without waiting for the head it saw to commit"),
    ("pure-check-takes-no-lock", "src/store.rs",
     "                let inert = a.events.is_empty() && a.expected == ExpectedVersion::Any;\n"
     "                (!inert).then(|| index.get_or_create(a.stream))\n",
     "                let _ = ExpectedVersion::Any;\n"
     "                if a.events.is_empty() { index.get(a.stream) } else { Some(index.get_or_create(a.stream)) }\n",
     "a zero-event expectation on a missing stream takes no lock (the bug fixed in 8756c15)"),
    ("wait-for-ignores-poison", "src/watermark.rs",
     ".wait_until(|| self.get() >= target || self.is_poisoned(), None);",
     ".wait_until(|| self.get() >= target, None);",
     "Watermark::wait_for's wait condition ignores the poison flag"),
    ("insert-no-wait", "src/store.rs",
     ["        self.wait_visible_end(end)?;\n        // SAFETY: the stream holds",
      "        self.wait_visible_end(end)?;\n        for stream in streams"],
     ["        let _ = end;\n        // SAFETY: the stream holds",
      "        let _ = end;\n        for stream in streams"],
     "insert returns without waiting for the watermark (no read-your-writes; both insert paths)"),
    # ---- log.rs / watermark.rs: the contract's rule 26, created_at in position order ----
    ("created-at-fast-path-unordered", "src/log.rs",
     "            let created_at = if own >= earliest {",
     "            let created_at = if { let _ = earliest; true } {",
     "the fast path publishes its own creation time without raising it to the one before"),
    ("created-at-helpers-unordered", "src/log.rs",
     "        let committed = |position| unsafe { log.committed_len_ordered(position) };",
     "        let committed = |position| log.committed_len(position);",
     "helpers move the watermark over a range without raising its creation time"),
    ("created-at-line-trusted-when-stale", "src/watermark.rs",
     "        if self.line.fast_end.load(Ordering::Relaxed) == position {",
     "        if { let _ = self.line.fast_end.load(Ordering::Relaxed) == position; true } {",
     "a fast-path writer takes the time the watermark's line holds even when a helper moved the watermark since"),
    ("created-at-first-raise-relaxed", "src/log.rs",
     "                first.stamp.raise_to(earliest, Ordering::Release);",
     "                first.stamp.raise_to(earliest, Ordering::Relaxed);",
     "the raise of a range's first record, which tells other helpers the range is raised, is Relaxed instead of Release"),
    ("created-at-check-relaxed", "src/log.rs",
     "        Stamp(self.0.load(Ordering::Acquire))",
     "        Stamp(self.0.load(Ordering::Relaxed))",
     "a helper checks whether a range is raised with a Relaxed load of its first stamp instead of Acquire"),
    ("created-at-first-raised-first", "src/log.rs",
     ["                first.stamp.raise_to(earliest, Ordering::Release);\n",
      "                for position in start + 1..start + len {"],
     ["",
      "                first.stamp.raise_to(earliest, Ordering::Release);\n                for position in start + 1..start + len {"],
     "the first record is raised before the others, so a helper that sees it raised may move the watermark over unraised records"),
    # ---- targeted wake-ups: one-stream subscriptions park on their stream ----
    ("stream-wake-slow-no-fence", "src/store.rs",
     "        // count, as the handshake needs (DESIGN.md, \"Targeted wake-ups\").\n"
     "        stream.signal.wake();",
     "        // count, as the handshake needs (DESIGN.md, \"Targeted wake-ups\").\n"
     "        stream.signal.wake_fenced();",
     "a writer whose commit took the slow path wakes its stream without a fence(SeqCst) of its own"),
    ("stream-wake-missing", "src/store.rs",
     "        wake_stream(unsafe { stream.get() }, commit.fenced);",
     "        let _ = (stream, commit.fenced);",
     "a one-stream insert does not wake its stream's signal"),
    ("stream-wake-before-visible", "src/store.rs",
     ["        let end = commit.end;\n        self.wait_visible_end(end)?;\n        // SAFETY",
      "        wake_stream(unsafe { stream.get() }, commit.fenced);\n"],
     ["        let end = commit.end;\n        wake_stream(unsafe { stream.get() }, false);\n        self.wait_visible_end(end)?;\n        // SAFETY",
      ""],
     "a one-stream insert wakes its stream before its commit is visible (before wait_visible_end), with a fence"),
    ("abandon-no-stream-wake", "src/log.rs",
     "            streams.wake_all();",
     "            let _ = streams;",
     "an abandoned reservation poisons the store without waking the streams' sleepers"),
    # ---- segments.rs / log.rs: reclaiming segments of removed events (R1-R3b) ----
    ("pin-fetch-add-relaxed", "src/segments.rs",
     "let before = headers.0[at].pins.fetch_add(1, Ordering::AcqRel);",
     "let before = headers.0[at].pins.fetch_add(1, Ordering::Relaxed);",
     "Segments::pin's fetch_add on the pin count AcqRel -> Relaxed"),
    ("pin-ignores-retired", "src/segments.rs",
     "if before & RETIRED != 0 {",
     "if false && before & RETIRED != 0 {",
     "Segments::pin goes on to the entry even when the segment is retired"),
    ("retire-fetch-or-relaxed", "src/segments.rs",
     "pins.fetch_or(RETIRED, Ordering::AcqRel);",
     "pins.fetch_or(RETIRED, Ordering::Relaxed);",
     "Segments::retire's fetch_or(RETIRED) AcqRel -> Relaxed"),
    ("retire-fetch-or-after-swap", "src/segments.rs",
     ["        headers.0[at].pins.fetch_or(RETIRED, Ordering::AcqRel);\n        match self.entry(segment) {",
      "            None => ptr::null_mut(),\n        }\n    }\n\n    /// Whether no"],
     ["        let base = match self.entry(segment) {",
      "            None => ptr::null_mut(),\n        };\n"
      "        headers.0[at].pins.fetch_or(RETIRED, Ordering::AcqRel);\n        base\n    }\n\n    /// Whether no"],
     "Segments::retire sets RETIRED after swapping the entry to null instead of before"),
    ("retire-no-retired-bit", "src/segments.rs",
     "headers.0[at].pins.fetch_or(RETIRED, Ordering::AcqRel);",
     "let _ = RETIRED;",
     "Segments::retire never sets RETIRED (pins are kept off only by the null entry)"),
    ("unpinned-load-relaxed", "src/segments.rs",
     "pins.load(Ordering::Acquire) & !RETIRED == 0",
     "pins.load(Ordering::Relaxed) & !RETIRED == 0",
     "Segments::unpinned's load of the pin count Acquire -> Relaxed"),
    ("pin-drop-relaxed", "src/segments.rs",
     ".pins\n            .fetch_sub(1, Ordering::Release);",
     ".pins\n            .fetch_sub(1, Ordering::Relaxed);",
     "SegmentPin's drop fetch_sub Release -> Relaxed"),
    ("remove-fetch-add-relaxed", "src/segments.rs",
     ".removed.fetch_add(n, Ordering::AcqRel);",
     ".removed.fetch_add(n, Ordering::Relaxed);",
     "Segments::remove's fetch_add on the removed count AcqRel -> Relaxed"),
    ("remove-not-atomic", "src/segments.rs",
     "let before = headers.0[at].removed.fetch_add(n, Ordering::AcqRel);",
     "let before = headers.0[at].removed.load(Ordering::Acquire);\n"
     "        headers.0[at].removed.store(before + n, Ordering::Release);",
     "Segments::remove counts with a load and a store instead of one fetch_add"),
    ("free-ignores-pins", "src/log.rs",
     "if quiet && self.slots.unpinned(retired.segment) {",
     "if quiet {",
     "Log::reclaim frees a retired segment without waiting for unpinned"),
    ("release-span-relaxed", "src/log.rs",
     "meta.first_spans.fetch_sub(1, Ordering::AcqRel)",
     "meta.first_spans.fetch_sub(1, Ordering::Relaxed)",
     "release_span's fetch_sub on the TxMeta's unit count AcqRel -> Relaxed"),
    ("release-span-per-record", "src/log.rs",
     "if stamp.0 & 1 == 1 && stamp.0 != self.last {",
     "if stamp.0 & 1 == 1 {",
     "Freeing releases a TxMeta unit for every record of the transaction, not once per segment"),
    ("free-ignores-quiet", "src/log.rs",
     "if quiet && self.slots.unpinned(retired.segment) {",
     "if self.slots.unpinned(retired.segment) {",
     "Log::reclaim frees a retired segment without waiting for the epoch guards older than its retirement"),
    ("commit-without-guard", "src/log.rs",
     "        let _guard = epoch::pin();\n",
     "",
     "Reservation::commit holds no epoch guard while it (and the helpers it runs) read slots"),
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
    "a_failed_insert_releasing_its_streams_never_orphans_a_concurrent_writer": "I1",
    "a_handle_dropped_unused_never_orphans_an_append_through_another_handle": "I2",
    "a_failed_one_stream_insert_never_removes_the_winners_stream": "I3",
    "two_committers_never_strand_the_watermark": "L1",
    "a_reader_racing_two_committers_reads_only_published_slots": "L2",
    "three_committers_hand_the_watermark_along": "L3",
    "abandoning_a_reservation_poisons_the_log_and_wakes_a_waiting_writer": "L4",
    "a_fast_path_commit_carries_the_watermark_over_a_writer_behind_it": "L5",
    "a_waiter_parked_on_the_watermark_is_woken_by_a_fast_path_commit": "L6",
    "created_at_follows_positions_on_both_commit_paths": "L7",
    "wait_until_async_awaits_again_until_its_condition_holds": "S6",
    "a_subscription_stream_receives_a_concurrent_insert": "T1",
    "a_subscription_stream_polled_again_after_a_dropped_poll_receives_a_concurrent_insert": "T2",
    "correlated_created_at_follows_positions_on_both_commit_paths": "L8",
    "a_fast_path_after_a_helped_commit_takes_created_at_from_the_slot": "L9",
    "park_until_never_misses_a_wake_after_a_seqcst_store": "S1",
    "park_until_never_misses_a_wake_after_an_acqrel_cas": "S2",
    "a_wake_with_no_sleeper_skips_notify_and_a_later_sleeper_does_not_park": "S3",
    "one_wake_releases_two_sleepers": "S4",
    "wait_until_parks_again_until_its_condition_holds": "S5",
    "racing_get_or_alloc_share_one_segment_and_free_the_losers": "E1",
    "racing_get_or_alloc_on_atomic_slots_agree_on_the_segment": "E2",
    "a_one_stream_subscription_receives_an_insert_committed_on_the_slow_path": "W1",
    "poisoning_wakes_a_one_stream_subscription_parked_on_its_stream": "W2",
    "a_one_stream_subscription_stream_receives_a_concurrent_insert_into_its_stream": "W3",
    "racing_installs_of_one_chunk_share_it": "E3",
    "a_reader_pinning_a_segment_races_its_retirement_and_free": "R1",
    "two_threads_counting_removals_into_one_segment_complete_it_once": "R2",
    "a_transaction_over_two_segments_frees_its_metadata_once_after_both": "R3",
    "a_transaction_whose_first_segment_is_freed_frees_its_metadata_at_teardown": "R3b",
    "a_helper_reading_a_stale_watermark_under_a_guard_delays_the_free": "R4",
    "a_read_all_racing_a_delete_keeps_its_segment_until_its_handle_drops": "R5",
}


def short_reason(reason):
    reason = reason.replace("`", "'")
    match = re.match(r"model \S+ never reached outcome '([^']*)'", reason)
    if match:
        return f"required outcome never reached: {match.group(1)}"
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
    # The same results by model.
    caught = {model: [] for model in order}
    for mid, _, _, _, _ in MUTATIONS:
        if mid == "baseline" or mid not in summary:
            continue
        for name in summary[mid]["failed"]:
            caught.setdefault(MODELS.get(name, name), []).append(f"`{mid}`")
    print()
    print("| Model | Mutations it catches |")
    print("|---|---|")
    for model, mids in caught.items():
        print(f"| {model} | {', '.join(mids) if mids else 'none'} |")


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
