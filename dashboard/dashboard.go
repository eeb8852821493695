// Package dashboard is the aggregator's web page: live counts from the
// /live WebSocket (a snapshot, then deltas), and tiles, a chart, top
// tables and a quality panel from the history API under /api/ (package
// query). The view (site, range, filters) is kept in the page's URL.
//
// It is three static files embedded in the binary, with no build step and
// no external assets, so the dashboard works offline and ships with the
// aggregator.
package dashboard

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var files embed.FS

// FS returns the dashboard's files (index.html, app.js, style.css).
func FS() fs.FS {
	sub, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// Handler serves the dashboard. Files are revalidated on every load so a
// new aggregator version's page is picked up at once.
func Handler() http.Handler {
	fsrv := http.FileServerFS(FS())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:")
		fsrv.ServeHTTP(w, r)
	})
}
