/* edgepixel tracker: https://github.com/edgepixel/edgepixel (edge/tracker).
   <script defer src="https://PIXEL/s.js" data-site="SITE"></script>
   Optional: data-fallback="https://OTHER-PIXEL" (a second endpoint),
   data-spa="off" (no single-page-app views), data-consent="0|1",
   data-us-privacy="1YYN" (the IAB CCPA string),
   data-signed="exp=E&site=SITE&sig=X" (the endpoint query the site's
   server signed, for a site whose events must be signed).
   API: edgepixel("signup", {plan: "pro"}); edgepixel.consent(true|false);
   edgepixel.usPrivacy("1YYN");
   edgepixel.view() (a pageview by hand). */
(function (w, d, n) {
  var s = d.currentScript, site = s && s.getAttribute("data-site");
  if (!site || w.edgepixel) return;
  if (/^(file|content):/.test(location.protocol)) { w.edgepixel = function () {}; w.edgepixel.view = w.edgepixel.consent = w.edgepixel.usPrivacy = w.edgepixel; return; }
  var at = function (a) { return s.getAttribute(a); },
    ends = [new URL(s.src).origin].concat(at("data-fallback") || []),
    consent = at("data-consent"), usp = at("data-us-privacy"), q = at("data-signed") || "site=" + encodeURIComponent(site), last,
    ref = d.referrer;
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
  function post(e, k, round) {
    var u = ends[k] + "/e?" + q, body = JSON.stringify(e);
    if (d.visibilityState == "hidden" && n.sendBeacon && n.sendBeacon(u, body)) return;
    fetch(u, {method: "POST", body: body, keepalive: true, credentials: "omit", mode: "no-cors"}).catch(again);
    function again() {
      if (ends[k + 1]) post(e, k + 1, round);
      else if (round < 3) setTimeout(function () { post(e, 0, round + 1); }, 1000 << 2 * round);
    }
  }
  // The browser sends Sec-GPC and DNT itself; consent is the page's word.
  function send(name, props, ref) {
    var e = {site: site, name: name, url: location.href, ref: ref || "", event_id: id(),
      sw: screen.width, t: Date.now()};
    if (props) e.props = props;
    if (consent != null) e.consent = consent;
    if (usp) e.us_privacy = usp;
    post(e, 0, 0);
  }
  // A single-page app's later views name the previous view as referrer;
  // a custom event, the view it happened on's (without one it would count
  // as a direct visit).
  function view() {
    if (location.href == last) return;
    ref = last || d.referrer;
    last = location.href;
    send("pageview", 0, ref);
  }
  w.edgepixel = function (name, props) { send(name, props, ref); };
  w.edgepixel.view = view;
  w.edgepixel.consent = function (yes) { consent = yes ? "1" : "0"; };
  w.edgepixel.usPrivacy = function (s) { usp = s; };
  if (at("data-spa") != "off") {
    ["pushState", "replaceState"].forEach(function (m) {
      var f = history[m];
      history[m] = function () { var r = f.apply(this, arguments); view(); return r; };
    });
    w.addEventListener("popstate", view);
  }
  // Back from the bfcache: shown again, no script run again.
  w.addEventListener("pageshow", function (e) { if (e.persisted) { last = 0; view(); } });
  // A prerendered page counts when the visitor actually opens it.
  if (d.prerendering) d.addEventListener("prerenderingchange", view, {once: true});
  else view();
})(window, document, navigator);
