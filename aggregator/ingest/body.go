package ingest

import (
	"errors"
	"io"
	"math"
	"math/bits"
	"sync"
)

// Budget bounds the memory that request bodies hold across all requests
// at once: the bytes read so far (raw and decompressed), and the work
// space of requests being decoded. A request that would pass it is
// answered 503 (overloaded) with Retry-After, so the memory strangers can
// make the aggregator hold is configuration, not what they declare.
//
// Bodies not yet authenticated are also bounded per client address
// (guard.ClientKey), so that a few addresses sending large bodies cannot
// take the whole budget from the others.
type Budget struct {
	max, perClient int64
	mu             sync.Mutex
	used           int64
	by             map[string]int64 // per client key
}

// NewBudget returns a budget of max bytes, at most perClient of them for
// one client's unauthenticated bodies; a bound <= 0 means none.
func NewBudget(max, perClient int64) *Budget {
	return &Budget{max: max, perClient: perClient, by: map[string]int64{}}
}

// acquire takes n bytes of the budget for client ("": for the total only),
// or reports that they are not there.
func (b *Budget) acquire(client string, n int64) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.max > 0 && b.used+n > b.max || client != "" && b.perClient > 0 && b.by[client]+n > b.perClient {
		return false
	}
	b.used += n
	if client != "" {
		b.by[client] += n
	}
	return true
}

func (b *Budget) release(client string, n int64) {
	if b == nil || n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if client != "" {
		if b.by[client] -= n; b.by[client] <= 0 {
			delete(b.by, client)
		}
	}
}

// Used returns the bytes taken now.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// errOverloaded means the Budget had no room for more of a body.
var errOverloaded = errors.New("request bodies in progress hold the whole memory budget")

// Buffers come in power-of-two classes from minBuf to maxPooled and are
// pooled per class; larger ones are allocated and dropped.
const (
	minBuf    = 16 << 10
	maxPooled = 4 << 20
)

var bufPools [9]sync.Pool // class i holds *[]byte of cap minBuf<<i, up to maxPooled

// buffer is bytes read into pooled memory that grows only as bytes arrive
// (doubling, from minBuf), charged to a Budget while held. Whatever a
// request declares (Content-Length), nothing is reserved before the bytes
// are there.
type buffer struct {
	b      []byte
	budget *Budget
	client string // charged to this client's share too ("": the total only)
	held   int64  // charged to budget
}

// BodyPeak returns the most a body of up to maxBody bytes holds of a
// client's share at once while it is read: its buffer doubles from
// minBuf until it holds maxBody (a probe, not the buffer, reads the byte
// that tells a body too large), and holds the old and the new one while
// it copies. A share below it refuses such a body as overloaded (503) on
// every retry. Past 2^50 bytes it is math.MaxInt64: no share holds it.
func BodyPeak(maxBody int64) int64 {
	p, ok := bodyCap(maxBody)
	if !ok {
		return math.MaxInt64
	}
	return p + p/2
}

// BodyNeed returns the most one request of up to maxBody bytes holds of
// the whole budget at once, with the default record size: its body's
// buffer, the buffer it decompresses to (the larger case) while it
// grows, and the work of decoding it, a signed batch's (decodeWork) or
// an NDJSON body's, taken before it is decompressed (ndjsonWork). A
// --max-body-memory below it refuses such a request as overloaded on
// every retry (a tester's NDJSON got 503 under a total that held a
// batch). Past 2^50 bytes, math.MaxInt64.
func BodyNeed(maxBody int64) int64 {
	p, ok := bodyCap(maxBody)
	if !ok {
		return math.MaxInt64
	}
	return max(2*p+decodeWork(maxBody), p+p+p/2+ndjsonWork(DefaultRecordBytes))
}

// DefaultRecordBytes is Config.RecordBytes' default.
const DefaultRecordBytes = 1 << 20

// decodeWork is what decoding a batch body of n bytes takes of the
// budget: its events, about twice the body, with their structs.
func decodeWork(n int64) int64 { return 2*n + 64<<10 }

// ndjsonWork is what turning NDJSON lines into records of recordBytes
// takes of the budget: about two records, whatever the body holds.
func ndjsonWork(recordBytes int) int64 { return 4 * int64(recordBytes) }

// bodyCap returns the capacity a body of up to maxBody bytes grows its
// buffer to, false past 2^50 bytes (where doubling would overflow long
// before any memory could hold it).
func bodyCap(maxBody int64) (int64, bool) {
	if maxBody > 1<<50 {
		return 0, false
	}
	p := int64(minBuf)
	for p < maxBody {
		p *= 2
	}
	return p, true
}

// newBuffer returns an empty buffer charged to budget, and to client's
// share of it unless client is "".
func newBuffer(budget *Budget, client string) *buffer { return &buffer{budget: budget, client: client} }

// Bytes returns the bytes read. They are valid until free.
func (b *buffer) Bytes() []byte { return b.b }

// grow makes room for at least one more byte.
func (b *buffer) grow() error {
	n := max(2*cap(b.b), minBuf)
	if !b.budget.acquire(b.client, int64(n)) {
		return errOverloaded
	}
	var nb []byte
	if class := bits.Len(uint(n/minBuf)) - 1; n <= maxPooled && minBuf<<class == n {
		if p, ok := bufPools[class].Get().(*[]byte); ok {
			nb = (*p)[:0]
		}
	}
	if nb == nil {
		nb = make([]byte, 0, n)
	}
	nb = append(nb, b.b...)
	old := b.b
	b.b = nb
	b.put(old)
	b.budget.release(b.client, b.held)
	b.held = int64(n)
	return nil
}

// put returns a buffer to its pool.
func (b *buffer) put(p []byte) {
	c := cap(p)
	if c < minBuf || c > maxPooled || c&(c-1) != 0 {
		return
	}
	p = p[:0]
	bufPools[bits.Len(uint(c/minBuf))-1].Put(&p)
}

// readAll reads r to its end into b: at most limit bytes, else it
// returns errTooLarge. Errors from r are returned as they are;
// errOverloaded when the budget has no room.
func (b *buffer) readAll(r io.Reader, limit int64) error {
	if cap(b.b) == 0 && limit > 0 {
		// Nothing is taken before the first bytes are there: a client
		// that declares a body and sends none holds no buffer.
		var first [512]byte
		n, err := r.Read(first[:min(int64(len(first)), limit)])
		if n > 0 {
			if gerr := b.grow(); gerr != nil {
				return gerr
			}
			b.b = append(b.b, first[:n]...)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
	for {
		if int64(len(b.b)) >= limit {
			// Full: one more byte means too large; a probe tells without
			// growing the buffer for it.
			var probe [1]byte
			for {
				n, err := r.Read(probe[:])
				if n > 0 {
					return errTooLarge
				}
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
			}
		}
		if len(b.b) == cap(b.b) {
			if err := b.grow(); err != nil {
				return err
			}
		}
		free := b.b[len(b.b):cap(b.b)]
		if room := limit - int64(len(b.b)); int64(len(free)) > room {
			free = free[:room]
		}
		n, err := r.Read(free)
		b.b = b.b[:len(b.b)+n]
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// free returns the memory to the pool and the budget. b must not be used
// after.
func (b *buffer) free() {
	if b == nil {
		return
	}
	b.put(b.b)
	b.b = nil
	b.budget.release(b.client, b.held)
	b.held = 0
}
