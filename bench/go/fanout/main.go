// fanout: fork-join fib(35), a goroutine per split while n > 20, at one P and at
// all Ps (ms, speedup).  Twin of bench/fanout.c.
package main

import (
	"os"
	"runtime"
	"strconv"
	"time"

	"loombench/internal/bench"
)

var cutoff int64

func sfib(n int64) int64 {
	if n < 2 {
		return n
	}
	return sfib(n-1) + sfib(n-2)
}

func pfib(n int64) int64 {
	if n <= cutoff {
		return sfib(n)
	}
	ch := make(chan int64, 1)
	go func() { ch <- pfib(n - 1) }()
	b := pfib(n - 2)
	return <-ch + b
}

func run(n, want int64) (int64, float64) {
	if pfib(n) != want { // warm-up
		bench.Fail("fib(%d) wrong in warm-up", n)
	}
	t0 := time.Now()
	r := pfib(n)
	return r, float64(time.Since(t0).Nanoseconds()) / 1e6
}

func main() {
	bench.Init("fanout")
	n := bench.Param("n", 35, 24)
	cutoff = bench.Param("cutoff", 20, 20)
	all := runtime.NumCPU()
	if s := os.Getenv("GOMAXPROCS"); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			all = v
		}
	}
	want := sfib(n)
	runtime.GOMAXPROCS(1)
	r1, ms1 := run(n, want)
	runtime.GOMAXPROCS(all)
	rn, msn := run(n, want)
	if r1 != want || rn != want {
		bench.Fail("fib(%d) = %d / %d, want %d", n, r1, rn, want)
	}
	bench.Result("ms_1p", ms1, "ms", 1)
	bench.Result("ms", msn, "ms", all)
	bench.Result("speedup", ms1/msn, "x", all)
}
