#!/usr/bin/env python3
"""bench/run.py BUILD_DIR: loom beside Go on the same workloads.

Builds the Go twins (bench/go/<name>) into BUILD_DIR/bench-go/, runs every
loom/Go pair interleaved BENCH_REPS times (default 3) with LOOM_PROCS/GOMAXPROCS
as each workload says, prints a table (workload, loom median, Go median,
loom/Go, spread min-max, target, met/MISSED) and writes bench/results.md and
bench/results.png (gnuplot).  Installs golang-go, wrk and gnuplot-nox with
apt-get when missing (as root), else says what it skipped.

Environment:
  BENCH_REPS=N        runs per implementation and workload (default 3)
  BENCH_ONLY="a b"    only these runs (names as in WORKLOADS, e.g. "skynet pingpong@1";
                      a bare name such as "pingpong" selects every pingpong@...)
  BENCH_NET_SECS=S    seconds per wrk / netclient run (default 5)
  BENCH_WRK_THREADS=N wrk's threads (default 2, wrk's own default: one wrk thread
                      saturates a CPU here at ~85k req/s, below 2x Go)
  BENCH_RESULTS=FILE  where to write the markdown (default bench/results.md);
                      the chart goes beside it with the extension .png
  BENCH_NO_INSTALL=1  never call apt-get
  BENCH_SLOW=S        a workload whose first run took longer than S seconds (either
                      side; default 40) runs only once more, to keep make bench short
The C programs themselves must already be built (make bench does that).
Standard library only.
"""

import datetime
import glob
import os
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import List, Optional

# ------------------------------------------------------------------ the table

LOWER, HIGHER = "lower", "higher"   # which way is better for a metric

# Kinds of run:
PAIR = "pair"            # bench_<program> beside its Go twin
C_ONLY = "c"             # bench_<program> alone: a physical limit, or C libraries Go cannot call
WRK = "wrk"              # examples/<program> beside its Go twin, driven by wrk
WRK_C = "wrkc"           # bench_<program> alone under wrk: a physical limit
NETCLIENT = "netclient"  # examples/<program> beside its Go twin, driven by bench_netclient


@dataclass(frozen=True)
class Target:
    """A bar for loom's median: value <= limit, value >= limit, or relative to Go's median."""
    kind: str    # "le", "ge", "lt_go" (faster than Go), "ge_go" (at least factor x Go)
    limit: float
    text: str    # as printed in the table

    def check(self, loom: float, go: Optional[float]) -> Optional[bool]:
        """True/False, or None when the bar needs Go's median and there is none."""
        if self.kind == "le":
            return loom <= self.limit
        if self.kind == "ge":
            return loom >= self.limit
        if go is None:
            return None
        if self.kind == "lt_go":
            return loom < go
        if self.kind == "ge_go":
            return loom >= self.limit * go
        raise ValueError(f"unknown target kind {self.kind}")


def at_most(limit, text):
    return Target("le", limit, text)


def at_least(limit, text):
    return Target("ge", limit, text)


def faster_than_go(text="faster than Go"):
    return Target("lt_go", 0, text)


def times_go(factor, text):
    return Target("ge_go", factor, text)


@dataclass(frozen=True)
class Metric:
    name: str       # metric= in the program's RESULT lines
    unit: str       # unit= the program reports; shown beside medians
    better: str     # LOWER or HIGHER
    label: str      # the table's "workload" column
    target: Optional[Target] = None


@dataclass(frozen=True)
class Workload:
    run: str        # a name for BENCH_ONLY and the report; NAME@pin runs loom with LOOM_PIN=1
    program: str    # bench_<program>, examples/<program>, bench/go/<program>
    procs: object   # an int, or "all" for every CPU
    timeout: int    # seconds per run (0: servers, bounded by BENCH_NET_SECS instead)
    kind: str
    metrics: List[Metric] = field(default_factory=list)
    libs: str = ""  # dev packages (apt-get names) without which CMake leaves bench_<program> out
    cmd: str = ""   # a command the program runs (apt-get installs it under the same name)


def W(run, program, procs, timeout, kind, *metrics, libs="", cmd=""):
    return Workload(run, program, procs, timeout, kind, list(metrics), libs, cmd)


M = Metric

