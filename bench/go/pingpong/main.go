// pingpong: unbuffered channel round trip (ns per round trip); run by run.py at
// one P and at all Ps (GOMAXPROCS).  Twin of bench/pingpong.c.
package main

import (
	"runtime"
	"time"

	"loombench/internal/bench"
)

func ponger(in <-chan int64, out chan<- int64) {
	for v := range in {
		out <- v + 1
	}
}

func main() {
	bench.Init("pingpong")
	n := bench.Param("rounds", 1000000, 10000)
	procs := runtime.GOMAXPROCS(0)
	in := make(chan int64)
	out := make(chan int64)
	go ponger(in, out)
	for i := int64(0); i < 1000; i++ { // warm-up
		in <- i
		if v := <-out; v != i+1 {
			bench.Fail("warm-up round %d: got %d", i, v)
		}
	}
	t0 := time.Now()
	var sum int64
	for i := int64(0); i < n; i++ {
		in <- i
		v := <-out
		if v != i+1 {
			bench.Fail("round %d: got %d, want %d", i, v, i+1)
		}
		sum += v
	}
	el := time.Since(t0)
	close(in)
	if sum != n*(n+1)/2 {
		bench.Fail("sum %d, want %d", sum, n*(n+1)/2)
	}
	bench.Result("ns_per_roundtrip", float64(el.Nanoseconds())/float64(n), "ns", procs)
}
