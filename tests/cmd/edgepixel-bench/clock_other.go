//go:build !linux

package main

import "time"

// threadClockFloor: the POP reads no thread CPU clock here.
func threadClockFloor() (time.Duration, bool) { return 0, false }
