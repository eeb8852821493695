//go:build !linux

package wasmbench

import "time"

var epoch = time.Now()

// threadCPU returns the wall clock in nanoseconds: this system's thread CPU
// clock is not read here, so figures include time other work took.
func threadCPU() int64 { return int64(time.Since(epoch)) }
