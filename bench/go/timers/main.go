// timers: 1M goroutines each sleeping a random 1..1000 ms (total ms, worst
// lateness ms).  Twin of bench/timers.c (same splitmix64 durations).
package main

import (
	"runtime"
	"sync"
	"time"

	"loombench/internal/bench"
)

func main() {
	bench.Init("timers")
	n := bench.Param("goroutines", 1000000, 1000)
	maxMs := bench.Param("max_ms", 1000, 50)
	if n < 1 || maxMs < 1 {
		bench.Fail("bad parameters")
	}
	procs := runtime.GOMAXPROCS(0)
	dur := make([]time.Duration, n)
	late := make([]time.Duration, n)
	seed := uint64(42)
	var maxDur time.Duration
	for i := range dur {
		dur[i] = time.Duration(1+bench.Rand(&seed)%uint64(maxMs)) * time.Millisecond
		if dur[i] > maxDur {
			maxDur = dur[i]
		}
	}
	var wg sync.WaitGroup
	wg.Add(int(n))
	t0 := time.Now()
	for i := range dur {
		go func(i int) {
			s := time.Now()
			time.Sleep(dur[i])
			late[i] = time.Since(s) - dur[i]
			wg.Done()
		}(i)
	}
	wg.Wait()
	el := time.Since(t0)
	var worst time.Duration
	for i, l := range late {
		if l < 0 {
			bench.Fail("goroutine %d woke %v early", i, -l)
		}
		if l > worst {
			worst = l
		}
	}
	if el < maxDur {
		bench.Fail("finished in %v, before the longest sleep %v", el, maxDur)
	}
	bench.Result("total_ms", float64(el.Nanoseconds())/1e6, "ms", procs)
	bench.Result("worst_late_ms", float64(worst.Nanoseconds())/1e6, "ms", procs)
	bench.Result("peak_rss_mib", float64(bench.MaxRSSKiB())/1024, "MiB", procs)
}
