package dedupe

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/edgepixel/edgepixel/shared/event"
	"github.com/edgepixel/edgepixel/shared/redact"
)

// Redis is the Deduper for production: its state survives aggregator
// restarts and is shared by every aggregator using the same Redis.
//
// # Layout: about 20 bytes of Redis memory per remembered id
//
// One key per id costs about 150 bytes (key, value, expiry, dict
// entries). Instead, ids are packed into small hashes that Redis keeps in
// its compact listpack encoding (up to hash-max-listpack-entries fields:
// 128 upstream, 512 in Debian's build): an id costs its 12-byte field plus
// 2 bytes of framing and a one-byte integer value plus 1, and the hash's
// own overhead (~110 bytes) is shared by a few dozen ids.
//
// An event id is a UUIDv7: its first 48 bits are the creation time in ms.
// Ids are bucketed by the 10-second slot they were created in:
//
//	bucket  ep:b<slot:4><shard bits:1><shard:3>  hash, EXPIREAT end of slot + window + slack
//	field   <ms within the slot:2><id bytes 6..15>  (12 bytes: with the key, the whole id)
//	value   <owner token> = pending (claimed by that process), 1 = done (stored)
//
// A slot has 2^bits buckets (bits 0..24). The shard's high bits (at most
// 5) are the slice of the slot the id was created in, the rest random id
// bits, so the ids of one loader batch, created within a fraction of a
// second, share a few thousand buckets at most and each bucket takes one
// command for all of them. How many bits a slot gets is decided once, by
// whichever aggregator first claims an id of that slot, from the ids
// claimed in the slot before and the density of the ids being claimed,
// aiming at 16-32 ids per hash (a quarter of the listpack limit at most);
// the choice is written with HSETNX to a per-hour layout hash ep:L<hour:4>
// (field b<slot in hour:2>, beside the per-slot claim counts c<slot>) and
// never changes, so a retry a day later, or another aggregator, finds the
// same bucket. A slot whose rate was badly underestimated only grows
// bigger hashes (Redis converts them to its larger hashtable encoding):
// correctness never depends on the estimate. No Redis configuration is
// changed; CONFIG GET hash-max-listpack-entries is read when available.
// Below about 1 id a second the fixed cost of a bucket dominates and an id
// costs more than 40 bytes, which is then a few MB a day.
//
// # Protocol and round trips
//
// Claim is one pipelined round trip: EVALs of a short script, each
// covering many buckets (about 4,000 ids), that per bucket reads every
// field (HMGET), claims the absent ones (one HSET, and EXPIREAT if it
// added any), and answers new / pending / done for each; plus the epoch
// read, a claim count per slot, and the sequence increment below. A slot seen for the first time by this
// process adds two small round trips (read, or decide, its layout).
// MarkDone is one round trip: HSET of all the bucket's fields to 1, and
// EXPIREAT, per bucket. Done implies stored: the loader marks only after
// the insert, so a crash in between leaves "pending", which the next
// attempt resolves against the store (Uncertain).
//
// # Several aggregators
//
// A pending claim names its owner: every Redis deduper (one per
// aggregator process) has a random token, and holds a lease key
// ep:O<token> (in a cluster one per group, ep:{TAG}O<token>) that it
// renews every ClaimLease/4 and that expires ClaimLease after the last
// renewal. Claim answers an id pending under another token as Busy while
// that token's lease lives: its owner may be inserting it this very
// moment, so asking the store now could find nothing and store it a
// second time. The caller claims it again later and gets Duplicate once
// the owner marks it done; if the owner died, its lease runs out, and the
// next claim takes the id over (writes its own token) and answers
// Uncertain, to be resolved against the store. A pending claim under the
// caller's own token (its own earlier attempt) is Uncertain, as before.
// Close drops the lease at once, so a cleanly stopped aggregator's claims
// pass on without waiting. A pending value "0" (written by a build before
// owners) is taken over as Uncertain.
//
// This assumes an owner that cannot renew its lease cannot store either
// (it is dead, or cut off from Redis and stuck in its next claim or
// mark): an aggregator that reaches ClickHouse but not Redis for longer
// than ClaimLease while an insert is still running could race the one
// taking over. The events table's ReplacingMergeTree would collapse
// such a copy in its merges.
//
// # The window, and ids outside it
//
// Ids are remembered for at least Window after their creation time. An id
// whose time is more than Window in the past (a backlog after a long
// outage), or more than an hour in the future (ingest refuses those; a
// broken or forged id), is not looked up at all: Claim answers Uncertain,
// so the loader asks the event store whether it holds it. Beyond that, the
// events table's ReplacingMergeTree collapses any copy two aggregators
// might race to insert.
//
// # When Redis loses its memory
//
// Redis restarted without persistence, flushed, replaced, or restored from
// an older snapshot forgets claims: a batch the edge retries would look
// New and be stored twice. Two markers catch this:
//
//   - ep:E holds the epoch: the newest event time the store held when this
//     Redis memory began (no expiry). If it is missing, the memory is new.
//   - ep:S is incremented at the end of every pipeline. If it ever returns
//     a value not above the last one this process saw, writes were lost.
//
// Either way the aggregator asks the store for its newest event time M and
// writes it as the new epoch; from then on ids with time <= M are
// Uncertain rather than New, so they are checked against the store before
// anything is inserted. New traffic (time > M) was never stored and needs
// no check, and a fresh install (empty store) checks nothing. The first
// start after upgrading from the one-key-per-id layout is such a start:
// old keys are ignored and simply expire.
//
// Neither check covers ids another aggregator is inserting right now:
// its claims went with the memory and the store does not hold them yet.
// So a new epoch starts a grace period of ClaimLease (the grace key
// ep:G, expiring on Redis's clock) in which a claim of an id with no
// claim answers Busy, while every live aggregator re-asserts the claims
// of its loads in flight (Reassert; see grace.go). A new install (an
// empty store, and no earlier memory seen by the process starting the
// epoch) has no grace period. The claim script itself refuses to write
// into a memory whose epoch or sequence is not the one the caller knows.
//
// Redis must not evict keys (maxmemory-policy noeviction, the default):
// an evicted bucket is a silent partial loss. Run Redis with the
// append-only file on; its everysec default loses nothing when Redis
// crashes, only when the machine does (then the markers above apply).
//
// # Redis Cluster
//
// On a cluster (NewRedisCluster) every key above lives in one of
// ClusterGroups groups: its name starts "ep:{TAG}" instead of "ep:",
// where the hash tag TAG puts all of a group's keys in one hash slot. An
// id's group is taken from its random bits (bytes 10-11), so a load
// spreads evenly over the groups and thus the masters; each group has
// its own epoch, sequence and layouts, and every script call stays
// within one group, as a cluster requires. Replication is asynchronous,
// so a master's failover can lose acknowledged writes without a restart
// or a missing key: a fence (see NewRedisCluster) detects the new master
// per group, and the group starts a new epoch as above.
type Redis struct {
	c redis.UniversalClient
	// cluster: c is a ClusterClient and groups carry hash tags; fence:
	// epochs are read through fenceScript (on in a cluster).
	cluster, fence bool
	groups         []*group
	window         time.Duration
	slack          time.Duration
	ahead          time.Duration
	target         int // ids per hash the layout aims at (at least)
	now            func() time.Time
	log            *slog.Logger

	// newest returns the newest event time (unix ms) in the store among
	// events at or after since; nil: the store cannot say.
	newest func(ctx context.Context, since time.Time) (int64, error)

	mu         sync.Mutex
	configured bool

	// token names this process's pending claims; lease is how long they
	// stay Busy to others after its last renewal.
	token        string
	lease        time.Duration
	grace        time.Duration // see grace.go; ClaimLease
	leaseRun     sync.Once
	leased       bool          // startLease ran (set inside leaseRun)
	leaseEnd     chan struct{} // closed by Close: the renewal loop stops
	leaseEndOnce sync.Once
	leaseWG      sync.WaitGroup

	// onNewEpoch is called when this process's held claims must be
	// re-asserted (see Reassert); reMu guards what the lease renewal
	// and Reassert share: per group, the epoch the last Reassert covered
	// ("" none), the highest sequence number the renewal saw, and
	// whether the renewal saw it go back.
	onNewEpoch func()
	reMu       sync.Mutex
	reasserted []string
	renewSeq   []int64
	renewLost  []bool
}

