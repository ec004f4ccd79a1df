// skynet: a 10-ary tree of goroutines, 1M leaves, sums over unbuffered channels (ms).
// Twin of bench/skynet.c.
package main

import (
	"runtime"
	"time"

	"loombench/internal/bench"
)

func skynet(c chan<- int64, num, size, div int64) {
	if size == 1 {
		c <- num
		return
	}
	rc := make(chan int64)
	for i := int64(0); i < div; i++ {
		go skynet(rc, num+i*(size/div), size/div, div)
	}
	var sum int64
	for i := int64(0); i < div; i++ {
		sum += <-rc
	}
	c <- sum
}

func main() {
	bench.Init("skynet")
	size := bench.Param("size", 1000000, 1000)
	div := bench.Param("div", 10, 10)
	if div < 2 || div > 64 {
		bench.Fail("div must be 2..64")
	}
	for s := size; s > 1; s /= div {
		if s%div != 0 {
			bench.Fail("size %d is not a power of div %d", size, div)
		}
	}
	procs := runtime.GOMAXPROCS(0)
	c := make(chan int64)
	t0 := time.Now()
	go skynet(c, 0, size, div)
	sum := <-c
	el := time.Since(t0)
	if want := size * (size - 1) / 2; sum != want {
		bench.Fail("sum %d, want %d", sum, want)
	}
	bench.Result("ms", float64(el.Nanoseconds())/1e6, "ms", procs)
	bench.Result("peak_rss_mib", float64(bench.MaxRSSKiB())/1024, "MiB", procs)
}