# One table: what runs, what it reports, and the bar loom must meet.  The order is
# the order of the runs and of the report's rows.
WORKLOADS = [
    W("yield@1", "yield", 1, 120, PAIR,
      M("ns_per_switch", "ns", LOWER, "yield: switch at 1 P", at_most(20, "≤ 20 ns"))),
    W("pingpong@1", "pingpong", 1, 120, PAIR,
      M("ns_per_roundtrip", "ns", LOWER, "pingpong: round trip, 1 P")),
    W("pingpong@all", "pingpong", "all", 120, PAIR,
      M("ns_per_roundtrip", "ns", LOWER, "pingpong: round trip, all Ps", at_most(80, "≤ 80 ns"))),
    W("threadring", "threadring", "all", 180, PAIR,
      M("ns_per_pass", "ns", LOWER, "threadring: token pass")),
    W("skynet", "skynet", "all", 180, PAIR,
      M("ms", "ms", LOWER, "skynet: 1M goroutines", at_most(300, "≤ 300 ms")),
      M("peak_rss_mib", "MiB", LOWER, "skynet: peak RSS")),
    W("sieve", "sieve", "all", 180, PAIR,
      M("ms", "ms", LOWER, "sieve: 2000 primes")),
    W("spawn", "spawn", "all", 240, PAIR,
      M("ns_per_spawn", "ns", LOWER, "spawn: 1M parked", faster_than_go()),
      M("kib_per_goroutine", "KiB", LOWER, "spawn: RSS per goroutine", at_most(4.5, "≤ 4.5 KiB")),
      M("ns_per_release", "ns", LOWER, "spawn: release per goroutine"),
      M("peak_rss_mib", "MiB", LOWER, "spawn: peak RSS")),
    W("timers", "timers", "all", 240, PAIR,
      M("total_ms", "ms", LOWER, "timers: 1M sleepers, total", at_most(1300, "≤ 1.3 s")),
      M("worst_late_ms", "ms", LOWER, "timers: worst lateness", at_most(20, "≤ 20 ms")),
      M("peak_rss_mib", "MiB", LOWER, "timers: peak RSS")),
    W("preempt@1", "preempt", 1, 120, PAIR,
      M("worst_ms", "ms", LOWER, "preempt: worst 1 ms wake-up", at_most(3, "≤ 3 ms")),
      M("p50_ms", "ms", LOWER, "preempt: median 1 ms wake-up")),
    W("prio", "prio", "all", 180, PAIR,
      M("worst_ms", "ms", LOWER, "prio: worst 1 ms wake-up", at_most(1, "≤ 1 ms")),
      M("p50_ms", "ms", LOWER, "prio: median 1 ms wake-up")),
    W("prio@pin", "prio", "all", 180, PAIR,
      M("worst_ms", "ms", LOWER, "prio, LOOM_PIN=1: worst", at_most(1, "≤ 1 ms")),
      M("p50_ms", "ms", LOWER, "prio, LOOM_PIN=1: median")),
    W("syscall@1", "syscall", 1, 120, PAIR,
      M("progress_ratio", "x", HIGHER, "syscall: progress vs. no block"),
      M("worst_gap_ms", "ms", LOWER, "syscall: worst stall")),
    W("fanout", "fanout", "all", 180, PAIR,
      M("ms_1p", "ms", LOWER, "fanout: fib(35), 1 P"),
      M("ms", "ms", LOWER, "fanout: fib(35), all Ps"),
      M("speedup", "x", HIGHER, "fanout: speedup 1 P → all")),
    W("mutex", "mutex", "all", 180, PAIR,
      M("ns_per_cs", "ns", LOWER, "mutex: 100 contenders")),
    W("ctxcancel", "ctxcancel", "all", 120, PAIR,
      M("ms", "ms", LOWER, "ctxcancel: cancel 100k waiters", faster_than_go())),
    W("httpd", "httpd", "all", 0, WRK,
      M("req_per_s", "req/s", HIGHER, "httpd (wrk): throughput", times_go(2, "≥ 2× Go")),
      M("p50_ms", "ms", LOWER, "httpd (wrk): p50 latency"),
      M("p99_ms", "ms", LOWER, "httpd (wrk): p99 latency")),
    W("httpd-epoll", "epoll_loop", 1, 0, WRK_C,
      M("req_per_s", "req/s", HIGHER, "limit: 1-thread epoll loop (wrk)"),
      M("p99_ms", "ms", LOWER, "limit: epoll loop p99 (wrk)")),
    W("httpd-lc", "httpd", "all", 0, NETCLIENT,
      M("req_per_s", "req/s", HIGHER, "httpd (netclient): throughput"),
      M("p50_ms", "ms", LOWER, "httpd (netclient): p50 latency"),
      M("p99_ms", "ms", LOWER, "httpd (netclient): p99 latency")),
    W("echo", "echo", "all", 0, NETCLIENT,
      M("req_per_s", "req/s", HIGHER, "echo (netclient): throughput"),
      M("p50_ms", "ms", LOWER, "echo (netclient): p50 latency"),
      M("p99_ms", "ms", LOWER, "echo (netclient): p99 latency")),
    W("hook_redis", "hook_redis", 2, 120, C_ONLY,
      M("goroutines", "cmd/s", HIGHER, "hook_redis: 500 goroutines, 2 P"),
      M("goroutines_vs_threads", "x", HIGHER, "hook_redis: vs. 500 pthreads", at_least(1.0, "≥ 1.0×")),
      M("goroutines_vs_async", "x", HIGHER, "hook_redis: vs. libevent async", at_least(0.8, "≥ 0.8×")),
      M("goroutines_max_threads", "threads", LOWER, "hook_redis: peak OS threads",
        at_most(2 + 4, "≤ 6 (2 Ps + 4)")),
      libs="libhiredis-dev libevent-dev", cmd="redis-server"),
    W("swap", "swap", 1, 60, C_ONLY,
      M("ns_per_switch", "ns", LOWER, "limit: raw register swap")),
    W("cacheline", "cacheline", 2, 60, C_ONLY,
      M("ns_per_roundtrip", "ns", LOWER, "limit: cache line ping-pong")),
]

