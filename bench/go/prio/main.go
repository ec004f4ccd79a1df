// prio: how late a goroutine's 1 ms sleeps wake up while 100 goroutines per P
// spin without function calls, at all Ps.  Go has no priorities: this is the
// same workload as bench/prio.c with every goroutine at the one level.  Every
// goroutine first waits for a start channel to close (as in the C twin, where
// the spawning goroutine would otherwise queue behind the spinners).  The
// sleeper stops after iters sleeps or budget_ms of sleeping, whichever comes
// first; the quantiles cover the sleeps done.  Twin of bench/prio.c.
package main

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"loombench/internal/bench"
)

const spinnersPerP = 100

var stop int32

func spinner(start <-chan struct{}, out *uint64, wg *sync.WaitGroup) {
	var n uint64
	<-start
	for atomic.LoadInt32(&stop) == 0 {
		n++
	}
	*out = n
	wg.Done()
}

func main() {
	bench.Init("prio")
	iters := bench.Param("iters", 1000, 50)
	budget := time.Duration(bench.Param("budget_ms", 30000, 1000)) * time.Millisecond
	if iters < 1 {
		bench.Fail("iters must be >= 1")
	}
	if budget < 1 {
		bench.Fail("budget_ms must be >= 1")
	}
	wd := 120 * time.Second
	if bench.Smoke() {
		wd = 20 * time.Second
	}
	bench.Watchdog(wd, "the sleeper never woke beside the spinners (no preemption?)")
	procs := runtime.GOMAXPROCS(0)
	spins := make([]uint64, spinnersPerP*procs)
	delays := make([]int64, iters)
	done := 0
	start := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(len(spins) + 1)
	for i := range spins {
		go spinner(start, &spins[i], &wg)
	}
	go func() {
		<-start
		tStart := time.Now()
		for done < len(delays) && time.Since(tStart) < budget {
			t0 := time.Now()
			time.Sleep(time.Millisecond)
			delays[done] = time.Since(t0).Nanoseconds() - int64(time.Millisecond)
			done++
		}
		atomic.StoreInt32(&stop, 1)
		wg.Done()
	}()
	close(start)
	wg.Wait()
	if done < 1 {
		bench.Fail("the sleeper finished no sleep")
	}
	ran := 0
	for _, n := range spins {
		if n != 0 {
			ran++
		}
	}
	if ran == 0 {
		bench.Fail("no spinner ran")
	}
	delays = delays[:done]
	for k, d := range delays {
		if d < 0 {
			bench.Fail("sleep %d returned %d ns early", k, -d)
		}
	}
	if int64(done) < iters {
		bench.Note("the %d ms budget ran out after %d of %d sleeps", budget.Milliseconds(), done, iters)
	}
	bench.Note("%d of %d spinners ran before the stop", ran, len(spins))
	p50 := bench.Quantile(delays, 0.5)
	p99 := bench.Quantile(delays, 0.99)
	worst := delays[len(delays)-1]
	bench.Result("worst_ms", float64(worst)/1e6, "ms", procs)
	bench.Result("p50_ms", float64(p50)/1e6, "ms", procs)
	bench.Result("p99_ms", float64(p99)/1e6, "ms", procs)
}
