// Command guest runs the enrichment packages inside WebAssembly for
// tests/wasmbench. Its first argument says what to do:
//
//	start     nothing: the cost of an instance's start
//	digest    print the digest of the corpus' results ("digest <hex>")
//	bench N S enrich the corpus N times; print "name value unit" lines:
//	          every hit's cost (all enrichment), the clock's own cost,
//	          each package's mean, allocations and the heap (less the
//	          S bytes below); then, for corpus.ColdPasses(N) passes,
//	          every hit's cost with the caches cold: S bytes of memory
//	          written, one a cache line, before each hit (corpus.Evict)
//
// Costs are read from the monotonic clock, which the host sets to its
// thread's CPU time.
package main

import (
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/edgepixel/edgepixel/edge/enrich/bot"
	"github.com/edgepixel/edgepixel/edge/enrich/campaign"
	"github.com/edgepixel/edgepixel/edge/enrich/mailopen"
	"github.com/edgepixel/edgepixel/edge/enrich/pageurl"
	"github.com/edgepixel/edgepixel/edge/enrich/referrer"
	"github.com/edgepixel/edgepixel/edge/enrich/useragent"
	"github.com/edgepixel/edgepixel/tests/wasmbench/corpus"
)

var sink corpus.Result

func main() {
	if len(os.Args) < 2 || os.Args[1] == "start" {
		return
	}
	if os.Args[1] == "digest" {
		out("digest", strconv.FormatUint(corpus.Digest(), 16), "")
		return
	}
	n := atoi(os.Args[2])
	// Taken now, so that the figures with the caches warm and cold are
	// of the same heap (a garbage collector paces itself by its size).
	sweep := make([]byte, atoi(os.Args[3]))
	hits := corpus.Hits

	// The clock's own cost: an empty reading pair.
	timer := make([]int64, 0, 1000)
	for range cap(timer) {
		t := time.Now()
		timer = append(timer, int64(time.Since(t)))
	}
	samples("timer", timer)

	// All enrichment, hit by hit over passes, sw evicted before each
	// hit (nil: none), every sample (the host takes quantiles).
	// per is taken before it runs, so that the warm figures' allocations
	// are enrichment's alone.
	timed := func(per []int64, passes int, sw []byte) []int64 {
		for range passes {
			for i := range hits {
				corpus.Evict(sw)
				t := time.Now()
				sink = corpus.Enrich(&hits[i])
				per = append(per, int64(time.Since(t)))
			}
		}
		return per
	}
	per := make([]int64, 0, n*len(hits))
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	per = timed(per, n, nil)
	runtime.ReadMemStats(&m1)
	samples("hit", per)

	count := uint64(n * len(hits))
	out("allocs", strconv.FormatUint((m1.Mallocs-m0.Mallocs)/count, 10), "allocs/hit")
	out("alloc_bytes", strconv.FormatUint((m1.TotalAlloc-m0.TotalAlloc)/count, 10), "B/hit")

	each := func(name string, f func(h *corpus.Hit)) {
		t := time.Now()
		for range n {
			for i := range hits {
				f(&hits[i])
			}
		}
		out(name, strconv.FormatInt(int64(time.Since(t))/int64(count), 10), "ns/hit")
	}
	each("pageurl", func(h *corpus.Hit) { sink.Page = pageurl.Normalize(h.URL) })
	each("campaign", func(h *corpus.Hit) { sink.Campaign = campaign.Parse(h.URL) })
	each("referrer", func(h *corpus.Hit) {
		sink.Referrer = referrer.Classify(referrer.Input{Referrer: h.Referrer, PageHost: "www.example.com"})
	})
	each("useragent", func(h *corpus.Hit) { sink.UA = useragent.Parse(h.UserAgent) })
	each("bot", func(h *corpus.Hit) {
		sink.Bot = bot.Check(bot.Input{UserAgent: h.UserAgent, SecPurpose: h.SecPurpose, ASN: h.ASN})
	})
	each("mailopen", func(h *corpus.Hit) {
		sink.MailOpen = mailopen.Classify(mailopen.Input{UserAgent: h.UserAgent, ASN: h.ASN, Bot: sink.Bot.Reason})
	})
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	out("heap_sys", strconv.FormatUint(m.HeapSys-uint64(len(sweep)), 10), "B")

	// The same hits with the caches cold, as a POP's instance takes each
	// hit after the connections' goroutines, the kernel and other
	// instances have run: what the sweep evicts is what a hit then
	// fetches again, its code and its tables.
	samples("cold", timed(make([]int64, 0, corpus.ColdPasses(n)*len(hits)), corpus.ColdPasses(n), sweep))
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// samples prints one line: name and each sample.
func samples(name string, ds []int64) {
	os.Stdout.WriteString(name)
	for _, d := range ds {
		os.Stdout.WriteString(" " + strconv.FormatInt(d, 10))
	}
	os.Stdout.WriteString("\n")
}

func out(name, v, unit string) {
	os.Stdout.WriteString(name + " " + v + " " + unit + "\n")
}
