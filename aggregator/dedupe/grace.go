package dedupe

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/edgepixel/edgepixel/shared/event"
)

// The grace period after Redis lost its memory.
//
// When a group's memory is lost, the claims pending in it go too, among
// them those of loads another aggregator is inserting right now. A claim
// of such an id by a second aggregator finds nothing: if it then asked
// the store (Uncertain) or did not even ask (New: the id is newer than
// the store's newest event, which is what the epoch is), it would store
// the id while the first insert is still running, and both would land.
//
// So the call that starts a new epoch also sets the group's grace key,
// which expires ClaimLease later on Redis's clock. While it lives, a
// claim of an id that has no claim in the group answers Busy and writes
// nothing: the caller waits, or requeues the event, as for an id another
// aggregator holds. Meanwhile every live aggregator re-asserts the ids
// of its loads in flight (claimed and not yet marked done) as pending
// under its own token, in every group whose memory is new (Reassert),
// as soon as it notices: in its next claim or mark, or its next lease
// renewal, a quarter of ClaimLease at most. After the grace period an id
// with no claim is claimed as before (Uncertain up to the epoch, asked
// of the store), and an id one re-asserted is Busy while its holder's
// lease lives, then passed on (Uncertain) if the holder died. The normal
// path pays one EXISTS per script call.

// renewMarks are the markers one lease renewal read of a group.
type renewMarks struct {
	epoch *redis.Cmd
	grace *redis.IntCmd
	seq   *redis.IntCmd
}

// OnNewEpoch sets f, which is called when this process must re-assert
// the claims it holds (see Reassert): a group's memory is new (its
// epoch is missing or changed, or its sequence number went back), or a
// grace period runs in a group whose current epoch this process has not
// re-asserted its claims in. f is called from Claim, MarkDone and the
// lease renewal, possibly with locks held: it must not block (signal a
// goroutine that calls Reassert). Call before use.
func (r *Redis) OnNewEpoch(f func()) { r.onNewEpoch = f }

func (r *Redis) newEpochSeen() {
	if r.onNewEpoch != nil {
		r.onNewEpoch()
	}
}

// renewed looks at the markers a lease renewal read.
func (r *Redis) renewed(ms []renewMarks) {
	need := false
	r.reMu.Lock()
	for i, m := range ms {
		e, err := m.epoch.Text()
		missing := errors.Is(err, redis.Nil)
		if err != nil && !missing {
			continue
		}
		seq, err := m.seq.Result()
		if err != nil {
			continue
		}
		if seq <= r.renewSeq[i] {
			r.renewLost[i] = true // writes lost; the epoch may still be there
		}
		r.renewSeq[i] = seq
		if missing || r.renewLost[i] || (m.grace.Val() == 1 && e != r.reasserted[i]) {
			need = true
		}
	}
	r.reMu.Unlock()
	if need {
		r.newEpochSeen()
	}
}

// Reassert writes ids, the ids this process claimed and has not yet
// marked done (its loads in flight), as pending under its own token
// wherever a group's memory is new and they have no claim there, and
// starts the new epochs (with their grace periods) not yet started. Ids
// claimed or done in the new memory are left as they are. It handles
// only groups that lost their memory or are in a grace period this
// process has not re-asserted in, so calling it again is cheap. Call it
// when OnNewEpoch's function was called, and before any of the ids'
// claims can have been answered (a claim of them in progress must have
// returned, and its ids be among ids). The caller must still mark every
// id done after the call returns, even one it marked before (the mark
// may have gone with the old memory).
func (r *Redis) Reassert(ctx context.Context, ids []event.ID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	pipe := r.c.Pipeline()
	ms := make([]renewMarks, len(r.groups))
	seqs := make([]*redis.StringCmd, len(r.groups))
	for i, g := range r.groups {
		ms[i] = renewMarks{epoch: r.readEpoch(ctx, pipe, g), grace: pipe.Exists(ctx, g.graceKey())}
		seqs[i] = pipe.Get(ctx, g.seqKey())
	}
	if err := r.exec(ctx, pipe); err != nil {
		return fmt.Errorf("redis reassert: %w", err)
	}
	need := make([]bool, len(r.groups))
	var gs []int
	r.reMu.Lock()
	for i, g := range r.groups {
		e, err := ms[i].epoch.Text()
		missing := errors.Is(err, redis.Nil)
		if err != nil && !missing {
			r.reMu.Unlock()
			return fmt.Errorf("redis reassert: %w", err)
		}
		changed := missing || !g.epochKnown || e != strconv.FormatInt(g.epoch, 10)
		if changed || r.renewLost[i] {
			// This memory is new to this process: what it cached of the
			// old one goes, and it works from the new epoch (started
			// below if no one has yet), and from the sequence as it is.
			g.layouts, g.epochKnown = map[int64]uint8{}, false
			if r.renewLost[i] {
				g.seen = true // the renewal saw the memory before
				if !missing {
					g.forceEpoch = true // the epoch survived, writes did not
				}
			}
			seq, _ := seqs[i].Int64()
			g.lastSeq = seq
			g.seen = g.seen || len(ids) > 0 // it holds claims from before
			r.renewLost[i] = false
		}
		if g.forceEpoch || missing || changed || (ms[i].grace.Val() == 1 && e != r.reasserted[i]) {
			need[i] = true
			gs = append(gs, i)
		}
	}
	r.reMu.Unlock()
	if len(gs) == 0 {
		return nil
	}

	// Write the claims first: a grace period may already be running.
	var in []place
	for _, p := range r.split(ids, nil) {
		if need[p.g] {
			in = append(in, p)
		}
	}
	if len(in) > 0 {
		st := stats(in)
		if err := r.resolveLayouts(ctx, st); err != nil {
			return err
		}
		buckets := r.buckets(ids, in)
		pipe = r.c.Pipeline()
		var calls []scriptCall
		for _, g := range gs {
			calls = append(calls, r.evalClaims(ctx, pipe, g, "r", ids, in, buckets[g])...)
		}
		if err := r.exec(ctx, pipe); err != nil {
			return fmt.Errorf("redis reassert: %w", err)
		}
		for _, c := range calls {
			if err := c.cmd.Err(); err != nil {
				return fmt.Errorf("redis reassert: %w", err)
			}
		}
	}
	if err := r.ensureEpochs(ctx, gs); err != nil {
		return err
	}
	r.reMu.Lock()
	for _, g := range gs {
		r.reasserted[g] = strconv.FormatInt(r.groups[g].epoch, 10)
	}
	r.reMu.Unlock()
	r.log.Info("re-asserted the claims of loads in flight after Redis lost its memory", "ids", len(in), "groups", len(gs))
	return nil
}
