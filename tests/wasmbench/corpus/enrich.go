// Package corpus is the work tests/wasmbench measures: a realistic mix of
// pixel hits and Enrich, which runs every enrichment package on one hit as
// the edge will. It is compiled into the wasm guest and natively, so the
// guest's results can be checked equal to the native ones (Digest).
package corpus

import (
	"fmt"
	"hash/fnv"

	"github.com/edgepixel/edgepixel/edge/enrich/bot"
	"github.com/edgepixel/edgepixel/edge/enrich/campaign"
	"github.com/edgepixel/edgepixel/edge/enrich/mailopen"
	"github.com/edgepixel/edgepixel/edge/enrich/pageurl"
	"github.com/edgepixel/edgepixel/edge/enrich/referrer"
	"github.com/edgepixel/edgepixel/edge/enrich/useragent"
)

// Hit is what a pixel request brings to enrichment.
type Hit struct {
	URL, Referrer, UserAgent string
	SecPurpose, SecCHUA      string
	ASN                      uint32
}

// Result is all enrichment of one hit.
type Result struct {
	Page     pageurl.Result
	Campaign campaign.Result
	Referrer referrer.Result
	UA       useragent.Result
	Bot      bot.Result
	MailOpen string
}

// Enrich runs every enrichment package on h, as the edge will.
func Enrich(h *Hit) Result {
	var r Result
	r.Page = pageurl.Normalize(h.URL)
	r.Campaign = campaign.Parse(h.URL)
	r.Referrer = referrer.Classify(referrer.Input{
		Referrer: h.Referrer, PageHost: r.Page.Host,
		Medium: r.Campaign.Medium, Source: r.Campaign.Source, PaidClick: r.Campaign.ClickIDs.Paid(),
	})
	r.Bot = bot.Check(bot.Input{UserAgent: h.UserAgent, SecPurpose: h.SecPurpose, SecCHUA: h.SecCHUA, ASN: h.ASN})
	r.UA = useragent.Parse(h.UserAgent)
	if r.Bot.IsBot() {
		r.UA.Device = useragent.Bot
	}
	r.MailOpen = mailopen.Classify(mailopen.Input{UserAgent: h.UserAgent, ASN: h.ASN, Bot: r.Bot.Reason})
	return r
}

// Digest hashes the results of the whole corpus: the same in every build.
func Digest() uint64 {
	f := fnv.New64a()
	for i := range Hits {
		fmt.Fprintf(f, "%+v\n", Enrich(&Hits[i]))
	}
	return f.Sum64()
}

// ColdPasses is how many passes of the corpus the figures with the
// caches cold take, of passes with them warm: a tenth, at least one.
func ColdPasses(passes int) int { return max(passes/10, 1) }

// Evict writes one byte in each 64-byte cache line of buf, so that what
// the caches held before is out of them as far as buf is larger than
// they are: a hit timed next starts with its code and tables cold, as a
// POP's instance takes a hit after other work has run on its core.
func Evict(buf []byte) {
	for i := 0; i < len(buf); i += 64 {
		buf[i]++
	}
}