// ClaimLease is how long an aggregator's pending claims keep other
// aggregators waiting after it stopped renewing them (it died, or lost
// Redis): they wait rather than risk storing an id it is inserting.
// It must exceed the longest pause between two renewals of a live
// process (a quarter of it).
const ClaimLease = 10 * time.Second

// group is one part of the key space with markers of its own (epoch,
// sequence, and in a cluster the fence): ids are spread over the groups
// by their random bits. A single Redis has one group with the prefix
// "ep:"; a cluster has ClusterGroups, each prefix holding a hash tag, so
// that all of a group's keys share one hash slot and so one master: a
// group's claim script, its markers and its buckets are always served
// together, and what a failover loses is lost, and detected, per group.
type group struct {
	prefix     string
	layouts    map[int64]uint8 // slot -> shard bits
	epoch      int64           // ids with time <= epoch are Uncertain, not New
	epochKnown bool
	lastSeq    int64
	forceEpoch bool // the next ensureEpoch replaces the epoch (after a rollback)
	// seen: this process worked with a memory of this group before (so a
	// new epoch may follow a loss, and gets a grace period).
	seen bool
}

// EpochMargin is how far past its own clock an aggregator treats ids as
// possibly stored when Redis lost its memory and the store cannot name its
// newest event: more than the edge clock skew ingest accepts (the replay
// window, 5 minutes by default).
const EpochMargin = 10 * time.Minute

// NewRedis returns a deduper for the Redis at url (redis://host:port/db).
// It connects lazily: call Ping to check the server answers. Not failing
// here lets the aggregator start, and spool, while Redis is down.
func NewRedis(url string, window time.Duration) (*Redis, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis url %q: %w; want redis://HOST:PORT/DB, e.g. redis://127.0.0.1:6379/0", redact.URL(url), redact.Error(err))
	}
	opt.ReadTimeout = 10 * time.Second // a 50k-command pipeline under load
	opt.WriteTimeout = 10 * time.Second
	opt.DialTimeout = 2 * time.Second
	// The loader retries a failed call itself, with backoff; go-redis
	// retrying inside would only stretch an outage's first error.
	opt.MaxRetries = -1
	return newRedisOn(redis.NewClient(opt), false, window), nil
}

// ClusterGroups is how many groups a Redis Cluster's key space is cut
// into. Each group lives in one hash slot, so it is the unit of balance:
// 48 spreads evenly over 1, 2, 3, 4, 6, 8, 12, 16 or 24 masters that hold
// equal slot ranges (what redis-cli --cluster create makes). It is part of
// the key names, so a build that changed it would start from a new
// (empty, epoch-checked) memory rather than misplace ids.
const ClusterGroups = 48

// NewRedisCluster returns a deduper for the Redis Cluster reached through
// addrs (host:port of any of its nodes; the client learns the rest),
// with username and password if the cluster needs them ("" for none).
// Like NewRedis, it connects lazily.
//
// Ids are spread over ClusterGroups groups whose keys share a hash tag,
// so each group's keys sit in one slot; one Claim makes one pipeline per
// master, run in parallel. Replication in Redis is asynchronous: a master
// that dies can take acknowledged writes with it when its replica takes
// over. Each group's claims therefore run behind a fence, a script that
// compares the replication ID of the master serving it now (INFO's
// master_replid, which a promoted replica changes) with the one it was
// served by before: on a change, the group's epoch is dropped, which
// every aggregator notices in its next call and answers as for a Redis
// that lost its memory (see Redis).
func NewRedisCluster(addrs []string, username, password string, window time.Duration) (*Redis, error) {
	if len(addrs) == 0 {
		return nil, errors.New("redis cluster: no node addresses")
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: addrs, Username: username, Password: password,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, DialTimeout: 2 * time.Second,
		// As for a single Redis, the loader retries; redirections (MOVED,
		// ASK) are still followed.
		MaxRetries: -1,
	})
	return newRedisOn(c, true, window), nil
}

