package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/edgepixel/edgepixel/aggregator/live"
	"github.com/edgepixel/edgepixel/shared/etag"
)

// counterMaxAge is how long browsers and CDNs may keep a counter: the
// number is "now", so briefly, and a busy page then costs one request per
// cache per interval.
const counterMaxAge = 15

// counter serves the embeddable counter of a site listed in
// Config.PublicCounters on the public listener: GET /counter/SITE.json
// answers {"site":…,"pageviews":N,"visitors":V,"visitors_capped":false,
// "window_seconds":300} and /counter/SITE.svg a small badge ("N views,
// last 5 min"), both with Cache-Control public, max-age and an ETag. N is
// the pageviews stored in the last live.PagesWindow, V the distinct
// visitor ids in the last live.VisitorsWindow (live.Message.Visitors).
// Sites not listed answer 404, like any unknown path.
func (s *Server) counter(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	site, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		site, ext = name[:i], name[i+1:]
	}
	if (ext != "json" && ext != "svg") || !slices.Contains(s.cfg.PublicCounters, site) {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	n, _ := s.hub.RecentPageviews(site)
	v, capped, _ := s.hub.RecentVisitors(site)
	tag := `"` + ext + strconv.FormatUint(n, 10) + "-" + strconv.FormatUint(v, 10) + strconv.FormatBool(capped)[:1] + `"`
	w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", counterMaxAge))
	w.Header().Set("ETag", tag)
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if etag.Match(r.Header.Get("If-None-Match"), tag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if ext == "json" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"site": site, "pageviews": n, "visitors": v, "visitors_capped": capped, "window_seconds": int(live.PagesWindow.Seconds())})
		return
	}
	noun := " views"
	if n == 1 {
		noun = " view"
	}
	text := strconv.FormatUint(n, 10) + noun + ", last 5 min"
	width := 12 + 7*len(text)
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="20" role="img" aria-label="%s"><rect width="%d" height="20" rx="3" fill="#1f5fcf"/><text x="6" y="14" fill="#fff" font-family="system-ui,sans-serif" font-size="12">%s</text></svg>`+"\n",
		width, text, width, text)
}
