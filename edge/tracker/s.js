/* edgepixel tracker: https://github.com/edgepixel/edgepixel (edge/tracker).
   <script defer src="https://PIXEL/s.js" data-site="SITE"></script>
   Optional: data-fallback="https://OTHER-PIXEL" (a second endpoint),
   data-spa="off" (no single-page-app views), data-hash (an app routed
   by the fragment: /#/cart counts as the page /%23/cart), data-consent="0|1",
   data-us-privacy="1YYN" (the IAB CCPA string), data-outbound (an event
   "outbound" for a click on a link to another host), data-downloads (an
   event "download" for a click on a link to a file),
   data-signed="exp=E&site=SITE&sig=X" (the endpoint query the site's
   server signed, for a site whose events must be signed).
   API: edgepixel("signup", {plan: "pro"}); edgepixel.consent(true|false);
   edgepixel.usPrivacy("1YYN");
   edgepixel.view() (a pageview by hand). Calls made before s.js has run
   (events only) are sent once it has, after the page's view, if the
   page queued them:
   window.edgepixel = window.edgepixel || function () {
     (edgepixel.q = edgepixel.q || []).push(arguments); }; */
(function (w, d, n) {
  // A page's own queue (above; q comes with its first call) is taken;
  // s.js loaded twice, whose edgepixel has view, is not.
  var s = d.currentScript, site = s && s.getAttribute("data-site"), queued = w.edgepixel;
  if (!site || queued && queued.view) return;
  if (/^(file|content):/.test(location.protocol)) { w.edgepixel = function () {}; w.edgepixel.view = w.edgepixel.consent = w.edgepixel.usPrivacy = w.edgepixel; return; }
  var at = function (a) { return s.getAttribute(a); },
    ends = [new URL(s.src).origin].concat(at("data-fallback") || []),
    consent = at("data-consent"), usp = at("data-us-privacy"), q = at("data-signed") || "site=" + encodeURIComponent(site), last,
    hash = s.hasAttribute("data-hash"), nav = performance.getEntriesByType("navigation")[0], first, ref,
    maxProps = /*MAX_PROPS_LEN*/4096; // the edge's limit, in UTF-8 bytes (checked as s.js is minified)
  // A UUIDv7 (RFC 9562): the edge stores an event once however often it
  // is sent, so a retry to the fallback cannot double it.
  function id() {
    var b = crypto.getRandomValues(new Uint8Array(16)), t = Date.now(), i, h = "";
    for (i = 5; i >= 0; i--) { b[i] = t % 256; t = Math.floor(t / 256); }
    b[6] = b[6] & 15 | 112; b[8] = b[8] & 63 | 128;
    for (i = 0; i < 16; i++) h += (b[i] + 256).toString(16).slice(1) + (i == 3 || i == 5 || i == 7 || i == 9 ? "-" : "");
    return h;
  }
  // A shown page fetches (text/plain: no preflight), whose failure is
  // seen, as a beacon's is not: no answer (endpoint down, connection
  // cut) sends to the next endpoint, after the last again from the first
  // after 1, 4 and 16 s (the id makes a repeat count once). no-cors: any
  // answer ends it, also a refusal the page may not read, which a CORS
  // fetch would send again, each time counted. A hidden page may be gone
  // before an answer: a beacon, which the browser sends after it has
  // gone, else fetch with keepalive.
  function post(body, k, round) {
    var u = ends[k] + "/e?" + q;
    if (d.visibilityState == "hidden" && n.sendBeacon && n.sendBeacon(u, body)) return;
    fetch(u, {method: "POST", body: body, keepalive: true, credentials: "omit", mode: "no-cors"}).catch(again);
    function again() {
      if (ends[k + 1]) post(body, k + 1, round);
      else if (round < 3) setTimeout(function () { post(body, 0, round + 1); }, 1000 << 2 * round);
    }
  }
  // The page a view counts: the address without its fragment, which
  // names a place in the page (a click in a table of contents, which
  // fires popstate, is no view). With data-hash a fragment that starts
  // with / or ! (#/cart, #!/cart) is a route (#faq is a place in the
  // route's view, which stays the page):
  // kept in the path, its '#' escaped (the edge drops a fragment), its
  // query joined to the page's.
  function page() {
    var u = location.href.split("#"), h = hash && u[1], i = u[0].indexOf("?"), q = i < 0 || i == u[0].length - 1 ? "" : u[0].slice(i);
    if (!h) return u[0];
    if (!/^[\/!]/.test(h)) return last && !last.indexOf(u[0].split("?")[0] + "%23") ? last : u[0];
    u = i < 0 ? u[0] : u[0].slice(0, i);
    i = h.indexOf("?");
    if (i >= 0) { if (h[i + 1]) q += (q ? "&" : "?") + h.slice(i + 1); h = h.slice(0, i); }
    return u + "%23" + h + q;
  }
  // The browser sends Sec-GPC and DNT itself; consent is the page's word.
  // A call the edge would refuse (no name, props that are not an object)
  // or that cannot be sent (a BigInt) is not sent: the page's console
  // says why, and the page's own code goes on. Props over the edge's
  // limit are sent, for the edge to refuse and count (props_too_large),
  // and the console says so. The edge measures them as it stores them,
  // a control character as U+FFFD (three bytes), and so does this check
  // for the ones JSON writes in two (\n); one JSON writes as \u0001 is
  // three bytes fewer at the edge than here, which can only warn of
  // props the edge takes, never miss ones it refuses.
  function send(name, props, ref) {
    var e = {site: site, name: name, url: page(), ref: ref || "", event_id: id(),
      sw: screen.width, t: Date.now()}, p;
    if (props) e.props = props;
    if (consent != null) e.consent = consent;
    if (usp) e.us_privacy = usp;
    try {
      if (typeof name != "string" || !name) throw "its name must be a non-empty string";
      if (props && !/^{/.test(p = JSON.stringify(props))) throw "its props must be an object";
      if (p && new TextEncoder().encode(p.replace(/\\./g, function (x) { return /[bfnrt]/.test(x[1]) ? "FFD" : x; })).length > maxProps)
        console.warn("edgepixel: event " + name + ": props over " + maxProps + " bytes, which the edge refuses (props_too_large)");
      post(JSON.stringify(e), 0, 0);
    } catch (x) { console.warn("edgepixel: event not sent: " + x); }
  }
  // A single-page app's later views name the previous view as referrer;
  // a custom event, the view it happened on's (without one it would count
  // as a direct visit). A reload, or a page shown again by back or
  // forward, names itself: its document.referrer is still the one it
  // was first opened from, which would count it as a new arrival from
  // there.
  function view() {
    var p = page();
    if (p == last) return;
    ref = last || first;
    last = p;
    send("pageview", 0, ref);
  }
  first = /^(reload|back_forward)$/.test(nav && nav.type) ? page() : d.referrer;
  w.edgepixel = function (name, props) { send(name, props, ref); };
  w.edgepixel.view = view;
  w.edgepixel.consent = function (yes) { consent = yes ? "1" : "0"; };
  w.edgepixel.usPrivacy = function (s) { usp = s; };
  // A view is a pushState (a router's navigation) or a move in the
  // history, not a replaceState: pages rewrite their address in place
  // (a landing's campaign tags taken off, a search box's query kept in
  // it at each key), which is no new view, but is the address the next
  // view compares with and names as referrer.
  // A view waits for the task it came in to end, so that a router's
  // redirect (a replaceState right after the pushState) counts the page
  // it settles on, not the one nobody saw.
  function later() {
    if (!pending) pending = setTimeout(function () { pending = 0; view(); });
  }
  if (at("data-spa") != "off") {
    var push = history.pushState, replace = history.replaceState, pending;
    history.pushState = function () { var r = push.apply(this, arguments); later(); return r; };
    history.replaceState = function () { var r = replace.apply(this, arguments); if (last && !pending) last = page(); return r; };
    w.addEventListener("popstate", later);
  }
  // Clicks on links, with the link's address without its query and
  // fragment (which may name the visitor) as the url prop: a download
  // is a link with the download attribute or to a file by its
  // extension; an outbound one goes to another host. Middle clicks
  // (auxclick) open links too; other buttons' do not. The event is sent
  // before the page goes.
  function click(e) {
    var a = e.composedPath().filter(function (t) { return t.matches && t.matches("a[href]"); })[0], f, l;
    if (!a || e.button > 1 || e.defaultPrevented) return;
    l = new URL(a.href.baseVal || a.href, location.href); // an SVG link's href is an object
    f = a.hasAttribute("download") || /\.(pdf|zip|gz|tgz|7z|rar|dmg|exe|msi|pkg|deb|rpm|apk|iso|csv|xlsx?|docx?|pptx?|odt|ods|epub|mp3|mp4|mov|avi|wav|txt)$/i.test(l.pathname);
    // A file the page made (blob:, data:) is named by its download name.
    if (/^(blob|data):$/.test(l.protocol)) { if (f && at("data-downloads") != null) send("download", {url: a.getAttribute("download")}, ref); return; }
    if (!/^https?:$/.test(l.protocol)) return;
    if (f && at("data-downloads") != null) send("download", {url: l.origin + l.pathname}, ref);
    else if (at("data-outbound") != null && l.host != location.host) send("outbound", {url: l.origin + l.pathname}, ref);
  }
  // On the window as the click bubbles up, after the page's handlers, so
  // that a click the page cancels (defaultPrevented) is no departure.
  w.addEventListener("click", click);
  w.addEventListener("auxclick", click);
  // Back from the bfcache: shown again, no script run again.
  w.addEventListener("pageshow", function (e) { if (e.persisted) { last = 0; first = page(); view(); } });
  // A prerendered page counts when the visitor actually opens it, and
  // its queued events are sent then, after its view.
  function start() {
    view();
    (queued && queued.q || []).forEach(function (a) { w.edgepixel.apply(w, a); });
  }
  if (d.prerendering) d.addEventListener("prerenderingchange", start, {once: true});
  else start();
})(window, document, navigator);