# Reasons a side was not measured at all (as opposed to a run that failed): a target
# on such a row reads "not measured" rather than MISSED.  "no <cmd>": a workload's cmd
# is not installed.
NOT_BUILT, NO_GO, NO_WRK, NO_NETCLIENT = "not built", "no go", "no wrk", "no netclient"
UNMEASURED = {NOT_BUILT, NO_GO, NO_WRK, NO_NETCLIENT} | {f"no {w.cmd}" for w in WORKLOADS if w.cmd}

# ------------------------------------------------------------------ settings


def env_int(name, default):
    v = os.environ.get(name, "")
    try:
        return int(v) if v.strip() else default
    except ValueError:
        sys.exit(f"run.py: {name}={v!r} is not a whole number")


SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPS = env_int("BENCH_REPS", 3)
NET_SECS = env_int("BENCH_NET_SECS", 5)
WRK_THREADS = env_int("BENCH_WRK_THREADS", 2)
SLOW = env_int("BENCH_SLOW", 40)
ONLY = os.environ.get("BENCH_ONLY", "").split()
NPROC = len(os.sched_getaffinity(0))   # what nproc(1) prints
RESULTS_MD = os.environ.get("BENCH_RESULTS") or os.path.join(SRC, "bench", "results.md")
RESULTS_PNG = re.sub(r"\.md$", "", RESULTS_MD) + ".png"

# ------------------------------------------------------------------ state


