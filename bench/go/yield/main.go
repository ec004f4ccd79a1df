// yield: two goroutines switching with runtime.Gosched at one P (ns per switch).
// Twin of bench/yield.c.
package main

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"loombench/internal/bench"
)

var last int32 = -1

func worker(me int32, iters int64, alt *int64, wg *sync.WaitGroup) {
	var a int64
	for i := int64(0); i < iters; i++ {
		if atomic.LoadInt32(&last) != me {
			a++
		}
		atomic.StoreInt32(&last, me)
		runtime.Gosched()
	}
	*alt = a
	wg.Done()
}

func main() {
	bench.Init("yield")
	iters := bench.Param("iters", 5000000, 20000) // per goroutine
	runtime.GOMAXPROCS(1)
	procs := runtime.GOMAXPROCS(0)
	var alt [2]int64
	var wg sync.WaitGroup
	wg.Add(2)
	t0 := time.Now()
	go worker(0, iters, &alt[0], &wg)
	go worker(1, iters, &alt[1], &wg)
	wg.Wait()
	el := time.Since(t0)
	switches := 2 * iters
	// At one P every Gosched must hand the P to the other goroutine.
	if alt[0]+alt[1] < switches*9/10 {
		bench.Fail("only %d of %d yields switched goroutines", alt[0]+alt[1], switches)
	}
	bench.Result("ns_per_switch", float64(el.Nanoseconds())/float64(switches), "ns", procs)
}