func newRedisOn(c redis.UniversalClient, cluster bool, window time.Duration) *Redis {
	if window <= 0 {
		window = DefaultWindow
	}
	var tok [6]byte
	rand.Read(tok[:])
	r := &Redis{
		c: c, cluster: cluster, fence: cluster, window: window, slack: time.Hour, ahead: time.Hour,
		target: 32, now: time.Now, log: slog.Default(),
		token: base64.RawURLEncoding.EncodeToString(tok[:]), lease: ClaimLease, grace: ClaimLease, leaseEnd: make(chan struct{}),
	}
	if !cluster {
		r.groups = []*group{{prefix: "ep:", layouts: map[int64]uint8{}}}
	} else {
		for _, tag := range clusterTags(ClusterGroups) {
			r.groups = append(r.groups, &group{prefix: "ep:{" + tag + "}", layouts: map[int64]uint8{}})
		}
	}
	r.reasserted = make([]string, len(r.groups))
	r.renewSeq = make([]int64, len(r.groups))
	r.renewLost = make([]bool, len(r.groups))
	return r
}

// Client is the Redis client r uses, for other coordination among the
// aggregators that share it (package lease).
func (r *Redis) Client() redis.UniversalClient { return r.c }

// clusterTags returns n hash tags, the g-th one hashing into the g-th of
// n equal ranges of the 16384 slots: "n/g/k" with the smallest k that
// does. Equal slot ranges per master then hold equal numbers of groups.
func clusterTags(n int) []string {
	tags := make([]string, n)
	for g := range tags {
		lo, hi := g*16384/n, (g+1)*16384/n
		for k := 0; ; k++ {
			t := strconv.Itoa(n) + "/" + strconv.Itoa(g) + "/" + strconv.Itoa(k)
			if s := int(keySlot(t)); s >= lo && s < hi {
				tags[g] = t
				break
			}
		}
	}
	return tags
}

// keySlot is Redis Cluster's hash slot of a hash tag's content: CRC16
// (XMODEM: polynomial 0x1021, initial value 0) mod 16384, as the Redis
// Cluster specification defines it.
func keySlot(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}

// groupOf is the group an id belongs to: random bits of the id (bytes 10
// and 11), independent of the ones shardOf takes.
func (r *Redis) groupOf(id event.ID) int {
	if len(r.groups) == 1 {
		return 0
	}
	return int(uint16(id[10])<<8|uint16(id[11])) % len(r.groups)
}

// UseStore lets the deduper ask the event store for its newest event time
// (unix ms, 0 if none) among events at or after since, which bounds the
// ids to check after Redis lost its memory. Without it, every id up to
// EpochMargin past the time of the loss is checked. Call before use.
func (r *Redis) UseStore(newest func(ctx context.Context, since time.Time) (int64, error)) {
	r.newest = newest
}

// SetLogger sets where the deduper logs (default slog.Default()).
func (r *Redis) SetLogger(l *slog.Logger) { r.log = l.With("component", "dedupe") }

// ErrMemoryLost is returned (wrapped) by Claim and MarkDone when Redis
// turned out to have lost writes; the next call works from a new epoch.
var ErrMemoryLost = errors.New("redis lost its dedupe memory (restarted without persistence, flushed or restored from an older snapshot): ids up to the store's newest event are checked against the store")

// ErrStore wraps an error of the event store, which Claim asks when Redis
// lost its memory.
var ErrStore = errors.New("dedupe: the event store did not answer")

const (
	slotMS       = 10_000 // ids are bucketed by the 10-second slot they were created in
	slotsPerHour = 3600_000 / slotMS
	maxBits      = 24
)

// idMS is the creation time an id carries (UUIDv7: 48 bits of unix ms).
func idMS(id event.ID) int64 {
	return int64(id[0])<<40 | int64(id[1])<<32 | int64(id[2])<<24 | int64(id[3])<<16 | int64(id[4])<<8 | int64(id[5])
}

// timeBits caps the shard bits taken from the time: slices of a slot
// no shorter than 10000/2^5 = 312 ms. A loader batch spans about that
// much time, so it touches a slice or two; longer slices would group
// fewer of its ids per bucket, shorter ones would let a burst of ids
// created in the same few ms (one POST of many events, one busy edge)
// crowd one bucket past the listpack limit.
const timeBits = 5

// shardOf places an id within its slot: the top bits are the slice of
// the slot it was created in, the rest random bits of the id (its last
// three bytes). Ids created close together share buckets, so one batch
// touches few buckets, each with one command for all its ids.
func shardOf(id event.ID, ms int64, b uint8) uint32 {
	t := min(b, timeBits)
	slice := uint32((ms % slotMS) << t / slotMS)
	rnd := (uint32(id[13])<<16 | uint32(id[14])<<8 | uint32(id[15])) & (1<<(b-t) - 1)
	return slice<<(b-t) | rnd
}

func (g *group) bucketKey(slot int64, b uint8, shard uint32) string {
	k := make([]byte, 0, len(g.prefix)+9)
	k = append(k, g.prefix...)
	k = append(k, 'b')
	k = binary.BigEndian.AppendUint32(k, uint32(slot))
	k = append(k, b, byte(shard>>16), byte(shard>>8), byte(shard))
	return string(k)
}

func field(id event.ID, ms int64) string {
	var f [12]byte
	binary.BigEndian.PutUint16(f[:], uint16(ms%slotMS))
	copy(f[2:], id[6:])
	return string(f[:])
}

