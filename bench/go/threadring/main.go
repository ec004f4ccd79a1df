// threadring: 503 goroutines in a ring pass a token N times over unbuffered
// channels (ns per pass).  Twin of bench/threadring.c.
package main

import (
	"runtime"
	"time"

	"loombench/internal/bench"
)

func member(id int64, in <-chan int64, next chan<- int64, done chan<- int64) {
	for {
		t := <-in
		if t == 0 {
			done <- id
			return
		}
		next <- t - 1
	}
}

func main() {
	bench.Init("threadring")
	ring := bench.Param("ring", 503, 503)
	passes := bench.Param("passes", 10000000, 50000)
	if ring < 2 || passes < 0 {
		bench.Fail("bad parameters ring=%d passes=%d", ring, passes)
	}
	procs := runtime.GOMAXPROCS(0)
	chans := make([]chan int64, ring)
	for i := range chans {
		chans[i] = make(chan int64)
	}
	done := make(chan int64)
	for i := int64(0); i < ring; i++ {
		go member(i+1, chans[i], chans[(i+1)%ring], done)
	}
	t0 := time.Now()
	chans[0] <- passes
	id := <-done
	el := time.Since(t0)
	if want := passes%ring + 1; id != want {
		bench.Fail("token ended at member %d, want %d", id, want)
	}
	bench.Result("ns_per_pass", float64(el.Nanoseconds())/float64(passes), "ns", procs)
}
