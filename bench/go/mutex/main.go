// mutex: 100 goroutines contending for one sync.Mutex at all Ps (ns per
// critical section).  Twin of bench/mutex.c.
package main

import (
	"runtime"
	"sync"
	"time"

	"loombench/internal/bench"
)

func main() {
	bench.Init("mutex")
	g := bench.Param("goroutines", 100, 10)
	k := bench.Param("iters", 50000, 1000) // per goroutine
	procs := runtime.GOMAXPROCS(0)
	var mu sync.Mutex
	var counter int64
	var wg sync.WaitGroup
	wg.Add(int(g))
	t0 := time.Now()
	for i := int64(0); i < g; i++ {
		go func() {
			for j := int64(0); j < k; j++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	if counter != g*k {
		bench.Fail("counter %d, want %d (mutual exclusion broken)", counter, g*k)
	}
	bench.Result("ns_per_cs", float64(el.Nanoseconds())/float64(g*k), "ns", procs)
}