func (g *group) layoutKey(slot int64) string {
	k := make([]byte, 0, len(g.prefix)+5)
	k = append(k, g.prefix...)
	k = append(k, 'L')
	k = binary.BigEndian.AppendUint32(k, uint32(slot/slotsPerHour))
	return string(k)
}

func layoutField(kind byte, slot int64) string {
	i := slot % slotsPerHour
	return string([]byte{kind, byte(i >> 8), byte(i)})
}

// deadline is when the buckets of slot may go: the window after the
// slot ends, plus slack for a load in progress.
func (r *Redis) deadline(slot int64) time.Time {
	return time.UnixMilli((slot + 1) * slotMS).Add(r.window + r.slack)
}

func (r *Redis) layoutDeadline(slot int64) time.Time {
	return r.deadline(slot/slotsPerHour*slotsPerHour + slotsPerHour - 1)
}

func (g *group) epochKey() string { return g.prefix + "E" }
func (g *group) seqKey() string   { return g.prefix + "S" }
func (g *group) fenceKey() string { return g.prefix + "R" }
func (g *group) graceKey() string { return g.prefix + "G" }
func (g *group) leaseKey(token string) string {
	return g.prefix + "O" + token
}

// place is where one id goes, computed once per call.
type place struct {
	i    int // index in ids
	ms   int64
	slot int64
	g    int // group
}

// slotStat is what Claim saw of one slot, for the layout decision.
type slotStat struct {
	n        int
	min, max int64
}

// groupSlot names a slot within a group: each group decides its slots'
// layouts from its own ids.
type groupSlot struct {
	g    int
	slot int64
}

// split sorts ids into those inside the window (returned) and the rest,
// whose status it sets to Uncertain.
func (r *Redis) split(ids []event.ID, out []Status) []place {
	now := r.now()
	lo, hi := now.Add(-r.window).UnixMilli(), now.Add(r.ahead).UnixMilli()
	in := make([]place, 0, len(ids))
	for i, id := range ids {
		ms := idMS(id)
		if ms < lo || ms > hi {
			if out != nil {
				out[i] = Uncertain
			}
			continue
		}
		in = append(in, place{i: i, ms: ms, slot: ms / slotMS, g: r.groupOf(id)})
	}
	return in
}

// touched lists the groups of in, in order.
func (r *Redis) touched(in []place) []int {
	seen := make([]bool, len(r.groups))
	for _, s := range in {
		seen[s.g] = true
	}
	var gs []int
	for g, ok := range seen {
		if ok {
			gs = append(gs, g)
		}
	}
	return gs
}

// stats counts in's ids per group and slot, for the layout decisions.
func stats(in []place) map[groupSlot]*slotStat {
	out := map[groupSlot]*slotStat{}
	for _, s := range in {
		k := groupSlot{s.g, s.slot}
		st := out[k]
		if st == nil {
			st = &slotStat{min: s.ms, max: s.ms}
			out[k] = st
		}
		st.n++
		st.min, st.max = min(st.min, s.ms), max(st.max, s.ms)
	}
	return out
}

// fenceScript reads a group's epoch (KEYS[1]) unless the master serving
// the group is not the one that served it before: KEYS[2] holds the
// replication ID (INFO's master_replid) of the master the group's memory
// was last served by. A replica promoted after its master failed takes a
// new replication ID, and may lack the last writes its master
// acknowledged; then the epoch is deleted, which makes this and every
// other aggregator start a new one (checked against the store), and the
// new ID is recorded. It answers the epoch, or nil.
var fenceScript = redis.NewScript(`
local id = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
if redis.call('GET', KEYS[2]) ~= id then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], id)
  return false
end
return redis.call('GET', KEYS[1])
`)

