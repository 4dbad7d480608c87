package main

import (
	"fmt"
	"runtime"
	"sync"
	"time"
)

// Spinning goroutines on several OS threads: the Go runtime preempts them
// asynchronously with SIGURG. The counts depend on the schedule.
func main() {
	runtime.GOMAXPROCS(2)
	var wg sync.WaitGroup
	counts := make([]int, 4)
	deadline := time.Now().Add(200 * time.Millisecond)
	for i := range counts {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for time.Now().Before(deadline) {
				for j := 0; j < 100000; j++ {
					counts[i]++
				}
			}
		}(i)
	}
	wg.Wait()
	fmt.Println("goroutines counted", counts)
}
