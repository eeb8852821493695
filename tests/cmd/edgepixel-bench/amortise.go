package main

import (
	"time"

	"github.com/edgepixel/edgepixel/edge/pop"
)

// guestSplit is the POP's per-hit guest times three ways.
type guestSplit struct {
	// all: each hit's CPU, a flush counting to the hit it followed (the
	// POP's GuestTimes).
	all []time.Duration
	// amortised: each batch's flush spread over the hits of that batch.
	// A batch is an instance's hits up to and including the one after
	// which it made a backend request; that hit's work after its answer
	// (the flush) is taken off it and shared equally by the batch's hits.
	// Hits after an instance's last flush in the window keep their own
	// time (their batch's flush was not seen), and flushes a guest makes
	// while idle, between requests, are in no hit's time at all.
	amortised []time.Duration
	// noFlush: the hits after which no backend request was made.
	noFlush []time.Duration
	flushes int
}

func splitGuest(samples []pop.GuestSample) guestSplit {
	var g guestSplit
	open := map[uint64][]int{} // instance -> indexes into amortised of its unflushed batch
	for _, s := range samples {
		g.all = append(g.all, s.CPU)
		i := len(g.amortised)
		g.amortised = append(g.amortised, s.CPU)
		batch := append(open[s.Instance], i)
		if s.BackendSends == 0 {
			g.noFlush = append(g.noFlush, s.CPU)
			open[s.Instance] = batch
			continue
		}
		g.flushes++
		flush := s.CPU - s.Answer
		g.amortised[i] -= flush
		share := flush / time.Duration(len(batch))
		for _, j := range batch {
			g.amortised[j] += share
		}
		open[s.Instance] = batch[:0]
	}
	return g
}
