// Package bench holds the helpers shared by the Go twins of loom's benchmarks.
//
// Every program prints one machine-readable line per metric on stdout:
//
//	RESULT name=<workload> metric=<metric> value=<number> unit=<unit> procs=<P>
//
// exactly as its C twin (bench/<name>.c) does, and exits non-zero (after a line
// starting "FAIL <name>:" on stderr) when its result is wrong.
//
// Parameters: --key=value on the command line, else env BENCH_<KEY> (upper
// case), else the smoke size when --smoke is given, else the full size.
package bench

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var (
	name  = "bench"
	smoke bool
)

// Init records the workload name and looks for --smoke.
func Init(workload string) {
	name = workload
	for _, a := range os.Args[1:] {
		if a == "--smoke" {
			smoke = true
		}
	}
}

// Smoke reports whether --smoke was given.
func Smoke() bool { return smoke }

// Fail prints "FAIL <name>: ..." on stderr and exits 1.
func Fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "FAIL %s: %s\n", name, fmt.Sprintf(format, args...))
	os.Exit(1)
}

// Note prints an informational line on stderr (ignored by run.py).
func Note(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "%s: %s\n", name, fmt.Sprintf(format, args...))
}

// ParamStr returns the raw text of parameter key and whether it was given.
func ParamStr(key string) (string, bool) {
	prefix := "--" + key + "="
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, prefix) {
			return a[len(prefix):], true
		}
	}
	return os.LookupEnv("BENCH_" + strings.ToUpper(key))
}

// Param returns an integer parameter: argv/env, else smokeDefault under --smoke,
// else fullDefault.
func Param(key string, fullDefault, smokeDefault int64) int64 {
	if s, ok := ParamStr(key); ok {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			Fail("parameter %s=%s is not an integer", key, s)
		}
		return v
	}
	if smoke {
		return smokeDefault
	}
	return fullDefault
}

// Result prints one RESULT line.
func Result(metric string, value float64, unit string, procs int) {
	fmt.Printf("RESULT name=%s metric=%s value=%s unit=%s procs=%d\n",
		name, metric, strconv.FormatFloat(value, 'f', 3, 64), unit, procs)
}

// MaxRSSKiB is the peak resident set size so far, KiB (getrusage ru_maxrss).
func MaxRSSKiB() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return int64(ru.Maxrss)
}

// Watchdog fails the program loudly when it has not finished after d.
func Watchdog(d time.Duration, msg string) {
	// Go's scheduler preempts, so this goroutine runs even beside a spinner.
	go func() {
		time.Sleep(d)
		fmt.Fprintf(os.Stderr, "FAIL watchdog: %s: %s\n", name, msg)
		os.Exit(3)
	}()
}

// Rand is splitmix64: the same deterministic stream as bench_rand in bench.h.
func Rand(state *uint64) uint64 {
	*state += 0x9e3779b97f4a7c15
	z := *state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// Quantile sorts v in place and returns the p-quantile (0..1), nearest-rank.
func Quantile(v []int64, p float64) int64 {
	if len(v) == 0 {
		return 0
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	k := int(p * float64(len(v)))
	if k >= len(v) {
		k = len(v) - 1
	}
	return v[k]
}
