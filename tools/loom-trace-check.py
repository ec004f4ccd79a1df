#!/usr/bin/env python3
"""loom-trace-check.py TRACE [options] — check a LOOM_TRACE file and summarise it.

The file is the Chrome trace-event JSON that loom writes when LOOM_TRACE=FILE is set
(src/trace.c): {"traceEvents":[...]} with
  - metadata ("ph":"M"): process names (pid 1 "loom Ps", pid 2 "loom threads (Ms)") and
    thread names ("P<n>" on pid 1, "M<n>" on pid 2);
  - run slices ("ph":"X", cat "run", pid 1, tid = P): "G<id> <name>", args g, m, end;
  - thread slices ("ph":"X", pid 2, tid = M): cat "park" ("idle") and cat "syscall"
    ("blocking call", args g);
  - instants ("ph":"i", cat "sched") on a P track (pid 1) or on the emitting thread's own
    track (pid 2, tid = args.m): spawn {g, new}, block {g, reason}, unblock {g, by},
    steal {from, n, g}, preempt {g, kind}.
Times are us (ns precision) since loom_run started; every non-metadata event carries args.m,
the thread that emitted it.

Checks, in this order; the first violation is reported and the exit status is 1:
  1. the file is valid JSON: an object with a "traceEvents" list;
  2. each event has the fields its phase and name require, with the right types and
     values (known names, end reasons, block reasons, preempt kinds); no negative ts/dur;
  3. per thread (args.m), stamps never decrease in file order (stamp = ts for instants,
     ts + dur for slices, which are written when they end);
  4. with --procs N: P tracks (pid 1 tids, steal's "from") are within 0..2N-1 (spare Ps
     that loom lends are numbered N..2N-1);
  5. on each P the run slices never overlap (a P runs one goroutine at a time), nor do a
     thread's run slices (one goroutine per thread at a time), nor a thread's run slices
     and its idle slices; one goroutine never has two overlapping run slices (on any Ps);
  6. a goroutine is spawned at most once, and one that was spawned in the trace starts
     running no earlier than its spawn event;
  7. the expectations given: --expect-spawns N (at least N spawn events), --expect-event
     NAME (an instant or slice of that name, or "run"/"idle"/"blocking call"),
     --expect-reason R (a block event with that reason).
A summary (events, Ps, Ms, goroutines, slices, run time per P, counts by kind) is printed
on stdout once the events themselves are well formed.  Exit status: 0 ok, 1 a check
failed (or the file cannot be read), 2 bad usage.  Python 3 standard library only.
"""
import argparse
import json
import re
import sys
from collections import Counter, defaultdict

END_REASONS = {"block", "yield", "preempt", "exit", "syscall", "handoff"}
BLOCK_REASONS = {
    "chan send", "chan recv", "select", "select (no cases)", "sleep", "mutex",
    "rwmutex read", "rwmutex write", "cond", "waitgroup", "sema", "io", "locked thread",
}
INSTANTS = {"spawn", "block", "unblock", "steal", "preempt"}
PREEMPT_KINDS = {"async", "cooperative"}
RUN_NAME = re.compile(r"^G(\d+)(?: (.*))?$", re.S)

PROG = "loom-trace-check"


class CheckError(Exception):
    pass