// doScripter is a pipeline or a client.
type doScripter interface {
	redis.Scripter
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// readEpoch queues the read of group g's epoch: through the fence in a
// cluster, a plain GET otherwise (a single Redis is not failed over; its
// restarts are caught by the markers, see Redis).
func (r *Redis) readEpoch(ctx context.Context, c doScripter, g *group) *redis.Cmd {
	if r.fence {
		return fenceScript.Eval(ctx, c, []string{g.epochKey(), g.fenceKey()})
	}
	return c.Do(ctx, "get", g.epochKey())
}

// claimScript claims ids in several buckets at once. For each key
// KEYS[j], ARGV holds the bucket's expiry (unix s), its number of fields n
// and the n fields, after ARGV[1..6]: the caller's token, its lease (ms),
// the group's key prefix, the mode ("c" claim, "r" re-assert), and for a
// claim the epoch the caller works from and the last sequence number it
// saw. It answers one character per field, in order: '0' (claimed now),
// '1' (pending under the caller's token, or under one whose lease ended:
// now the caller's), '2' (done) or '3' (pending under another token whose
// lease lives, or absent during a grace period: see Redis). It renews the
// caller's lease in the group first.
//
// A claim first checks the group's markers: if the epoch is not the one
// the caller works from, or the sequence number went back below what it
// saw, this memory is not the one the caller knows (it was lost, or
// another aggregator started a new epoch), and the script answers "L"
// and writes nothing: a claim written into a memory the caller then
// rejects would come back as its own on the retry, and so Uncertain
// rather than Busy, while another aggregator may be inserting the id.
// A re-assert writes the caller's token where a field is absent and
// changes nothing else; its answer is not used.
//
// Per bucket it makes one HMGET and, if anything is new, one HSET and one
// EXPIREAT: the expiry only matters when the hash may have been created
// now (it is the same value for every id of a slot). Checking and claiming
// stay atomic per bucket, as the script runs atomically. One script call
// covers many buckets because the fixed cost of an EVAL (parsing, hashing
// the script, setting up the call, wrapping its effects for the AOF) was
// most of Redis's CPU when each bucket, of 10-30 ids, had one.
var claimScript = redis.NewScript(`
local me, lease, pfx, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if mode == 'c' then
  if redis.call('GET', pfx .. 'E') ~= ARGV[5] or tonumber(redis.call('GET', pfx .. 'S') or '0') < tonumber(ARGV[6]) then
    return 'L'
  end
end
redis.call('SET', pfx .. 'O' .. me, '1', 'PX', lease)
local grace = mode == 'c' and redis.call('EXISTS', pfx .. 'G') == 1
local alive = {}
local a, out = 7, {}
for j = 1, #KEYS do
  local key, exp, n = KEYS[j], ARGV[a], tonumber(ARGV[a+1])
  a = a + 2
  local got = redis.call('HMGET', key, unpack(ARGV, a, a + n - 1))
  local set, k = {}, 0
  for i = 1, n do
    local v = got[i]
    if not v then
      if grace then
        out[#out+1] = '3'
      else
        out[#out+1] = '0'
        set[k+1] = ARGV[a + i - 1]
        set[k+2] = me
        k = k + 2
      end
    elseif v == '1' then
      out[#out+1] = '2'
    elseif v == me or mode ~= 'c' then
      out[#out+1] = '1'
    else
      local live = alive[v]
      if live == nil then
        live = v ~= '0' and redis.call('EXISTS', pfx .. 'O' .. v) == 1
        alive[v] = live
      end
      if live then
        out[#out+1] = '3'
      else
        out[#out+1] = '1'
        set[k+1] = ARGV[a + i - 1]
        set[k+2] = me
        k = k + 2
      end
    end
  end
  if k > 0 then
    redis.call('HSET', key, unpack(set))
    redis.call('EXPIREAT', key, exp)
  end
  a = a + n
end
return table.concat(out)
`)

// Limits of one script call. Lua's unpack takes at most a few thousand
// values (LUAI_MAXCSTACK, 8000 in Redis), so a bucket's fields go in runs
// of at most maxRun (also the most fields of one HSET in MarkDone); and a
// call stops taking buckets at about maxCall fields, which keeps each
// atomic script run to a few milliseconds.
const (
	maxRun  = 1000
	maxCall = 4000
)

// bucket is the ids of one call that share a bucket.
type bucket struct {
	key  string
	slot int64
	js   []int // indexes into the call's slots
}

// buckets sorts places into buckets, per group, in order of first
// appearance. A bucket with more than maxRun ids is cut into several with
// the same key.
func (r *Redis) buckets(ids []event.ID, in []place) [][]*bucket {
	// Keyed by group, slot and shard (a slot's layout is fixed), so that
	// the key string is made once per bucket, not once per id.
	type where struct {
		g     int
		slot  int64
		shard uint32
	}
	byKey := make(map[where]*bucket, len(in)/8+1)
	out := make([][]*bucket, len(r.groups))
	for j, s := range in {
		g := r.groups[s.g]
		b := g.layouts[s.slot]
		w := where{s.g, s.slot, shardOf(ids[s.i], s.ms, b)}
		bk := byKey[w]
		if bk == nil || len(bk.js) == maxRun {
			bk = &bucket{key: g.bucketKey(s.slot, b, w.shard), slot: s.slot, js: make([]int, 0, 16)}
			byKey[w] = bk
			out[s.g] = append(out[s.g], bk)
		}
		bk.js = append(bk.js, j)
	}
	return out
}

// scriptCall is one EVAL of claimScript: buckets[lo:hi] of one group.
type scriptCall struct {
	g, lo, hi int
	cmd       *redis.Cmd
}

// evalClaims queues claimScript over one group's buckets in calls of
// about maxCall fields (a call never mixes groups: in a cluster they are
// in different slots).
func (r *Redis) evalClaims(ctx context.Context, pipe redis.Pipeliner, g int, mode string, ids []event.ID, in []place, buckets []*bucket) []scriptCall {
	gr := r.groups[g]
	var calls []scriptCall
	for lo := 0; lo < len(buckets); {
		hi, fields := lo, 0
		for hi < len(buckets) && (hi == lo || fields+len(buckets[hi].js) <= maxCall) {
			fields += len(buckets[hi].js)
			hi++
		}
		keys := make([]string, 0, hi-lo)
		args := make([]any, 0, 6+2*(hi-lo)+fields)
		args = append(args, r.token, r.lease.Milliseconds(), gr.prefix, mode, strconv.FormatInt(gr.epoch, 10), gr.lastSeq)
		for _, bk := range buckets[lo:hi] {
			keys = append(keys, bk.key)
			args = append(args, r.deadline(bk.slot).Unix(), len(bk.js))
			for _, j := range bk.js {
				args = append(args, field(ids[in[j].i], in[j].ms))
			}
		}
		calls = append(calls, scriptCall{g: g, lo: lo, hi: hi, cmd: claimScript.Eval(ctx, pipe, keys, args...)})
		lo = hi
	}
	return calls
}

// markers are the epoch and sequence reads one pipeline made of a group.
type markers struct {
	g     int
	epoch *redis.Cmd
	seq   *redis.IntCmd
}

func (r *Redis) Claim(ctx context.Context, ids []event.ID) ([]Status, error) {
	out := make([]Status, len(ids))
	in := r.split(ids, out)
	if len(in) == 0 {
		return out, nil
	}
	r.leaseRun.Do(r.startLease)
	r.mu.Lock()
	defer r.mu.Unlock()
	gs := r.touched(in)
	if err := r.ensureEpochs(ctx, gs); err != nil {
		return nil, err
	}
	st := stats(in)
	if err := r.resolveLayouts(ctx, st); err != nil {
		return nil, err
	}
	buckets := r.buckets(ids, in)

	// One pipeline: a cluster client sends each master its groups'
	// commands, in order, on one connection, all masters at once.
	pipe := r.c.Pipeline()
	var marks []markers
	var calls []scriptCall
	for _, g := range gs {
		m := markers{g: g, epoch: r.readEpoch(ctx, pipe, r.groups[g])}
		calls = append(calls, r.evalClaims(ctx, pipe, g, "c", ids, in, buckets[g])...)
		for k, s := range st {
			if k.g == g {
				pipe.HIncrBy(ctx, r.groups[g].layoutKey(k.slot), layoutField('c', k.slot), int64(s.n))
			}
		}
		m.seq = pipe.Incr(ctx, r.groups[g].seqKey())
		marks = append(marks, m)
	}
	if err := r.exec(ctx, pipe); err != nil {
		return nil, fmt.Errorf("redis claim: %w", err)
	}
	if err := r.checkMemory(marks); err != nil {
		return nil, err
	}
	var moved []string
	for _, c := range calls {
		if res, err := c.cmd.Text(); err == nil && res == "L" {
			// The markers moved between their read and the script's: the
			// script wrote nothing.
			g := r.groups[c.g]
			if !g.epochKnown {
				continue
			}
			g.layouts, g.epochKnown = map[int64]uint8{}, false
			moved = append(moved, g.prefix)
		}
	}
	if len(moved) > 0 {
		r.log.Warn("redis dedupe memory changed during a claim; starting over from its new epoch", "groups", len(moved))
		r.newEpochSeen()
		return nil, fmt.Errorf("%w (%d of %d key groups)", ErrMemoryLost, len(moved), len(r.groups))
	}
	for _, c := range calls {
		res, err := c.cmd.Text()
		bs := buckets[c.g][c.lo:c.hi]
		want := 0
		for _, bk := range bs {
			want += len(bk.js)
		}
		if err != nil || len(res) != want {
			return nil, fmt.Errorf("redis claim: %d answers for %d ids: %v", len(res), want, err)
		}
		epoch := r.groups[c.g].epoch
		k := 0
		for _, bk := range bs {
			for _, j := range bk.js {
				s := in[j]
				switch res[k] {
				case '0':
					if s.ms <= epoch {
						// Claimed now, but it may have been stored before
						// this memory began: the store decides.
						out[s.i] = Uncertain
					} else {
						out[s.i] = New
					}
				case '2':
					out[s.i] = Duplicate
				case '3':
					out[s.i] = Busy
				default: // pending: an attempt that did not finish
					out[s.i] = Uncertain
				}
				k++
			}
		}
	}
	return out, nil
}

// MarkDone sets the ids to done: per bucket one HSET and one EXPIREAT. It
// is a plain HSET rather than one that requires the field: if a claim was
// lost the id must still end up marked. Ids outside the window were never
// claimed and are skipped. (Plain commands cost Redis less here than a
// script would: a script's arguments all become Lua strings first.)
func (r *Redis) MarkDone(ctx context.Context, ids []event.ID) error {
	in := r.split(ids, nil)
	if len(in) == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	gs := r.touched(in)
	if err := r.ensureEpochs(ctx, gs); err != nil {
		return err
	}
	// Slots not claimed through this process (a restart in between): read
	// their layouts, which the claim wrote.
	missing := map[groupSlot]*slotStat{}
	for k, s := range stats(in) {
		if _, ok := r.groups[k.g].layouts[k.slot]; !ok {
			missing[k] = s
		}
	}
	if err := r.resolveLayouts(ctx, missing); err != nil {
		return err
	}
	buckets := r.buckets(ids, in)
	pipe := r.c.Pipeline()
	var marks []markers
	for _, g := range gs {
		m := markers{g: g, epoch: r.readEpoch(ctx, pipe, r.groups[g])}
		for _, bk := range buckets[g] {
			// A fresh slice each: the pipeline keeps it until Exec.
			args := make([]any, 0, 2+2*len(bk.js))
			args = append(args, "hset", bk.key)
			for _, j := range bk.js {
				args = append(args, field(ids[in[j].i], in[j].ms), 1)
			}
			pipe.Do(ctx, args...)
			// A bucket lost with Redis's memory is created again here.
			pipe.ExpireAt(ctx, bk.key, r.deadline(bk.slot))
		}
		m.seq = pipe.Incr(ctx, r.groups[g].seqKey())
		marks = append(marks, m)
	}
	if err := r.exec(ctx, pipe); err != nil {
		return fmt.Errorf("redis mark done: %w", err)
	}
	return r.checkMemory(marks)
}

// exec runs a pipeline; a nil reply (redis.Nil) is not an error. After a
// failure a cluster client is made to read the slot map again, so that
// the retry goes to a replica that took over: the client's own reload
// follows MOVED replies, which a dead master's refused connections never
// give.
func (r *Redis) exec(ctx context.Context, pipe redis.Pipeliner) error {
	_, err := pipe.Exec(ctx)
	if err == nil || errors.Is(err, redis.Nil) {
		return nil
	}
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		cc.ReloadState(ctx)
	}
	return err
}

