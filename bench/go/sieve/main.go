// sieve: the concurrent prime sieve (a goroutine per prime found) up to the
// 2000th prime (ms).  Twin of bench/sieve.c.
package main

import (
	"runtime"
	"time"

	"loombench/internal/bench"
)

func generate(ch chan<- int64) {
	for i := int64(2); ; i++ {
		ch <- i
	}
}

func filter(in <-chan int64, out chan<- int64, prime int64) {
	for {
		i := <-in
		if i%prime != 0 {
			out <- i
		}
	}
}

// nthPrime by a plain sieve of Eratosthenes, to check the result.
func nthPrime(n int64) int64 {
	for limit := int64(64); ; limit *= 2 {
		comp := make([]bool, limit)
		var count int64
		for i := int64(2); i < limit; i++ {
			if comp[i] {
				continue
			}
			count++
			if count == n {
				return i
			}
			for j := i * i; j < limit; j += i {
				comp[j] = true
			}
		}
	}
}

func main() {
	bench.Init("sieve")
	n := bench.Param("primes", 2000, 100)
	if n < 1 {
		bench.Fail("primes must be >= 1")
	}
	procs := runtime.GOMAXPROCS(0)
	t0 := time.Now()
	ch := make(chan int64)
	go generate(ch)
	var prime int64
	for i := int64(0); i < n; i++ {
		prime = <-ch
		ch1 := make(chan int64)
		go filter(ch, ch1, prime)
		ch = ch1
	}
	el := time.Since(t0)
	if want := nthPrime(n); prime != want {
		bench.Fail("prime #%d is %d, want %d", n, prime, want)
	}
	bench.Result("ms", float64(el.Nanoseconds())/1e6, "ms", procs)
}
