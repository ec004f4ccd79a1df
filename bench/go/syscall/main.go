// syscall: progress of a goroutine while another blocks 200 ms in a plain
// blocking read() on a pipe, at one P, as a ratio to a run without the blocker.
// Twin of bench/syscall.c.
package main

import (
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"loombench/internal/bench"
)

const chunk = 1000

var sink uint64

func workChunk(x uint64) uint64 {
	for i := 0; i < chunk; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

var (
	markNs int64 // when the blocker entered read (0: not yet)
	start  = time.Now()
)

func now() int64 { return int64(time.Since(start)) }

// phase runs the worker for window ns from the moment the other goroutine marks
// (with blocker: right before its blocking read); returns chunks done and worst gap.
func phase(blocker bool, block, window time.Duration) (chunks int64, worstGap int64) {
	atomic.StoreInt64(&markNs, 0)
	var fds [2]int
	if blocker {
		if err := syscall.Pipe(fds[:]); err != nil { // blocking fds: a plain read
			bench.Fail("pipe: %v", err)
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the blocker, or in the baseline a goroutine that only marks
		if !blocker {
			atomic.StoreInt64(&markNs, now())
			wg.Done()
			return
		}
		go func() { // the alarm clock that ends the read
			time.Sleep(block)
			syscall.Write(fds[1], []byte{'x'})
		}()
		atomic.StoreInt64(&markNs, now())
		var b [1]byte
		n, err := syscall.Read(fds[0], b[:])
		if n != 1 || err != nil || b[0] != 'x' {
			bench.Fail("read returned %d %v %q", n, err, b[0])
		}
		wg.Done()
	}()
	go func() { // the worker
		x := uint64(1)
		for atomic.LoadInt64(&markNs) == 0 {
			runtime.Gosched()
		}
		t0 := atomic.LoadInt64(&markNs)
		last := t0
		for {
			x = workChunk(x)
			t := now()
			if t-last > worstGap { // a stall across the window's end counts too
				worstGap = t - last
			}
			if t-t0 > int64(window) {
				break
			}
			chunks++
			last = t
			runtime.Gosched()
		}
		sink += x
		wg.Done()
	}()
	wg.Wait()
	if blocker {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
	}
	return chunks, worstGap
}

func main() {
	bench.Init("syscall")
	blockMs := bench.Param("block_ms", 200, 20)
	wd := 60 * time.Second
	if bench.Smoke() {
		wd = 20 * time.Second
	}
	bench.Watchdog(wd, "no progress")
	runtime.GOMAXPROCS(1)
	procs := runtime.GOMAXPROCS(0)
	block := time.Duration(blockMs) * time.Millisecond
	base, _ := phase(false, block, block)
	with, gap := phase(true, block, block)
	if base <= 0 {
		bench.Fail("the worker made no progress in the baseline run")
	}
	bench.Result("progress_ratio", float64(with)/float64(base), "x", procs)
	bench.Result("worst_gap_ms", float64(gap)/1e6, "ms", procs)
}