// checkMemory looks at the markers read by a pipeline, per group: a
// missing or changed epoch, or a sequence number that went back, means
// Redis lost writes of that group. Then the group's caches are dropped
// and ErrMemoryLost returned: the caller retries, and the retry starts a
// new epoch for the group first.
func (r *Redis) checkMemory(marks []markers) error {
	var lostGroups []string
	for _, m := range marks {
		g := r.groups[m.g]
		v, err := m.epoch.Text()
		lost := errors.Is(err, redis.Nil)
		if err != nil && !lost {
			return fmt.Errorf("redis: %w", err)
		}
		if !lost {
			if ep, perr := strconv.ParseInt(v, 10, 64); perr != nil || ep != g.epoch {
				lost = true // another aggregator started a new epoch
			}
		}
		seq, err := m.seq.Result()
		if err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		rollback := seq <= g.lastSeq
		last := g.lastSeq
		g.lastSeq = seq
		g.seen = true
		if !lost && !rollback {
			continue
		}
		if len(lostGroups) == 0 {
			r.log.Warn("redis lost dedupe state; starting a new epoch", "group", g.prefix, "epoch_was", g.epoch, "seq", seq, "last_seq", last)
		}
		lostGroups = append(lostGroups, g.prefix)
		g.layouts = map[int64]uint8{}
		g.epochKnown = false
		// A rollback may have kept the epoch key: the next call must replace it.
		g.forceEpoch = rollback
	}
	if len(lostGroups) > 0 {
		r.newEpochSeen()
		return fmt.Errorf("%w (%d of %d key groups)", ErrMemoryLost, len(lostGroups), len(r.groups))
	}
	return nil
}

