// ctxcancel: 100k goroutines blocked on a context, the time from its cancel to
// all of them returned (ms).  Each goroutine waits in the idiomatic
// select { case <-ctx.Done(): case <-ch: } on a channel nobody sends on.  Once
// all have started (a WaitGroup) and a short settle sleep has passed (they are
// parked by then), main cancels and waits for the WaitGroup.
// Twin of bench/ctxcancel.c (loom_recv cut short by the goroutine's context).
package main

import (
	"context"
	"runtime"
	"sync"
	"time"

	"loombench/internal/bench"
)

const settle = 20 * time.Millisecond // both twins sleep this long once all are parked

func main() {
	bench.Init("ctxcancel")
	n := bench.Param("goroutines", 100000, 1000)
	if n < 1 {
		bench.Fail("goroutines must be >= 1")
	}
	bench.Watchdog(120*time.Second, "did not finish in 120 s")
	procs := runtime.GOMAXPROCS(0)
	ctx, cancel := context.WithCancel(context.Background())
	never := make(chan struct{}) // nobody sends on it
	var started, wg sync.WaitGroup
	started.Add(int(n))
	wg.Add(int(n))
	for i := int64(0); i < n; i++ {
		go func() {
			started.Done()
			select {
			case <-ctx.Done():
			case <-never:
				bench.Fail("received on a channel nobody sends on")
			}
			wg.Done()
		}()
	}
	started.Wait()
	time.Sleep(settle)
	t0 := time.Now()
	cancel()
	wg.Wait()
	el := time.Since(t0)
	if ctx.Err() != context.Canceled {
		bench.Fail("ctx.Err() is %v after the cancel, not context.Canceled", ctx.Err())
	}
	bench.Note("%.1f ns per goroutine", float64(el.Nanoseconds())/float64(n))
	bench.Result("ms", float64(el.Nanoseconds())/1e6, "ms", procs)
}
