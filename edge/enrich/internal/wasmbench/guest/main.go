// Command guest runs the enrichment packages inside WebAssembly for
// edge/enrich/internal/wasmbench: `guest start` only starts (for an
// instance's start cost), `guest digest` prints the corpus' result digest,
// `guest bench N` prints the cost per hit of all enrichment and of each
// package, and the heap, as "name value unit" lines.
package main

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/edgepixel/edgepixel/edge/enrich/bot"
	"github.com/edgepixel/edgepixel/edge/enrich/campaign"
	"github.com/edgepixel/edgepixel/edge/enrich/internal/wasmbench"
	"github.com/edgepixel/edgepixel/edge/enrich/mailopen"
	"github.com/edgepixel/edgepixel/edge/enrich/pageurl"
	"github.com/edgepixel/edgepixel/edge/enrich/referrer"
	"github.com/edgepixel/edgepixel/edge/enrich/useragent"
)

var sink wasmbench.Result

func main() {
	if len(os.Args) < 2 || os.Args[1] == "start" {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		out("start_heap_sys", strconv.FormatUint(m.HeapSys, 10), "B")
		return
	}
	if os.Args[1] == "digest" {
		out("digest", strconv.FormatUint(wasmbench.Digest(), 16), "")
		return
	}
	n, _ := strconv.Atoi(os.Args[2])
	hits := wasmbench.Corpus

	// All enrichment, hit by hit: p50 and p99 over n passes of the corpus.
	per := make([]int64, 0, n*len(hits))
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range n {
		for i := range hits {
			t := time.Now()
			sink = wasmbench.Enrich(&hits[i])
			per = append(per, int64(time.Since(t)))
		}
	}
	runtime.ReadMemStats(&m1)
	slices.Sort(per)
	out("all_p50", strconv.FormatInt(per[len(per)/2], 10), "ns/hit")
	out("all_p99", strconv.FormatInt(per[len(per)*99/100], 10), "ns/hit")
	count := uint64(n * len(hits))
	out("all_allocs", strconv.FormatUint((m1.Mallocs-m0.Mallocs)/count, 10), "allocs/hit")
	out("all_bytes", strconv.FormatUint((m1.TotalAlloc-m0.TotalAlloc)/count, 10), "B/hit")

	each := func(name string, f func(h *wasmbench.Hit)) {
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		t := time.Now()
		for range n {
			for i := range hits {
				f(&hits[i])
			}
		}
		d := time.Since(t)
		runtime.ReadMemStats(&b)
		out(name, strconv.FormatInt(int64(d)/int64(count), 10), "ns/hit "+strconv.FormatUint((b.Mallocs-a.Mallocs)/count, 10)+" allocs/hit")
	}
	each("pageurl", func(h *wasmbench.Hit) { sink.Page = pageurl.Normalize(h.URL) })
	each("campaign", func(h *wasmbench.Hit) { sink.Campaign = campaign.Parse(h.URL) })
	each("referrer", func(h *wasmbench.Hit) {
		sink.Referrer = referrer.Classify(referrer.Input{Referrer: h.Referrer, PageHost: "www.example.com"})
	})
	each("useragent", func(h *wasmbench.Hit) { sink.UA = useragent.Parse(h.UserAgent) })
	each("bot", func(h *wasmbench.Hit) {
		sink.Bot = bot.Check(bot.Input{UserAgent: h.UserAgent, SecPurpose: h.SecPurpose, ASN: h.ASN})
	})
	each("mailopen", func(h *wasmbench.Hit) {
		sink.MailOpen = mailopen.Classify(mailopen.Input{UserAgent: h.UserAgent, ASN: h.ASN, Bot: sink.Bot.Reason})
	})
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	out("heap_sys", strconv.FormatUint(m.HeapSys, 10), "B")
	out("heap_inuse", strconv.FormatUint(m.HeapInuse, 10), "B")
}

func out(name, v, unit string) {
	os.Stdout.WriteString(name + " " + v + " " + unit + "\n")
}