// ensureEpochs reads the epochs of the groups gs not known yet, starting
// a new one where Redis has none (or where a rollback was seen). The
// store is asked at most once for all of them.
func (r *Redis) ensureEpochs(ctx context.Context, gs []int) error {
	if !r.configured {
		// The first call reads (or starts) every group's epoch, so that a
		// new install starts them all while the store is still empty: a
		// group started later would get a grace period, its first ids
		// waiting for nothing.
		gs = make([]int, len(r.groups))
		for i := range gs {
			gs[i] = i
		}
	}
	var need []*group
	for _, i := range gs {
		if g := r.groups[i]; !g.epochKnown || g.forceEpoch {
			need = append(need, g)
		}
	}
	if len(need) == 0 {
		return nil
	}
	if !r.configured {
		r.configure(ctx)
	}
	pipe := r.c.Pipeline()
	reads := make([]*redis.Cmd, len(need))
	for i, g := range need {
		if !g.forceEpoch {
			reads[i] = r.readEpoch(ctx, pipe, g)
		}
	}
	if pipe.Len() > 0 {
		if err := r.exec(ctx, pipe); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
	}
	var fresh []*group
	for i, g := range need {
		if reads[i] != nil {
			v, err := reads[i].Text()
			if err == nil {
				ep, perr := strconv.ParseInt(v, 10, 64)
				if perr != nil {
					return fmt.Errorf("redis: epoch %q is not a number", v)
				}
				g.epoch, g.epochKnown = ep, true
				continue
			}
			if !errors.Is(err, redis.Nil) {
				return fmt.Errorf("redis: %w", err)
			}
		}
		fresh = append(fresh, g)
	}
	if len(fresh) == 0 {
		return nil
	}
	// A new memory: everything up to the store's newest event may have been
	// stored without Redis remembering it.
	now := r.now()
	ep := now.Add(EpochMargin).UnixMilli()
	if r.newest != nil {
		n, err := r.newest(ctx, now.Add(-r.window-r.slack))
		if err != nil {
			return fmt.Errorf("%w: newest event: %w", ErrStore, err)
		}
		ep = n
	}
	// The grace period (grace.go) protects claims some aggregator held in
	// a memory before this one. An empty store, and no memory before
	// this one in this process, mean a new install: no one can hold
	// claims, and its first loads need not wait.
	freshInstall := r.newest != nil && ep == 0
	pipe = r.c.Pipeline()
	sets := make([]*redis.Cmd, len(fresh))
	graced := 0
	for i, g := range fresh {
		force := "0"
		if g.forceEpoch {
			force = "1"
		}
		grace := r.grace.Milliseconds()
		if freshInstall && !g.seen {
			grace = 0
		} else {
			graced++
		}
		sets[i] = newEpochScript.Eval(ctx, pipe, []string{g.epochKey(), g.graceKey()}, ep, grace, force)
	}
	if err := r.exec(ctx, pipe); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	for i, g := range fresh {
		got := ep
		old, err := sets[i].Text()
		switch {
		case errors.Is(err, redis.Nil): // ours was set
		case err != nil:
			return fmt.Errorf("redis: %w", err)
		default: // another aggregator was first
			if got, err = strconv.ParseInt(old, 10, 64); err != nil {
				return fmt.Errorf("redis: epoch %q is not a number", old)
			}
		}
		if i == 0 {
			r.log.Info("dedupe memory in Redis is new: ids up to the epoch are checked against the store", "groups", len(fresh), "epoch", time.UnixMilli(got).UTC(), "grace_period_groups", graced, "grace_period", r.grace)
		}
		g.epoch, g.epochKnown = got, true
		g.forceEpoch = false
	}
	return nil
}

// newEpochScript starts a group's new epoch: KEYS[1] is its epoch key,
// KEYS[2] its grace key, ARGV the epoch (unix ms), the grace period (ms,
// 0 for none) and "1" to replace an epoch that is there (a rollback kept it). The
// grace key is set, with that expiry, only by the call that writes the
// epoch, so the period runs from the epoch's start on Redis's clock. It
// answers nil if it wrote the epoch, else the epoch another aggregator
// wrote first.
var newEpochScript = redis.NewScript(`
if ARGV[3] == '1' or redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('SET', KEYS[1], ARGV[1])
  if ARGV[2] ~= '0' then
    redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  end
  return false
end
return redis.call('GET', KEYS[1])
`)