def us(ns):
    """ns (int) as a us string with three decimals, as the trace writes them."""
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    return "%s%d.%03d" % (sign, ns // 1000, ns % 1000)


def ms(ns):
    return "%.3f ms" % (ns / 1e6)


def show(ev, limit=220):
    s = json.dumps(ev, separators=(",", ":"), ensure_ascii=False)
    return s if len(s) <= limit else s[: limit - 3] + "..."


class Ev:
    """A checked non-metadata event: times in integer ns."""
    __slots__ = ("idx", "raw", "ph", "pid", "tid", "name", "cat", "ts", "dur", "m", "args")

    @property
    def end(self):
        return self.ts + self.dur

    @property
    def stamp(self):
        return self.ts + self.dur if self.ph == "X" else self.ts

    def where(self):
        return "event #%d %s" % (self.idx, show(self.raw))


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def to_ns(v):
    """us (float, ns precision) to integer ns, so that comparisons are exact."""
    return int(round(v * 1000))


def load(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckError("cannot read %s: %s" % (path, e.strerror or e))
    if not data.strip():
        raise CheckError("%s is empty: no trace written" % path)
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise CheckError("not valid UTF-8 at byte %d" % e.start)
    except json.JSONDecodeError as e:
        hint = " (truncated file? loom writes the closing ]} when loom_run returns)" \
            if e.pos >= len(data.rstrip()) - 1 else ""
        raise CheckError("not valid JSON: %s at line %d column %d%s" % (e.msg, e.lineno, e.colno, hint))
    if not isinstance(doc, dict) or "traceEvents" not in doc:
        raise CheckError('not a trace: expected a JSON object with a "traceEvents" list')
    if not isinstance(doc["traceEvents"], list):
        raise CheckError('"traceEvents" is not a list')
    return doc["traceEvents"]


class Checker:
    def __init__(self, args):
        self.a = args
        self.meta_p = {}          # P tid -> name
        self.meta_m = {}          # M tid -> name
        self.procs_named = set()  # pids with a process_name
        self.evs = []             # checked non-metadata events
        self.nmeta = 0

    # ------------------------------------------------------------ per event
    def bad(self, idx, raw, msg):
        raise CheckError("event #%d: %s: %s" % (idx, msg, show(raw)))

    def field(self, idx, raw, obj, key, kind, what=None):
        what = what or key
        if not isinstance(obj, dict) or key not in obj:
            self.bad(idx, raw, "missing %s" % what)
        v = obj[key]
        ok = {"int": is_int, "num": is_num, "str": lambda x: isinstance(x, str),
              "dict": lambda x: isinstance(x, dict)}[kind](v)
        if not ok:
            self.bad(idx, raw, "%s is not %s" % (what, {"int": "an integer", "num": "a number",
                                                       "str": "a string", "dict": "an object"}[kind]))
        return v

    def check_meta(self, idx, raw):
        name = self.field(idx, raw, raw, "name", "str")
        pid = self.field(idx, raw, raw, "pid", "int")
        args = self.field(idx, raw, raw, "args", "dict")
        label = self.field(idx, raw, args, "name", "str", "args.name")
        if pid not in (1, 2):
            self.bad(idx, raw, "metadata for unknown pid %d (1: Ps, 2: Ms)" % pid)
        if name == "process_name":
            self.procs_named.add(pid)
        elif name == "thread_name":
            tid = self.field(idx, raw, raw, "tid", "int")
            want = ("P%d" if pid == 1 else "M%d") % tid
            if label != want:
                self.bad(idx, raw, "thread_name of pid %d tid %d should be %r" % (pid, tid, want))
            if pid == 1:
                self.check_p(idx, raw, tid)
                self.meta_p[tid] = label
            else:
                self.meta_m[tid] = label
        else:
            self.bad(idx, raw, "unknown metadata name %r" % name)
        self.nmeta += 1

    def check_p(self, idx, raw, p, what="P"):
        if p < 0:
            self.bad(idx, raw, "negative %s %d" % (what, p))
        if self.a.procs is not None and p >= 2 * self.a.procs:
            self.bad(idx, raw, "%s %d out of range for --procs %d (0..%d; spare Ps are numbered %d..%d)"
                     % (what, p, self.a.procs, 2 * self.a.procs - 1, self.a.procs, 2 * self.a.procs - 1))

    def check_event(self, idx, raw):
        if not isinstance(raw, dict):
            raise CheckError("event #%d is not an object: %s" % (idx, show(raw)))
        ph = self.field(idx, raw, raw, "ph", "str")
        if ph == "M":
            self.check_meta(idx, raw)
            return
        if ph not in ("X", "i"):
            self.bad(idx, raw, "unknown phase %r (loom writes M, X and i)" % ph)
        e = Ev()
        e.idx, e.raw, e.ph = idx, raw, ph
        e.pid = self.field(idx, raw, raw, "pid", "int")
        e.tid = self.field(idx, raw, raw, "tid", "int")
        e.name = self.field(idx, raw, raw, "name", "str")
        e.cat = self.field(idx, raw, raw, "cat", "str")
        e.ts = to_ns(self.field(idx, raw, raw, "ts", "num"))
        e.args = self.field(idx, raw, raw, "args", "dict")
        e.m = self.field(idx, raw, e.args, "m", "int", "args.m")
        if e.ts < 0:
            self.bad(idx, raw, "negative ts")
        if e.pid not in (1, 2):
            self.bad(idx, raw, "unknown pid %d (1: Ps, 2: Ms)" % e.pid)
        if e.pid == 1:
            self.check_p(idx, raw, e.tid)
        elif e.tid != e.m:
            self.bad(idx, raw, "an event on thread track M%d emitted by args.m %d" % (e.tid, e.m))
        args = e.args
        if ph == "X":
            e.dur = to_ns(self.field(idx, raw, raw, "dur", "num"))
            if e.dur < 0:
                self.bad(idx, raw, "negative dur")
            if e.cat == "run":
                if e.pid != 1:
                    self.bad(idx, raw, "run slice not on a P track (pid 1)")
                g = self.field(idx, raw, args, "g", "int", "args.g")
                end = self.field(idx, raw, args, "end", "str", "args.end")
                if g <= 0:
                    self.bad(idx, raw, "args.g must be a goroutine id > 0")
                if end not in END_REASONS:
                    self.bad(idx, raw, "args.end %r is not one of %s" % (end, ", ".join(sorted(END_REASONS))))
                mt = RUN_NAME.match(e.name)
                if not mt or int(mt.group(1)) != g:
                    self.bad(idx, raw, "run slice name should be 'G%d' or 'G%d <name>'" % (g, g))
            elif e.cat == "park":
                if e.pid != 2 or e.name != "idle":
                    self.bad(idx, raw, "park slices are named 'idle' on the thread's track (pid 2)")
            elif e.cat == "syscall":
                if e.pid != 2 or e.name != "blocking call":
                    self.bad(idx, raw, "syscall slices are named 'blocking call' on the thread's track (pid 2)")
                if self.field(idx, raw, args, "g", "int", "args.g") <= 0:
                    self.bad(idx, raw, "args.g must be a goroutine id > 0")
            else:
                self.bad(idx, raw, "unknown slice category %r (run, park, syscall)" % e.cat)
        else:
            e.dur = 0
            if raw.get("s") != "t":
                self.bad(idx, raw, 'instant without "s":"t"')
            if e.cat != "sched":
                self.bad(idx, raw, "instant category should be 'sched'")
            if e.name not in INSTANTS:
                self.bad(idx, raw, "unknown instant %r (%s)" % (e.name, ", ".join(sorted(INSTANTS))))
            if e.name == "spawn":
                if self.field(idx, raw, args, "g", "int", "args.g") < 0:
                    self.bad(idx, raw, "args.g (the parent) must be >= 0")
                if self.field(idx, raw, args, "new", "int", "args.new") <= 0:
                    self.bad(idx, raw, "args.new must be a goroutine id > 0")
            elif e.name == "block":
                if self.field(idx, raw, args, "g", "int", "args.g") <= 0:
                    self.bad(idx, raw, "args.g must be a goroutine id > 0")
                r = self.field(idx, raw, args, "reason", "str", "args.reason")
                if r not in BLOCK_REASONS:
                    self.bad(idx, raw, "unknown block reason %r" % r)
            elif e.name == "unblock":
                if self.field(idx, raw, args, "g", "int", "args.g") <= 0:
                    self.bad(idx, raw, "args.g must be a goroutine id > 0")
                if self.field(idx, raw, args, "by", "int", "args.by") < 0:
                    self.bad(idx, raw, "args.by must be >= 0")
            elif e.name == "steal":
                frm = self.field(idx, raw, args, "from", "int", "args.from")
                self.check_p(idx, raw, frm, "victim P (args.from)")
                if e.pid == 1 and frm == e.tid:
                    self.bad(idx, raw, "P%d steals from itself" % frm)
                if self.field(idx, raw, args, "n", "int", "args.n") < 1:
                    self.bad(idx, raw, "args.n must be >= 1")
                if self.field(idx, raw, args, "g", "int", "args.g") <= 0:
                    self.bad(idx, raw, "args.g must be a goroutine id > 0")
            elif e.name == "preempt":
                if self.field(idx, raw, args, "g", "int", "args.g") <= 0:
                    self.bad(idx, raw, "args.g must be a goroutine id > 0")
                k = self.field(idx, raw, args, "kind", "str", "args.kind")
                if k not in PREEMPT_KINDS:
                    self.bad(idx, raw, "args.kind %r is not async or cooperative" % k)
        self.evs.append(e)

    # ------------------------------------------------------------ across events
    def check_thread_order(self):
        last = {}
        for e in self.evs:
            prev = last.get(e.m)
            if prev is not None and e.stamp < prev.stamp:
                raise CheckError(
                    "thread M%d's events go back in time: %s has stamp %s us, after %s with stamp %s us "
                    "(stamp = ts, or ts+dur for slices; each thread's events must be in time order)"
                    % (e.m, e.where(), us(e.stamp), prev.where(), us(prev.stamp)))
            last[e.m] = e

    @staticmethod
    def no_overlap(slices, what):
        """slices: list of Ev; raises on the first pair that overlaps (touching is fine)."""
        s = sorted(slices, key=lambda e: (e.ts, e.end, e.idx))
        prev = None
        for e in s:
            if prev is not None and e.ts < prev.end:
                raise CheckError("%s: two slices overlap by %s us:\n  %s\n  %s"
                                 % (what, us(min(prev.end, e.end) - e.ts), prev.where(), e.where()))
            if prev is None or e.end > prev.end:
                prev = e

    def check_overlaps(self, runs):
        by_p, by_g, by_m = defaultdict(list), defaultdict(list), defaultdict(list)
        for e in runs:
            by_p[e.tid].append(e)
            by_g[e.args["g"]].append(e)
            by_m[e.m].append(e)
        for p in sorted(by_p):
            self.no_overlap(by_p[p], "P%d runs two goroutines at once" % p)
        for g in sorted(by_g):
            self.no_overlap(by_g[g], "goroutine %d runs twice at once" % g)
        for m in sorted(by_m):
            self.no_overlap(by_m[m], "thread M%d runs two goroutines at once" % m)
        idle = defaultdict(list)
        for e in self.evs:
            if e.ph == "X" and e.cat == "park":
                idle[e.m].append(e)
        for m in sorted(idle):
            self.no_overlap(by_m.get(m, []) + idle[m], "thread M%d runs a goroutine while idle" % m)

    def check_spawns(self, runs, spawns):
        first = {}
        for e in runs:
            g = e.args["g"]
            if g not in first or e.ts < first[g].ts:
                first[g] = e
        seen = {}
        for s in spawns:
            new = s.args["new"]
            if new in seen:
                raise CheckError("goroutine %d spawned twice:\n  %s\n  %s" % (new, seen[new].where(), s.where()))
            seen[new] = s
            r = first.get(new)
            if r is not None and r.ts < s.ts:
                raise CheckError("goroutine %d runs %s us before it is spawned:\n  %s\n  %s"
                                 % (new, us(s.ts - r.ts), s.where(), r.where()))

    # ------------------------------------------------------------ summary
    def summary(self, path, runs, spawns):
        out = []
        counts = Counter()
        for e in self.evs:
            counts[e.name if e.ph == "i" else e.cat] += 1
        span = max((e.stamp for e in self.evs), default=0)
        ps = sorted(set(self.meta_p) | {e.tid for e in self.evs if e.pid == 1})
        ms_ = sorted(set(self.meta_m) | {e.m for e in self.evs})
        gs = {e.args["g"] for e in runs} | {s.args["new"] for s in spawns}
        out.append("%s: %s: %d events (%d metadata, %d slices, %d instants), %s long"
                   % (PROG, path, len(self.evs) + self.nmeta, self.nmeta,
                      sum(1 for e in self.evs if e.ph == "X"), sum(1 for e in self.evs if e.ph == "i"),
                      ms(span)))
        out.append("  Ps %d (%s), Ms %d, goroutines seen %d (%d ran, %d spawn events)"
                   % (len(ps), " ".join("P%d" % p for p in ps) or "-", len(ms_), len(gs),
                      len({e.args["g"] for e in runs}), len(spawns)))
        ends = Counter(e.args["end"] for e in runs)
        out.append("  run slices %d: %s" % (len(runs), ", ".join("%s %d" % kv for kv in sorted(ends.items())) or "-"))
        busy = defaultdict(int)
        for e in runs:
            busy[e.tid] += e.dur
        out.append("  run time per P: " + (", ".join(
            "P%d %s (%.0f%%)" % (p, ms(busy[p]), 100.0 * busy[p] / span if span else 0.0) for p in ps) or "-"))
        idle = [e for e in self.evs if e.cat == "park"]
        sysc = [e for e in self.evs if e.cat == "syscall"]
        out.append("  thread slices: idle %d (%s), blocking call %d (%s)"
                   % (len(idle), ms(sum(e.dur for e in idle)), len(sysc), ms(sum(e.dur for e in sysc))))
        reasons = Counter(e.args["reason"] for e in self.evs if e.ph == "i" and e.name == "block")
        kinds = Counter(e.args["kind"] for e in self.evs if e.ph == "i" and e.name == "preempt")
        inst = []
        for n in ("spawn", "block", "unblock", "steal", "preempt"):
            s = "%s %d" % (n, counts[n])
            if n == "block" and reasons:
                s += " (%s)" % ", ".join("%s %d" % kv for kv in sorted(reasons.items()))
            if n == "preempt" and kinds:
                s += " (%s)" % ", ".join("%s %d" % kv for kv in sorted(kinds.items()))
            inst.append(s)
        out.append("  instants: " + ", ".join(inst))
        print("\n".join(out))
        sys.stdout.flush()

    # ------------------------------------------------------------ expectations
    def check_expect(self, runs, spawns):
        a = self.a
        if a.expect_spawns is not None and len(spawns) < a.expect_spawns:
            raise CheckError("expected at least %d spawn events, found %d" % (a.expect_spawns, len(spawns)))
        names = {e.name for e in self.evs} | {e.cat for e in self.evs if e.ph == "X"}
        for n in a.expect_event or []:
            if n not in names:
                raise CheckError("expected a %r event, found none" % n)
        reasons = {e.args["reason"] for e in self.evs if e.ph == "i" and e.name == "block"}
        for r in a.expect_reason or []:
            if r not in BLOCK_REASONS:
                raise CheckError("--expect-reason %r: not a block reason of the trace format (%s)"
                                 % (r, ", ".join(sorted(BLOCK_REASONS))))
            if r not in reasons:
                raise CheckError("expected a block event with reason %r, found none (reasons seen: %s)"
                                 % (r, ", ".join(sorted(reasons)) or "none"))

    def run(self, path):
        events = load(path)
        for i, raw in enumerate(events):
            self.check_event(i, raw)
        if not self.evs and not self.nmeta:
            raise CheckError("%s has no events" % path)
        runs = [e for e in self.evs if e.ph == "X" and e.cat == "run"]
        spawns = [e for e in self.evs if e.ph == "i" and e.name == "spawn"]
        if not self.a.quiet:
            self.summary(path, runs, spawns)
        self.check_thread_order()
        self.check_overlaps(runs)
        self.check_spawns(runs, spawns)
        self.check_expect(runs, spawns)


def main(argv):
    ap = argparse.ArgumentParser(prog="loom-trace-check.py",
                                 description="Check a LOOM_TRACE file (Chrome trace-event JSON written by loom).")
    ap.add_argument("trace", help="the trace file")
    ap.add_argument("--procs", type=int, help="LOOM_PROCS of the run: P tracks must be within 0..2*N-1")
    ap.add_argument("--expect-spawns", type=int, metavar="N", help="at least N spawn events")
    ap.add_argument("--expect-event", action="append", metavar="NAME",
                    help="an event of this name must be present (spawn, block, unblock, steal, preempt, "
                         "run, idle, 'blocking call'); repeatable")
    ap.add_argument("--expect-reason", action="append", metavar="R",
                    help="a block event with this reason must be present ('chan recv', sleep, ...); repeatable")
    ap.add_argument("-q", "--quiet", action="store_true", help="no summary")
    a = ap.parse_args(argv)
    if a.procs is not None and a.procs < 1:
        ap.error("--procs must be >= 1")
    try:
        Checker(a).run(a.trace)
    except CheckError as e:
        print("%s: FAIL: %s" % (PROG, e), file=sys.stderr)
        return 1
    print("%s: ok" % PROG)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
