// preempt: worst delay of a 1 ms sleep beside a goroutine spinning without
// function calls, at one P.  Twin of bench/preempt.c.
package main

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"loombench/internal/bench"
)

var (
	stop  int32
	spins uint64
)

func spinner(wg *sync.WaitGroup) {
	var n uint64
	for atomic.LoadInt32(&stop) == 0 {
		n++
	}
	spins = n
	wg.Done()
}

func main() {
	bench.Init("preempt")
	iters := bench.Param("iters", 100, 10)
	wd := 60 * time.Second
	if bench.Smoke() {
		wd = 20 * time.Second
	}
	bench.Watchdog(wd, "the 1 ms sleeper never ran beside the spinner (no preemption?)")
	runtime.GOMAXPROCS(1)
	procs := runtime.GOMAXPROCS(0)
	delays := make([]int64, iters)
	var wg sync.WaitGroup
	wg.Add(2)
	go spinner(&wg)
	go func() {
		for k := range delays {
			t0 := time.Now()
			time.Sleep(time.Millisecond)
			delays[k] = time.Since(t0).Nanoseconds() - int64(time.Millisecond)
		}
		atomic.StoreInt32(&stop, 1)
		wg.Done()
	}()
	wg.Wait()
	if spins == 0 {
		bench.Fail("the spinner never ran")
	}
	for k, d := range delays {
		if d < 0 {
			bench.Fail("sleep %d returned %d ns early", k, -d)
		}
	}
	p50 := bench.Quantile(delays, 0.5)
	worst := delays[len(delays)-1]
	bench.Result("worst_ms", float64(worst)/1e6, "ms", procs)
	bench.Result("p50_ms", float64(p50)/1e6, "ms", procs)
}