class Bench:
    def __init__(self, build):
        self.build = build
        self.cbin = os.path.join(build, "bench")
        self.gobin = os.path.join(build, "bench-go")
        self.work = os.path.join(build, "bench-results")
        self.vals = {}      # (impl, run, metric) -> [values]
        self.units = {}     # (run, metric) -> the unit the program reported
        self.bad = {}       # (impl, run) -> why that side has no result
        self.skipped = []   # report lines: what was not measured and why
        self.failed = []    # report lines: runs that failed (wrong answer, crash, timeout)
        self.go_built = set()
        self.server = None  # the running server's Popen, killed on any exit
        self.have = {}

    # ---- messages

    @staticmethod
    def say(msg):
        print(f"run.py: {msg}", flush=True)

    def skip(self, msg):
        self.say(f"skipped: {msg}")
        self.skipped.append(msg)

    # ---- tools

    def install_tools(self):
        need = [pkg for cmd, pkg in (("go", "golang-go"), ("wrk", "wrk"), ("gnuplot", "gnuplot-nox"))
                if not shutil.which(cmd)]
        if need:
            if not os.environ.get("BENCH_NO_INSTALL") and os.geteuid() == 0 and shutil.which("apt-get"):
                self.say(f"installing {' '.join(need)} with apt-get")
                log = os.path.join(self.work, "apt.log")
                env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
                with open(log, "w") as f:
                    ok = (subprocess.call(["apt-get", "update", "-qq"], stdout=f, stderr=f, env=env) == 0
                          and subprocess.call(["apt-get", "install", "-y", "-qq", *need],
                                              stdout=f, stderr=f, env=env) == 0)
                if not ok:
                    self.say(f"apt-get install {' '.join(need)} failed (see {log})")
            else:
                self.say(f"missing {' '.join(need)} and cannot install them (needs root and apt-get)")
        for cmd in ("go", "wrk", "gnuplot"):
            self.have[cmd] = shutil.which(cmd) is not None
        if not self.have["go"]:
            self.skip("Go twins: go not installed (apt-get install golang-go)")
        if not self.have["gnuplot"]:
            self.skip("chart: gnuplot not installed (apt-get install gnuplot-nox)")

    def build_go_twins(self):
        if not self.have["go"]:
            return
        # No dependencies: never touch the network; work without $HOME (CI).
        env = dict(os.environ, GOFLAGS="-mod=mod", GOPROXY="off", GOTOOLCHAIN="local", GO111MODULE="on")
        if not env.get("HOME"):
            env.setdefault("GOCACHE", os.path.join(self.gobin, ".cache"))
            env.setdefault("GOPATH", os.path.join(self.gobin, ".gopath"))
        godir = os.path.join(SRC, "bench", "go")
        for d in sorted(glob.glob(os.path.join(godir, "*", ""))):
            name = os.path.basename(os.path.dirname(d))
            if name == "internal":
                continue
            log = os.path.join(self.work, f"go-build-{name}.log")
            with open(log, "w") as f:
                rc = subprocess.call(["go", "build", "-o", os.path.join(self.gobin, name), "./" + name],
                                     cwd=godir, stdout=f, stderr=subprocess.STDOUT, env=env)
            if rc == 0:
                self.go_built.add(name)
            else:
                self.say(f"go build {name} failed:")
                print(read(log), end="", flush=True)
                self.failed.append(f"go build {name} failed")
        self.say(f"built Go twins into {self.gobin}: {' '.join(sorted(self.go_built))}")

    # ---- results

    def collect(self, impl, run, path):
        """Parses the RESULT lines of a run's output; False if there were none."""
        n = 0
        for line in read(path).splitlines():
            if not line.startswith("RESULT "):
                continue
            kv = dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
            try:
                value = float(kv["value"])
            except (KeyError, ValueError):
                continue
            if "metric" not in kv:
                continue
            self.vals.setdefault((impl, run, kv["metric"]), []).append(value)
            self.units[(run, kv["metric"])] = kv.get("unit", "")
            n += 1
        return n > 0

    def fail(self, impl, run, why, detail=None):
        self.bad[(impl, run)] = why
        self.failed.append(f"{impl} {run}: {why}" + (f": {detail}" if detail else ""))

    # ---- one run of a program that exits

    def run_one(self, impl, w, rep, procs):
        if (impl, w.run) in self.bad:        # failed before: don't retry
            return 0.0
        prog = (os.path.join(self.cbin, "bench_" + w.program) if impl == "loom"
                else os.path.join(self.gobin, w.program))
        out = os.path.join(self.work, f"{impl}-{w.run}-{rep}.out")
        err = os.path.join(self.work, f"{impl}-{w.run}-{rep}.err")
        # a run named NAME@pin pins loom's P threads to their CPUs (Go cannot)
        env = dict(os.environ, LOOM_PIN="1" if w.run.endswith("@pin") else "0",
                   LOOM_PROCS=str(procs), GOMAXPROCS=str(procs))
        t0 = time.monotonic()
        with open(out, "w") as fo, open(err, "w") as fe:
            rc = run_bounded([prog], w.timeout, stdout=fo, stderr=fe, env=env)
        secs = time.monotonic() - t0
        if rc == 0 and self.collect(impl, w.run, out):
            return secs
        why = (f"timed out after {w.timeout}s" if rc is None
               else f"exit {rc}" if rc != 0 else "no RESULT line")
        lines = read(err).splitlines()
        first = next((l for l in lines if re.search(r"FAIL|fatal", l)), lines[-1] if lines else "")
        self.fail(impl, w.run, why, first)
        self.say(f"FAILED {impl} {w.run} ({why}); stderr:")
        for l in lines[-5:]:
            print("    " + l, flush=True)
        return secs

    # ---- one run of a server under wrk or bench_netclient

    def stop_server(self):
        p, self.server = self.server, None
        if p is None:
            return
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def run_server(self, impl, w, rep, procs):
        if (impl, w.run) in self.bad:
            return 0.0
        t0 = time.monotonic()
        if w.kind == WRK_C:
            prog = os.path.join(self.cbin, "bench_" + w.program)
        elif impl == "loom":
            prog = os.path.join(self.build, "examples", w.program)
        else:
            prog = os.path.join(self.gobin, w.program)
        out = os.path.join(self.work, f"{impl}-{w.run}-{rep}.out")
        err = os.path.join(self.work, f"{impl}-{w.run}-{rep}.err")
        log = os.path.join(self.work, f"{impl}-{w.run}-{rep}.log")
        port = free_port()
        # The server gets the port as its first argument and in $PORT.
        env = dict(os.environ, PORT=str(port), LOOM_PROCS=str(procs), GOMAXPROCS=str(procs))
        with open(log, "w") as fl:
            self.server = subprocess.Popen([prog, str(port)], stdin=subprocess.DEVNULL,
                                           stdout=fl, stderr=subprocess.STDOUT, env=env)
        if not wait_port(port, self.server):
            last = last_line(log)
            self.fail(impl, w.run, f"server did not listen on port {port}", last)
            self.say(f"FAILED {impl} {w.run}: server did not listen on {port}")
            for l in read(log).splitlines()[-5:]:
                print("    " + l, flush=True)
            self.stop_server()
            return time.monotonic() - t0

        why = None
        client_env = dict(os.environ, LOOM_PROCS=str(procs))
        if w.kind in (WRK, WRK_C):
            if not http_check(port):
                why = "no 200 answer to GET /"
            else:
                with open(err, "w") as fe:
                    run_bounded(["wrk", f"-t{WRK_THREADS}", "-c64", f"-d{NET_SECS}s", "--latency",
                                 f"http://127.0.0.1:{port}/"], NET_SECS + 60,
                                stdout=fe, stderr=subprocess.STDOUT, env=client_env)
                text = read(err)
                why = wrk_results(text, out, procs)
                sock = re.search(r"^.*Socket errors.*$", text, re.M)
                if why is None and sock:
                    self.say(f"note: {impl} {w.run}: wrk {sock.group(0)}")
        else:
            mode = "http" if w.program == "httpd" else "echo"
            with open(out, "w") as fo, open(err, "w") as fe:
                rc = run_bounded([os.path.join(self.cbin, "bench_netclient"), f"--name={w.program}",
                                  f"--mode={mode}", f"--port={port}", f"--duration_ms={NET_SECS * 1000}"],
                                 NET_SECS + 60, stdout=fo, stderr=fe, env=client_env)
            if rc != 0:
                why = f"netclient: {last_line(err)}"
        if self.server.poll() is not None:
            died = f"the server died: {last_line(log)}"
            why = f"{why}; {died}" if why else died
        self.stop_server()
        if why is None and self.collect(impl, w.run, out):
            return time.monotonic() - t0
        why = why or "no result"
        self.fail(impl, w.run, why)
        self.say(f"FAILED {impl} {w.run}: {why}")
        return time.monotonic() - t0

    # ---- the runs

    def check_runnable(self, w):
        """Marks the sides of w that cannot run at all."""
        if w.kind in (PAIR, C_ONLY, WRK_C):
            path = os.path.join(self.cbin, "bench_" + w.program)
            if not os.access(path, os.X_OK):
                self.bad[("loom", w.run)] = NOT_BUILT
                self.skip(f"{w.run} (loom): {path} not built"
                          + (f" (needs apt-get install {w.libs})" if w.libs else ""))
        elif not os.access(os.path.join(self.build, "examples", w.program), os.X_OK):
            self.bad[("loom", w.run)] = NOT_BUILT
            self.skip(f"examples/{w.program} not built (loom side of {w.run})")
        if has_twin(w):
            if not self.have["go"]:
                self.bad[("go", w.run)] = NO_GO
            elif w.program not in self.go_built:
                self.bad[("go", w.run)] = NOT_BUILT
        if w.kind in (WRK, WRK_C) and not self.have["wrk"]:
            self.bad[("loom", w.run)] = self.bad[("go", w.run)] = NO_WRK
            self.skip(f"{w.run}: wrk not installed (apt-get install wrk)")
        if w.kind == NETCLIENT and not os.access(os.path.join(self.cbin, "bench_netclient"), os.X_OK):
            self.bad[("loom", w.run)] = self.bad[("go", w.run)] = NO_NETCLIENT
            self.skip(f"{w.run}: bench_netclient not built")
        if w.cmd and not shutil.which(w.cmd):
            self.bad.setdefault(("loom", w.run), f"no {w.cmd}")
            self.skip(f"{w.run}: {w.cmd} not installed (apt-get install {w.cmd})")

    def measure(self, w):
        procs = NPROC if w.procs == "all" else w.procs
        self.check_runnable(w)
        impls = ["loom", "go"] if has_twin(w) else ["loom"]
        gone = [f"{impl} skipped: {self.bad[(impl, w.run)]}" for impl in impls if (impl, w.run) in self.bad]
        impls = [impl for impl in impls if (impl, w.run) not in self.bad]
        if not impls:
            self.say(f"not running {w.run} ({'; '.join(gone)})")
            return
        self.say(f"running {w.run} ({' '.join(impls)}; procs={procs}; {REPS} times"
                 + "".join(f"; {g}" for g in gone) + ")")
        reps = REPS
        rep = 1
        while rep <= reps:
            # Interleaved, and who goes first alternates, so a drift in the machine's
            # state (thermal, a neighbour's load) falls on both sides alike.
            order = impls[::-1] if rep % 2 == 0 else impls
            slowest = 0.0
            for impl in order:
                runner = self.run_one if w.kind in (PAIR, C_ONLY) else self.run_server
                slowest = max(slowest, runner(impl, w, rep, procs))
            if rep == 1 and slowest > SLOW and reps > 2:
                reps = 2
                self.say(f"{w.run}: a run took {slowest:.0f}s (> BENCH_SLOW={SLOW}s): 2 runs per side only")
                self.skipped.append(f"{w.run}: runs 3 to {REPS} per side (a run took {slowest:.0f}s "
                                    f"> BENCH_SLOW={SLOW}s); medians of 2")
            rep += 1

    # ---- the report

    def cell_for_missing(self, impl, w):
        if impl == "go" and not has_twin(w):
            return "(no twin)"
        return self.bad.get((impl, w.run), "—")

    def report_rows(self):
        """The table's rows (lists of cells), the chart's (label, advantage) points, met, missed."""
        rows, chart, met, missed = [], [], 0, 0
        for w in WORKLOADS:
            if not selected(w.run):
                continue
            for m in w.metrics:
                unit = self.units.get((w.run, m.name), m.unit)
                if unit != m.unit:
                    self.failed.append(f"{w.run} {m.name}: reported in {unit}, the table says {m.unit}")
                lv = self.vals.get(("loom", w.run, m.name))
                gv = self.vals.get(("go", w.run, m.name))
                lm = statistics.median(lv) if lv else None
                gm = statistics.median(gv) if gv else None
                L = f"{fmt(lm)} {unit}" if lv else self.cell_for_missing("loom", w)
                G = f"{fmt(gm)} {unit}" if gv else self.cell_for_missing("go", w)
                LS = f"{fmt(min(lv))}–{fmt(max(lv))}" if lv else "—"
                GS = f"{fmt(min(gv))}–{fmt(max(gv))}" if gv else "—"
                R = "—"
                if lv and gv and gm != 0:
                    R = f"{lm / gm:.2f}"
                    # chart: loom's advantage, > 1 = loom better, whichever way the metric points
                    if lm > 0 and gm > 0:
                        chart.append((m.label, lm / gm if m.better == HIGHER else gm / lm))
                T = S = "—"
                if m.target:
                    T = m.target.text
                    if lm is None:
                        if self.bad.get(("loom", w.run), "") in UNMEASURED | {""}:
                            S = "not measured"
                        else:
                            S = "MISSED (run failed)"
                    else:
                        ok = m.target.check(lm, gm)
                        S = "met" if ok else "MISSED" if ok is False else "MISSED (no Go result)"
                    met += S == "met"
                    missed += S.startswith("MISSED")
                rows.append([m.label, m.name, L, G, R, LS, GS, T, S])
        return rows, chart, met, missed


