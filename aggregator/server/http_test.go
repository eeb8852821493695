package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/edgepixel/edgepixel/shared/wire"
)

// The live WebSocket outlives the HTTP deadlines (write, idle, header):
// they are for requests, and the hub keeps its own per write and read.
func TestLiveOutlivesHTTPDeadlines(t *testing.T) {
	s, err := Open(Config{DataDir: t.TempDir(), Secret: secret, DashboardToken: testToken, LoaderMaxAge: 10 * time.Millisecond, LiveInterval: 10 * time.Millisecond,
		WriteTimeout: time.Second, IdleTimeout: time.Second, ReadHeaderTimeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	dln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.ServeDashboard(dln)
	defer func() {
		s.Shutdown(context.Background())
		cancel()
		<-ran
		s.Close()
	}()
	base := "http://" + ln.Addr().String()
	c, _, err := websocket.DefaultDialer.Dial("ws://"+dln.Addr().String()+"/live", authHeader())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var m struct{ Total uint64 }
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := c.ReadJSON(&m); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // three times every deadline
	// The batch only makes the live count move; on a loaded machine a
	// request can outlast the short deadlines set here, so it is retried
	// (the same events: the count moves once).
	body := wire.Append(nil, mkEvents(t, "live", 5))
	for try := 0; ; try++ {
		req, _ := http.NewRequest("POST", base+"/ingest", bytes.NewReader(body))
		req.Header.Set("Content-Type", wire.ContentType)
		for k, v := range signed(secret, time.Now().Unix(), body) {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			break
		}
		if try == 10 {
			t.Fatalf("batch: %v %v", resp, err)
		}
		if resp != nil {
			resp.Body.Close()
		}
	}
	for m.Total < 5 {
		if err := c.ReadJSON(&m); err != nil {
			t.Fatalf("the live socket died: %v", err)
		}
	}
}
