package main

import (
	"slices"
	"testing"
	"time"

	"github.com/edgepixel/edgepixel/edge/pop"
)

func TestSplitGuest(t *testing.T) {
	us := time.Microsecond
	g := splitGuest([]pop.GuestSample{
		{Instance: 1, CPU: 10 * us, Answer: 9 * us},
		{Instance: 2, CPU: 20 * us, Answer: 20 * us},
		{Instance: 1, CPU: 10 * us, Answer: 10 * us},
		// Instance 1 flushes after its third hit: 30 µs over 3 hits.
		{Instance: 1, CPU: 40 * us, Answer: 10 * us, BackendSends: 1},
		{Instance: 2, CPU: 60 * us, Answer: 20 * us, BackendSends: 2},
		{Instance: 1, CPU: 7 * us, Answer: 7 * us},
	})
	if want := []time.Duration{10 * us, 20 * us, 10 * us, 40 * us, 60 * us, 7 * us}; !slices.Equal(g.all, want) {
		t.Errorf("all = %v, want %v", g.all, want)
	}
	want := []time.Duration{20 * us, 40 * us, 20 * us, 20 * us, 40 * us, 7 * us}
	if !slices.Equal(g.amortised, want) {
		t.Errorf("amortised = %v, want %v", g.amortised, want)
	}
	if want := []time.Duration{10 * us, 20 * us, 10 * us, 7 * us}; !slices.Equal(g.noFlush, want) {
		t.Errorf("noFlush = %v, want %v", g.noFlush, want)
	}
	if g.flushes != 2 {
		t.Errorf("flushes = %d, want 2", g.flushes)
	}
	var sumAll, sumAm time.Duration
	for i := range g.all {
		sumAll += g.all[i]
		sumAm += g.amortised[i]
	}
	if sumAll != sumAm {
		t.Errorf("amortising changed the total: %v, %v", sumAll, sumAm)
	}
}