# ------------------------------------------------------------------ helpers


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def last_line(path):
    lines = read(path).splitlines()
    return lines[-1] if lines else ""


def selected_by(only, run):
    """A BENCH_ONLY word names a run, or every NAME@... run by its bare NAME."""
    return only == run or only == run.split("@")[0]


def selected(run):
    return not ONLY or any(selected_by(o, run) for o in ONLY)


def has_twin(w):
    return w.kind not in (C_ONLY, WRK_C)


def run_bounded(argv, timeout, **kw):
    """Runs argv with stdin from /dev/null; its exit status, or None if it ran out of time.

    Like timeout -k 5: SIGTERM at the deadline, SIGKILL 5 s later, to the whole
    process group (a Go binary or wrk may have children of its own)."""
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True, **kw)
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        killpg(p, signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            killpg(p, signal.SIGKILL)
            p.wait()
        return None
    finally:
        # interrupted (Ctrl-C): take the child down too
        if p.poll() is None:
            killpg(p, signal.SIGKILL)
            p.wait()


def killpg(p, sig):
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def accepts(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def free_port():
    for _ in range(50):
        # below the ephemeral range (32768-): no client socket holds it
        p = random.randrange(20000, 32000)
        if not accepts(p):
            return p
    return 18080


def wait_port(port, proc):
    """Until the server accepts on port (10 s); False if it exits or never does."""
    for _ in range(100):
        if proc.poll() is not None:
            return False
        if accepts(port):
            return True
        time.sleep(0.1)
    return False


def http_check(port):
    """One HTTP GET: the server must answer 200.  Only the status line is read: a
    server may keep the connection open despite Connection: close."""
    resp = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            while b"\r\n" not in resp:
                chunk = s.recv(4096)
                if not chunk:
                    break
                resp += chunk
    except OSError:
        pass
    return re.match(rb"HTTP/1\.[01] 200", resp) is not None


def to_ms(v):
    """wrk's latency "123.45us" / "1.2ms" / "1.5s" -> ms."""
    m = re.match(r"([0-9.]+)(us|ms|s|m|h)?$", v)
    if not m:
        return None
    n, unit = float(m.group(1)), m.group(2) or "ms"
    return n * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 60e3, "h": 3600e3}[unit]


def wrk_results(text, out, procs):
    """Writes wrk's figures to out as RESULT lines; why there are none, or None."""
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    p50 = re.search(r"^\s*50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s*99%\s+(\S+)", text, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if not (rps and p50 and p99) or to_ms(p50.group(1)) is None or to_ms(p99.group(1)) is None:
        return "wrk gave no result"
    if non2xx and non2xx.group(1) != "0":
        return f"{non2xx.group(1)} responses were not 2xx"
    with open(out, "w") as f:
        f.write(f"RESULT name=httpd metric=req_per_s value={rps.group(1)} unit=req/s procs={procs}\n"
                f"RESULT name=httpd metric=p50_ms value={to_ms(p50.group(1)):.3f} unit=ms procs={procs}\n"
                f"RESULT name=httpd metric=p99_ms value={to_ms(p99.group(1)):.3f} unit=ms procs={procs}\n")
    return None


def fmt(v):
    """A number for humans: about three significant digits, no exponent."""
    a = abs(v)
    if a >= 1000:
        return f"{v:.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def command_line(argv):
    """The first line of a command's output, or None if it cannot run."""
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = r.stdout.splitlines()
    return lines[0] if lines else None


def loadavg():
    return " ".join(read("/proc/loadavg").split()[:3])


# ------------------------------------------------------------------ chart and markdown

TERM_ROW = "{:<32} {:>12} {:>12} {:>8}  {:<21} {:<21} {:<16} {}"

CHART_GP = """\
set terminal pngcairo size 1200,620 font "sans,10"
set output "{png}"
set title "loom vs Go {gover} on {nproc} CPUs: loom's advantage (Go ÷ loom for times, loom ÷ Go for rates; > 1 = loom better)"
set style fill solid 0.85 border -1
set logscale y 2
set yrange [0.0625:64]
set ytics ("1/16" 0.0625, "1/8" 0.125, "1/4" 0.25, "1/2" 0.5, "1" 1, "2" 2, "4" 4, "8" 8, "16" 16, "32" 32, "64" 64)
set ylabel "× (log scale)"
set grid ytics
set offsets 0.6, 0.6, 0, 0
set xtics rotate by -35 left font ",9"
set bmargin 11
set rmargin 12
set key off
clip(v) = v > 64 ? 64 : (v < 0.0625 ? 0.0625 : v)
# bars grow from 1 (parity) up to loom's advantage or down to its disadvantage
plot "{dat}" using 0:(clip($2)):($0 - 0.35):($0 + 0.35):(clip($2) < 1 ? clip($2) : 1):(clip($2) < 1 ? 1 : clip($2)):($2 >= 1 ? 0x3b9c5a : 0xd0503c):xtic(1) \\
         with boxxyerror lc rgb variable, \\
     1 with lines lc rgb "black" lw 1.5
"""


def write_chart(b, chart, go_version):
    if not b.have["gnuplot"] or not chart:
        return False
    dat = os.path.join(b.work, "ratios.dat")
    with open(dat, "w") as f:
        for label, adv in chart:
            f.write(f'"{label}" {adv:.4f}\n')
    gp = os.path.join(b.work, "chart.gp")
    gover = go_version.split()[2].removeprefix("go") if go_version else ""
    with open(gp, "w") as f:
        f.write(CHART_GP.format(png=RESULTS_PNG, gover=gover, nproc=NPROC, dat=dat))
    log = os.path.join(b.work, "gnuplot.log")
    with open(log, "w") as f:
        if subprocess.call(["gnuplot", gp], stdout=f, stderr=subprocess.STDOUT) == 0:
            return True
    b.say("gnuplot failed:")
    print(read(log), end="", flush=True)
    return False


WORKLOAD_NOTES = """\
## Workloads

Each is `bench/<name>.c` (loom) beside `bench/go/<name>/main.go` (Go): same parameters, same
output, each checks its own answer and exits non-zero on a wrong one.

- **yield**: two goroutines, loom_yield / runtime.Gosched at 1 P; ns per switch.
- **pingpong**: an int64 sent over an unbuffered channel and sent back + 1; ns per round trip.
- **threadring**: 503 goroutines in a ring of unbuffered channels, 10M token passes; ns per pass.
- **skynet**: 1M leaf goroutines in a 10-ary tree (1,111,111 in all), sums over unbuffered channels; must be 499999500000.
- **sieve**: the concurrent prime sieve, a filter goroutine per prime, to the 2000th prime (17389).
- **spawn**: 1M goroutines each signalling a WaitGroup and parking on one channel, then released by closing it; ns per spawn
  (spawn until all are parked), RSS per goroutine = growth of getrusage ru_maxrss over that phase / 1M.
- **timers**: 1M goroutines sleeping 1..1000 ms (the same splitmix64 durations in both); total time, worst lateness.
- **preempt**: a goroutine spinning on a relaxed atomic load (no calls) beside one sleeping 1 ms 100 times, at 1 P.
- **prio**: 100 goroutines per P spinning without calls (loom: LOOM_PRIO_LOW) beside one sleeping 1 ms 1000 times (30 s at most)
  (loom: LOOM_PRIO_HIGH; Go has no priorities: the same workload at one level), at all Ps; lateness of the wake-ups.
  **prio@pin** is the same with LOOM_PIN=1 (each P's thread pinned to its CPU; the Go side is unchanged): this VM's kernel
  (kernel.sched_vcpu_pack) was seen leaving one vCPU idle for milliseconds while runnable threads waited on the other.
- **syscall**: at 1 P, a goroutine blocks 200 ms in a plain blocking read() on a pipe (loom: not wrapped in
  loom_block_begin/end; Go: syscall.Read); the ratio of another goroutine's work in those 200 ms to a run without the blocker.
- **fanout**: fib(35) forking a goroutine per split while n > 20, joined over a 1-slot channel; 1 P and all Ps
  (loom: each in its own forked process; Go: GOMAXPROCS changed in-process); one warm-up run each.
  The serial leaves are compiled by cc -O2 on one side and by Go on the other, so the ms rows compare
  compilers as much as schedulers; the speedup row is the scheduler's figure.
- **mutex**: 100 goroutines × 50,000 lock/increment/unlock of one mutex at all Ps; ns per critical section.
- **ctxcancel**: 100k goroutines blocked on one cancellable context, each waiting on a channel nobody sends on (loom:
  loom_recv, cut short by its current context with -ECANCELED; Go: select on ctx.Done() and that channel); once all are
  parked, one cancel; ms from the cancel to the last goroutine's WaitGroup Done.
- **httpd**: examples/httpd.c vs. a net/http hello server, driven by `wrk -t{wrk_threads} -c64 -d{net_secs}s --latency`
  and by bench_netclient --mode=http (loom: 64 keep-alive connections, one GET at a time, every answer checked).
- **echo**: examples/echo.c vs. a Go TCP echo server, driven by bench_netclient (loom): 64 connections,
  64-byte messages one at a time for {net_secs} s, every echo checked.
- **hook_redis**: hiredis's blocking API on 500 goroutines through libloom_hook at LOOM_PROCS=2, beside the same on
  500 pthreads and on hiredis's async API with libevent (one thread), against a redis-server the program starts; each
  connection does 200 rounds of SET then GET (the reply checked). Commands per second on goroutines, its ratios to
  the other two, and the most threads the process had during the goroutines' run (/proc/self/status, read every
  millisecond). No Go twin: Go cannot call hiredis. Built only where hiredis and libevent are; skipped without
  redis-server.
- **limits**: bench/swap.c swaps callee-saved registers and the stack pointer in a few lines of assembly;
  bench/cacheline.c bounces one cache line between two pinned pthreads.
"""


def machine_rows(b, go_version, wall, load_before, load_after):
    cpu = next((l.split(": ", 1)[1] for l in read("/proc/cpuinfo").splitlines()
                if l.startswith("model name") and ": " in l), "?")
    kib = next((int(l.split()[1]) for l in read("/proc/meminfo").splitlines()
                if l.startswith("MemTotal")), None)
    mem = f"{kib / 1048576:.1f} GiB" if kib else "?"
    uname = os.uname()
    cc = (command_line(shlex.split(os.environ.get("CC") or "cc") + ["--version"])
          or command_line(["gcc", "--version"]) or "")
    wrk = "not installed"
    if b.have["wrk"]:
        wrk = " ".join((command_line(["wrk", "--version"]) or "").split()[:2])
    build_type = next((l.split("=", 1)[1] for l in read(os.path.join(b.build, "CMakeCache.txt")).splitlines()
                       if re.match(r"CMAKE_BUILD_TYPE:[A-Z]*=", l)), "")
    return [
        ("nproc", NPROC), ("CPU", cpu), ("memory", mem), ("kernel", f"{uname.sysname} {uname.release}"),
        ("go", go_version or "not installed"), ("cc", cc), ("wrk", wrk), ("loom build", build_type),
        ("wall time of the runs", f"{wall} s"), ("load average before / after", f"{load_before} / {load_after}"),
    ]


def write_markdown(b, rows, met, missed, chart_ok, machine):
    md = ["# loom benchmarks", "",
          f"Generated by `bench/run.py` (`make bench`) on "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; {REPS} runs per",
          "implementation and workload, loom and Go interleaved; medians, with the spread (min–max).", "",
          "| machine | |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in machine]
    md += ["",
           f'"all Ps" is LOOM_PROCS = GOMAXPROCS = {NPROC}; "1 P" is 1. **loom/Go** is the ratio of the medians:',
           "below 1 is better for times, latencies and memory, above 1 for req/s, speedup and progress.",
           "Targets are checked against loom's median. Physical limits and hook_redis (hiredis, which Go",
           "cannot call) have no Go twin.", "",
           "| workload | metric | loom median | Go median | loom/Go | loom spread (min–max) "
           "| Go spread (min–max) | target | status |",
           "|---|---|---:|---:|---:|---|---|---|---|"]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", f"Targets: {met} met, {missed} missed."]
    if chart_ok:
        md += ["", f"![loom's advantage over Go per workload, log scale]({os.path.basename(RESULTS_PNG)})"]
    md += ["", WORKLOAD_NOTES.format(wrk_threads=WRK_THREADS, net_secs=NET_SECS).rstrip("\n")]
    if b.skipped or b.failed:
        md += ["", "## Skipped and failed", ""]
        md += [f"- skipped: {s}" for s in b.skipped]
        md += [f"- FAILED: {s}" for s in b.failed]
    with open(RESULTS_MD, "w") as f:
        f.write("\n".join(md) + "\n")


# ------------------------------------------------------------------ main


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    if not os.path.isdir(build):
        print(f"run.py: build directory '{build}' does not exist (build the library first: make build)",
              file=sys.stderr)
        return 2
    unknown = [o for o in ONLY if not any(selected_by(o, w.run) for w in WORKLOADS)]
    if unknown:
        print(f"run.py: BENCH_ONLY names no run: {' '.join(unknown)} "
              f"(runs: {' '.join(w.run for w in WORKLOADS)})", file=sys.stderr)
        return 2
    # make (or a CI job) stopping us with SIGTERM: unwind, so the finally clauses take
    # the running benchmark or server down with us
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    b = Bench(os.path.abspath(build))
    os.makedirs(b.work, exist_ok=True)
    os.makedirs(b.gobin, exist_ok=True)
    for pat in ("*.out", "*.err", "*.log"):
        for p in glob.glob(os.path.join(b.work, pat)):
            os.remove(p)

    b.install_tools()
    b.build_go_twins()

    try:
        t_start = time.time()
        load_before = loadavg()
        for w in WORKLOADS:
            if selected(w.run):
                b.measure(w)
        wall = round(time.time() - t_start)
        load_after = loadavg()
    finally:
        b.stop_server()

    rows, chart, met, missed = b.report_rows()
    print()
    print(TERM_ROW.format("workload", "loom median", "Go median", "loom/Go", "loom spread", "Go spread",
                          "target", "status"))
    for r in rows:
        label, _metric, *rest = r
        print(TERM_ROW.format(label, *rest))
    print(flush=True)

    go_version = command_line(["go", "version"]) if b.have["go"] else None
    chart_ok = write_chart(b, chart, go_version)
    write_markdown(b, rows, met, missed, chart_ok,
                   machine_rows(b, go_version, wall, load_before, load_after))

    b.say(f"wrote {RESULTS_MD}" + (f" and {RESULTS_PNG}" if chart_ok else ""))
    for s in b.skipped:
        b.say(f"skipped: {s}")
    for s in b.failed:
        b.say(f"FAILED: {s}")
    b.say(f"targets: {met} met, {missed} missed; runs took {wall} s")
    # Failed runs (wrong answers, crashes, hangs) fail make bench; missed targets do not.
    return 1 if b.failed else 0


if __name__ == "__main__":
    sys.exit(main())
