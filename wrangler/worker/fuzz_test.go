package worker

import (
	"testing"
	"time"
)

// FuzzServe feeds arbitrary request blocks and bodies through parsing,
// serving and a whole failed delivery: nothing may panic, and every
// delivery must end.
func FuzzServe(f *testing.F) {
	f.Add("GET\nhttps://px.test/p.gif?site=a\nDE\n\n\n\n\nFRA\nuser-agent:x\n", []byte(nil))
	f.Add("POST\nhttps://px.test/e\n\n\n\n\n\n\norigin:https://a.test\n", []byte(`[{"site":"a"},{"site":"b","props":{"k":1}}]`))
	f.Add("OPTIONS\nhttps://px.test/e?site=a\n\n\n\n\n\n\n", []byte(nil))
	f.Fuzz(func(t *testing.T, text string, body []byte) {
		w := New(Config{IngestURL: "https://agg.test/ingest", NDJSONURL: "https://agg.test/ingest/ndjson", Secret: secret})
		var r Request
		if ParseRequest(text, body, &r) != nil {
			return
		}
		_, h, _ := w.Serve(&r, time.Now())
		if h == 0 {
			return
		}
		for i, outcome := 0, Start; ; i++ {
			d, _ := w.Next(h, outcome)
			if d == nil {
				break
			}
			if i > 10 {
				t.Fatal("a delivery that does not end")
			}
			outcome = Failed
		}
	})
}
