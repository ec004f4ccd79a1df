// spawn: 1M goroutines parked on one channel, then released by closing it
// (ns per spawn, RSS KiB per goroutine from getrusage ru_maxrss).
// Twin of bench/spawn.c.
package main

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"loombench/internal/bench"
)

var (
	gate     = make(chan struct{})
	started  sync.WaitGroup
	done     sync.WaitGroup
	released int64
)

func parked() {
	started.Done()
	if _, ok := <-gate; !ok {
		atomic.AddInt64(&released, 1)
	}
	done.Done()
}

func main() {
	bench.Init("spawn")
	n := bench.Param("goroutines", 1000000, 2000)
	procs := runtime.GOMAXPROCS(0)
	rss0 := bench.MaxRSSKiB()
	started.Add(int(n))
	done.Add(int(n))
	t0 := time.Now()
	for i := int64(0); i < n; i++ {
		go parked()
	}
	started.Wait()
	t1 := time.Now()
	rss1 := bench.MaxRSSKiB()
	close(gate)
	done.Wait()
	t2 := time.Now()
	if released != n {
		bench.Fail("%d of %d goroutines saw the channel closed", released, n)
	}
	bench.Result("ns_per_spawn", float64(t1.Sub(t0).Nanoseconds())/float64(n), "ns", procs)
	bench.Result("kib_per_goroutine", float64(rss1-rss0)/float64(n), "KiB", procs)
	bench.Result("ns_per_release", float64(t2.Sub(t1).Nanoseconds())/float64(n), "ns", procs)
	bench.Result("peak_rss_mib", float64(bench.MaxRSSKiB())/1024, "MiB", procs)
}