// resolveLayouts makes sure each group's layouts has every slot in
// stats: read from Redis, or decided now and written there if no one
// decided it yet.
func (r *Redis) resolveLayouts(ctx context.Context, stats map[groupSlot]*slotStat) error {
	var need []groupSlot
	for k := range stats {
		if _, ok := r.groups[k.g].layouts[k.slot]; !ok {
			need = append(need, k)
		}
	}
	if len(need) == 0 {
		return nil
	}
	// The density of the whole call in each group, not of each slot's
	// share of it: a call that only just reaches into a slot says little
	// of that slot.
	all := map[int]*slotStat{}
	for k, st := range stats {
		a := all[k.g]
		if a == nil {
			a = &slotStat{min: math.MaxInt64, max: math.MinInt64}
			all[k.g] = a
		}
		a.n += st.n
		a.min, a.max = min(a.min, st.min), max(a.max, st.max)
	}
	// Drop what belongs to minutes long gone.
	oldest := r.now().Add(-r.window-2*r.slack).UnixMilli() / slotMS
	for _, g := range r.groups {
		for m := range g.layouts {
			if m < oldest {
				delete(g.layouts, m)
			}
		}
	}

	pipe := r.c.Pipeline()
	have := make([]*redis.StringCmd, len(need))
	prev := make([]*redis.StringCmd, len(need))
	for i, k := range need {
		g, m := r.groups[k.g], k.slot
		have[i] = pipe.HGet(ctx, g.layoutKey(m), layoutField('b', m))
		prev[i] = pipe.HGet(ctx, g.layoutKey(m-1), layoutField('c', m-1))
	}
	if err := r.exec(ctx, pipe); err != nil {
		return fmt.Errorf("redis layout: %w", err)
	}
	pipe = r.c.Pipeline()
	var decided []groupSlot
	var gets []*redis.StringCmd
	for i, k := range need {
		g, m := r.groups[k.g], k.slot
		if v, err := have[i].Result(); err == nil {
			b, err := strconv.Atoi(v)
			if err != nil || b < 0 || b > maxBits {
				return fmt.Errorf("redis layout: slot %d has bits %q", m, v)
			}
			g.layouts[m] = uint8(b)
			continue
		}
		prevN, _ := prev[i].Int64()
		b := r.decideBits(prevN, all[k.g])
		pipe.HSetNX(ctx, g.layoutKey(m), layoutField('b', m), b)
		gets = append(gets, pipe.HGet(ctx, g.layoutKey(m), layoutField('b', m)))
		pipe.ExpireAt(ctx, g.layoutKey(m), r.layoutDeadline(m))
		decided = append(decided, k)
	}
	if len(decided) == 0 {
		return nil
	}
	if err := r.exec(ctx, pipe); err != nil {
		return fmt.Errorf("redis layout: %w", err)
	}
	for i, k := range decided {
		b, err := gets[i].Int()
		if err != nil || b < 0 || b > maxBits {
			return fmt.Errorf("redis layout: slot %d: %v", k.slot, err)
		}
		r.groups[k.g].layouts[k.slot] = uint8(b)
	}
	return nil
}

// decideBits picks the shard bits for a slot from the ids claimed in
// the slot before and the density of the ids being claimed now (ids per
// ms of their time span, the span taken as at least 250 ms, scaled to a
// slot), aiming at
// target/2 to target ids per hash: a quarter to a half of the listpack
// limit, so a rate underestimated up to four times still fits.
func (r *Redis) decideBits(prevSlot int64, st *slotStat) uint8 {
	est := float64(prevSlot)
	if st != nil {
		span := max(st.max-st.min, 250)
		est = max(est, float64(st.n)*slotMS/float64(span))
	}
	per := est / float64(r.target)
	if per < 1 {
		return 0
	}
	b := bits.Len64(uint64(per)) // 2^b > per: at most target ids per hash
	return uint8(min(b, maxBits))
}

// configure reads the server's listpack limit and aims at a quarter of it
// (at most 32),
// and warns about an eviction policy that would drop dedupe state. Errors
// (CONFIG may be disabled on managed Redis) leave the defaults. Called
// with r.mu held, once Redis answers.
func (r *Redis) configure(ctx context.Context) {
	r.configured = true
	if v, err := r.c.ConfigGet(ctx, "hash-max-listpack-entries").Result(); err == nil {
		if n, err := strconv.Atoi(v["hash-max-listpack-entries"]); err == nil && n >= 4 {
			// A quarter of the limit leaves room for a rate underestimated
			// four times; no more than 32 because each HSETNX scans the
			// listpack (Debian's Redis allows 512 entries).
			r.target = min(n/4, 32)
		}
	}
	if v, err := r.c.ConfigGet(ctx, "maxmemory-policy").Result(); err == nil {
		if p := v["maxmemory-policy"]; p != "" && p != "noeviction" {
			r.log.Warn("Redis evicts keys under memory pressure (maxmemory-policy " + p + "): evicted dedupe state can let a retried batch be stored twice; use noeviction")
		}
	}
}

// Ping checks that Redis answers: in a cluster, every master.
func (r *Redis) Ping(ctx context.Context) error {
	var err error
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.Ping(ctx).Err()
		})
	} else {
		err = r.c.Ping(ctx).Err()
	}
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// Name is "redis", or "redis-cluster".
func (r *Redis) Name() string {
	if r.cluster {
		return "redis-cluster"
	}
	return "redis"
}

// startLease starts renewing this process's lease in every group, every
// quarter of the lease, until Close. The claim script renews it in the
// groups it touches too. Each renewal also reads the groups' markers, so
// that a process that claims nothing meanwhile (its loads are all being
// inserted) still notices a new epoch in time to re-assert its claims
// (see renewed).
func (r *Redis) startLease() {
	r.leased = true
	r.leaseWG.Add(1)
	go func() {
		defer r.leaseWG.Done()
		t := time.NewTicker(r.lease / 4)
		defer t.Stop()
		for {
			select {
			case <-r.leaseEnd:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), r.lease/4)
			pipe := r.c.Pipeline()
			ms := make([]renewMarks, len(r.groups))
			for i, g := range r.groups {
				pipe.Set(ctx, g.leaseKey(r.token), "1", r.lease)
				ms[i] = renewMarks{epoch: r.readEpoch(ctx, pipe, g), grace: pipe.Exists(ctx, g.graceKey()), seq: pipe.Incr(ctx, g.seqKey())}
			}
			if err := r.exec(ctx, pipe); err != nil {
				r.log.Debug("claim lease not renewed", "err", err)
			} else {
				r.renewed(ms)
			}
			cancel()
		}
	}()
}

// Close stops renewing the lease and drops it, so that other aggregators
// take over this process's unfinished claims without waiting for it to
// expire, then closes the connections.
func (r *Redis) Close() error {
	r.leaseRun.Do(func() {}) // no renewal starts after this
	r.leaseEndOnce.Do(func() { close(r.leaseEnd) })
	r.leaseWG.Wait()
	if r.leased {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		pipe := r.c.Pipeline()
		for _, g := range r.groups {
			pipe.Del(ctx, g.leaseKey(r.token))
		}
		r.exec(ctx, pipe)
		cancel()
	}
	return r.c.Close()
}

var _ Deduper = (*Redis)(nil)
