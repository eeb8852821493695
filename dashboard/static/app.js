// edgepixel dashboard: history from /api/ (rollups), live counts from the
// /live WebSocket (a snapshot, then deltas). No dependencies, no build
// step. The view (site, range, filters) lives in the URL so it can be
// bookmarked and shared.
"use strict";

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const k in attrs) {
    if (k === "text") e.textContent = attrs[k];
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), attrs[k]);
    else e.setAttribute(k, attrs[k]);
  }
  e.append(...kids);
  return e;
};
// Times are UTC everywhere on the page, as its ranges are (README: Times
// are UTC); the browser's zone showed in two places (found by a new-user
// tester). digits: 16 for minutes, 19 for seconds.
const utc = (t, digits = 16) => new Date(t).toISOString().slice(0, digits).replace("T", " ") + " UTC";
const fmt = (n) => (n == null ? "–" : Number(n).toLocaleString("en-US", { maximumFractionDigits: 2 }));

const state = { me: null, dims: [], view: readURL(), live: { sites: {}, recent: {}, pages: {}, visitors: {}, vcapped: false, seq: 0 }, retry: 0 };

// ---- the view in the URL ----------------------------------------------

function readURL() {
  const q = new URLSearchParams(location.search);
  const v = { site: q.get("site") || "", range: q.get("range") || "today", from: q.get("from") || "", to: q.get("to") || "", bots: q.get("bots") || "", filters: {} };
  for (const [k, val] of q) if (!["site", "range", "from", "to", "bots"].includes(k)) v.filters[k] = val;
  return v;
}

// dropUnknownParams keeps as filters only the URL parameters the API
// filters by (dimension names from /api/dimensions whose filter is true):
// it refuses any other (a misspelling, a tag someone appended
// to a shared link, entry_page), which would fail every request. Those
// are shown beside the filters instead and dropped from the URL (its
// history entry replaced).
function dropUnknownParams() {
  const names = new Set(state.dims.filter((d) => d.filter).map((d) => d.name));
  state.ignored = Object.keys(state.view.filters).filter((k) => !names.has(k));
  for (const k of state.ignored) delete state.view.filters[k];
  if (state.ignored.length) history.replaceState(null, "", "?" + query().toString());
}

function query(extra = {}) {
  const v = state.view, q = new URLSearchParams();
  q.set("site", v.site);
  q.set("range", v.range);
  if (v.range === "custom") { q.set("from", v.from); q.set("to", v.to); }
  if (v.bots === "exclude") q.set("bots", "exclude");
  for (const k in v.filters) q.set(k, v.filters[k]);
  for (const k in extra) q.set(k, extra[k]);
  return q;
}

function setView(change, push = true) {
  Object.assign(state.view, change);
  const url = "?" + query().toString();
  if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
  render();
}
window.addEventListener("popstate", () => {
  state.view = readURL();
  dropUnknownParams();
  render();
});

// ---- start: who am I ----------------------------------------------------

async function api(path) {
  const res = await fetch(path, { cache: "no-store", credentials: "same-origin" });
  if (res.status === 401) { showLogin(); throw new Error("not logged in"); }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(body.error || res.status);
  return body;
}

async function start() {
  try {
    state.me = await api("/api/me");
    state.dims = (await api("/api/dimensions")).dimensions;
  } catch (e) {
    return;
  }
  dropUnknownParams();
  $("login").hidden = true;
  $("app").hidden = false;
  $("controls").hidden = false;
  fillSites();
  connect();
  render();
}

function showLogin() {
  $("login").hidden = false;
  $("app").hidden = true;
  $("controls").hidden = true;
  $("token").focus();
}

$("loginform").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const res = await fetch("/login", { method: "POST", body: new URLSearchParams({ token: $("token").value }) });
  if (res.ok) { $("token").value = ""; start(); }
  else $("loginerr").textContent = res.status === 429 ? "Too many attempts; wait a minute." : "Unknown token.";
});
$("logout").addEventListener("click", async () => { await fetch("/logout", { method: "POST" }); location.reload(); });

// siteNames: the sites of the credential (for the admin, those with
// stored events) and those live counts have come for, sorted.
function siteNames() {
  return [...new Set([...(state.me.sites || []), ...Object.keys(state.live.sites)])].sort();
}

function fillSites() {
  const sel = $("site");
  const names = siteNames();
  if (!state.view.site && names.length) {
    state.view.site = names[0];
    history.replaceState(null, "", "?" + query().toString());
  }
  const known = names.includes(state.view.site);
  if (state.view.site && !known) names.push(state.view.site); // from a bookmark, or mistyped
  sel.replaceChildren(...names.map((n) => new Option(n === state.view.site && !known ? n + " (no events)" : n, n, false, n === state.view.site)));
}



$("site").addEventListener("change", (e) => setView({ site: e.target.value, filters: {} }));
$("range").addEventListener("change", (e) => {
  const r = e.target.value;
  if (r === "custom" && !state.view.from) {
    const d = new Date(), iso = (x) => x.toISOString().slice(0, 10);
    state.view.to = iso(d);
    state.view.from = iso(new Date(d - 6 * 864e5));
  }
  setView({ range: r });
});
for (const id of ["from", "to"]) $(id).addEventListener("change", (e) => setView({ [id]: e.target.value }));
$("nobots").addEventListener("change", (e) => setView({ bots: e.target.checked ? "exclude" : "" }));

// ---- rendering the history ----------------------------------------------

let renderSeq = 0;
async function render() {
  const v = state.view, my = ++renderSeq;
  $("range").value = v.range;
  $("custom").hidden = v.range !== "custom";
  $("from").value = v.from; $("to").value = v.to;
  $("nobots").checked = v.bots === "exclude";
  if ($("site").value !== v.site && v.site) fillSites();
  renderFilters();
  renderLive();
  if (!v.site) { $("chartinfo").textContent = "No site has events yet."; return; }
  const q = query().toString();
  const jobs = [
    api("/api/stats?" + q).then((st) => my === renderSeq && renderStats(st)),
    api("/api/quality?" + q).then((qu) => my === renderSeq && renderQuality(qu)),
    ...state.dims.map((d) => api("/api/top?" + query({ dim: d.name })).then((t) => my === renderSeq && renderTop(t))),
  ];
  const res = await Promise.allSettled(jobs);
  const failed = res.find((r) => r.status === "rejected");
  if (failed && my === renderSeq) $("chartinfo").textContent = "Some figures are unavailable: " + failed.reason.message;
}

// dimOf is the dimension called name as /api/dimensions lists it, {} for
// none.
function dimOf(name) {
  return state.dims.find((d) => d.name === name) || {};
}

// shown is a value as the page shows it. Pages are stored escaped as the
// edge normalises them ("/caf%C3%A9"); decodeURI shows them as typed
// ("/café") and keeps escapes of reserved characters ("%2F"), but for
// "%23", which s.js's data-hash writes for a route's '#' ("/%23/cart" is
// shown "/#/cart": a stored path holds no raw '#'). The stored value
// stays what a click filters by and what the CSV holds.
function shown(dim, v) {
  if (!v) return "(none)";
  return dimOf(dim).path ? shownPage(v) : v;
}

function shownPage(v) {
  try { v = decodeURI(v); } catch {}
  return v.replace(/%23/g, "#");
}

// filterBy adds the filter dim = value. The clicked row is replaced as
// the tables render again, so the keyboard focus goes to the new
// filter's clear button rather than to the page's start.
function filterBy(dim, value) {
  state.focusAfter = dim;
  setView({ filters: { ...state.view.filters, [dim]: value } });
}

function renderFilters() {
  const f = state.view.filters;
  const ignored = (state.ignored || []).length ? [el("span", { class: "chip ignored", text: "Not a filter, ignored: " + state.ignored.join(", ") })] : [];
  $("filters").replaceChildren(...ignored, ...Object.keys(f).map((k) => {
    const label = dimOf(k).label || k;
    return el("span", { class: "chip" }, `${label}: ${shown(k, f[k])}`,
      el("button", { type: "button", "data-dim": k, "aria-label": `Clear filter ${label} ${shown(k, f[k])}`, onclick: () => {
        const nf = { ...state.view.filters }; delete nf[k];
        state.focusAfter = "";
        setView({ filters: nf });
      } }, "×"));
  }));
  // After a click on a row or a chip, which this render removed: the
  // named filter's chip, else the first chip, else the overview.
  if (state.focusAfter != null) {
    const want = state.focusAfter;
    state.focusAfter = null;
    const chips = [...$("filters").querySelectorAll("button[data-dim]")];
    (chips.find((b) => b.dataset.dim === want) || chips[0] || $("stats-h")).focus();
  }
}

function renderStats(st) {
  const r = st.range;
  // The tiles' "vs previous" is this period: named, as "▲ 600%" against
  // an unnamed one left a tester guessing (today's hours so far against
  // the same hours of yesterday).
  const p = st.previous;
  const prev = p && p.from ? ` · compared with ${utc(p.from).slice(0, -4)} – ${utc(p.to)}` : "";
  $("rangeinfo").textContent = `${utc(r.from).slice(0, -4)} – ${new Date(r.to) > Date.now() ? "now (" + utc(Date.now()).slice(11) + ")" : utc(r.to)}${prev} · from ${st.source}` + (st.pending ? ` · incomplete: ${st.pending}` : "");
  // A rate's previous value means something only where the previous
  // period had visits (a 0 % bounce rate is one).
  const visitsBefore = st.metrics.find((m) => m.name === "visits")?.previous;
  $("tiles").replaceChildren(...st.metrics.map((m) => {
    if (!m.collected) return el("div", { class: "tile na", "data-metric": m.name }, el("div", { class: "label", text: m.label }), el("div", { class: "num", text: "—" }), el("div", { class: "sub", text: "not collected yet" }));
    const perVisit = ["bounce_rate", "visit_duration", "views_per_visit"].includes(m.name);
    let ch = m.previous === 0 && m.value ? (perVisit ? (visitsBefore ? "0 in the previous period" : "no visits in the previous period") : "none in the previous period") : "no previous data";
    let cls = "sub";
    if (m.name === "bounce_rate" && m.previous != null && visitsBefore) {
      // A rate's change in percentage points, where a relative change
      // read as points (a tester's 40 % to 16.7 % showed "▼ 58.3%"); a
      // higher bounce rate is the worse one.
      const pts = (m.value - m.previous) * 100;
      ch = (pts >= 0 ? "▲ " : "▼ ") + Math.abs(pts).toFixed(1) + " points vs previous";
      cls += pts > 0 ? " down" : " up";
    } else if (m.change != null) { ch = (m.change >= 0 ? "▲ " : "▼ ") + Math.abs(m.change * 100).toFixed(1) + "% vs previous"; cls += m.change >= 0 ? " up" : " down"; }
    return el("div", { class: "tile", "data-metric": m.name }, el("div", { class: "label", text: m.label }), el("div", { class: "num", text: fmtMetric(m.name, m.value) }), el("div", { class: cls, text: ch }));
  }));
  drawBars($("chart"), st.series.map((p) => ({ t: p.t, n: p.events })), 800, 200, st.grain);
  const sum = st.series.reduce((a, p) => a + p.events, 0);
  // A site with no events at all is more often a mistyped name (they
  // are case-sensitive) than a quiet site: say so, with the names there are.
  const site = state.view.site;
  const names = siteNames();
  if (!sum && !names.includes(site)) {
    $("chartinfo").textContent = `No events are stored for the site "${site}". Site names are case-sensitive.` + (names.length ? " Sites with events: " + names.join(", ") + "." : "");
    return;
  }
  $("chartinfo").textContent = `${fmt(sum)} ${sum === 1 ? "event" : "events"}, one bar per ${st.grain}`;
}

// fmtMetric shows a tile's number in its unit: the bounce rate as a
// percentage, the visit duration in minutes and seconds, views per visit
// with two decimals.
function fmtMetric(name, v) {
  switch (name) {
    case "bounce_rate": return (v * 100).toFixed(1) + "%";
    case "visit_duration": { const s = Math.round(v); return s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`; }
    case "views_per_visit": return v.toFixed(2);
  }
  return fmt(v);
}

function renderTop(t) {
  let card = document.querySelector(`section[data-dim="${t.dim}"]`);
  if (!card) {
    card = el("section", { class: "card", "data-dim": t.dim, "aria-labelledby": "top-" + t.dim });
    const order = state.dims.map((d) => d.name);
    const next = [...$("tops").children].find((c) => order.indexOf(c.dataset.dim) > order.indexOf(t.dim));
    $("tops").insertBefore(card, next || null);
  }
  const head = el("div", { class: "tablehead" }, el("h2", { id: "top-" + t.dim, text: t.label }));
  if (!t.collected) {
    card.replaceChildren(head, el("p", { class: "sub", text: "Not collected yet for the dashboard: no rollup reads it yet. make sql queries the stored events." }));
    return;
  }
  head.append(el("a", { class: "csv", href: "/api/top.csv?" + query({ dim: t.dim, limit: 1000 }), download: "", "aria-label": `${t.label} as CSV`, title: `Download ${t.label} as CSV`, text: "CSV" }));
  const dim = dimOf(t.dim);
  // Entry and exit pages count visits; a click filters by the page.
  if (dim.visit) {
    const rows = t.rows.map((r) => el("tr", {},
      el("td", { class: "v" }, el("button", { type: "button", title: "Filter by page " + shown(t.dim, r.value), onclick: () => filterBy("page", r.value) }, shown(t.dim, r.value))),
      el("td", { class: "n", text: fmt(r.visits) })));
    const table = el("table", {}, el("thead", {}, el("tr", {}, el("th", { scope: "col", text: t.label }), el("th", { class: "n", scope: "col", text: "Visits" }))),
      el("tbody", {}, ...rows));
    card.replaceChildren(head, rows.length ? table : el("p", { class: "sub", text: "No visits in this range." }));
    return;
  }
  // A row of a table that cannot filter (event properties, several per
  // event) is text.
  const rows = t.rows.map((r) => el("tr", {},
    el("td", { class: "v" }, dim.filter ? el("button", { type: "button", title: "Filter by " + shown(t.dim, r.value), onclick: () => filterBy(t.dim, r.value) }, shown(t.dim, r.value)) : el("span", { text: shown(t.dim, r.value), title: shown(t.dim, r.value) })),
    el("td", { class: "n", text: fmt(r.visitors) }), el("td", { class: "n", text: fmt(r.pageviews) }), el("td", { class: "n", text: fmt(r.events) })));
  const table = el("table", {}, el("thead", {}, el("tr", {}, el("th", { scope: "col", text: t.label }), el("th", { class: "n", scope: "col", text: "Visitors" }), el("th", { class: "n", scope: "col", text: "Views" }), el("th", { class: "n", scope: "col", text: "Events" }))),
    el("tbody", {}, ...rows));
  card.replaceChildren(head, rows.length ? table : el("p", { class: "sub", text: "Nothing in this range." }));
}

function renderQuality(q) {
  const kv = (pairs) => el("dl", { class: "kv" }, ...pairs.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
  // Reasons with a count only: the aggregator lists every reason it
  // counts, most at 0, which made a phone's column a screen tall.
  const reasons = (m) => Object.entries(m || {}).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${fmt(v)}`).join(", ") || "none";
  const parts = [];
  if (q.edge) {
    parts.push(el("h3", { text: "Edges → storage (this range)" }), kv([
      ["Hits answered at the edges", fmt(q.edge.hits)], ["Events accepted there", fmt(q.edge.events)], ["Events stored", fmt(q.edge.stored) + (q.edge.erased ? " (" + fmt(q.edge.erased) + " erased since)" : "")],
      ["Client retries (stored once)", fmt(q.edge.duplicates || 0)], ["Lost", fmt(q.edge.lost) + " (" + (q.edge.loss_rate * 100).toFixed(2) + "%)"], ["Edge drop reasons", reasons(q.edge.dropped)]]));
  }
  // Counted over every site: sent to the admin token only.
  const a = q.aggregator;
  if (a) {
    parts.push(el("h3", { text: "Aggregator (all sites, since " + utc(a.since) + ")" }), kv([
      ["Refused requests", reasons(a.dropped)], ["Bad rows", reasons(a.bad_rows)],
      ...(a.edge_no_site ? [["Edge drops of requests naming no site (this range)", reasons(a.edge_no_site)]] : [])]));
  }
  const d = q.drift || {};
  parts.push(el("h3", { text: "Live vs committed" }), kv([
    ["Live count", fmt(d.live)], ["Committed in ClickHouse", fmt(d.committed)], ["Drift", fmt(d.difference)]]));
  const m = q.mix;
  if (m) {
    const pct = (n) => (m.events ? (n / m.events * 100).toFixed(1) + "%" : "–");
    parts.push(el("h3", { text: "Bots and consent (this range, bots included)" }), kv([
      ["Bots' events", fmt(m.bots) + " (" + pct(m.bots) + ")"],
      ...Object.entries(m.tiers).map(([t, n]) => ["Consent tier " + (t || "(none: from an edge before tiers, or imported without one)"), fmt(n) + " (" + pct(n) + ")"])]));
  }
  $("quality").replaceChildren(...parts);
}

// drawBars draws points ({t: unix seconds, n}) as bars into svg (viewBox
// W x H, stretched to the page's width), with its scale and time axis in
// HTML beside it (its box's .ymax and .xaxis), since text inside a
// stretched SVG would be stretched too. grain is the range's ("minute",
// "hour", "day"); without one the points are the live seconds.
function drawBars(svg, points, W, H, grain) {
  const ns = "http://www.w3.org/2000/svg";
  const mk = (name, attrs, text) => {
    const e = document.createElementNS(ns, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const max = Math.max(1, ...points.map((p) => p.n));
  const bw = W / Math.max(1, points.length);
  const kids = [mk("line", { class: "axis", x1: 0, y1: H - 1, x2: W, y2: H - 1 })];
  points.forEach((p, i) => {
    const h = ((H - 14) * p.n) / max; // the top 14 units hold .ymax
    const bar = mk("rect", { class: "bar", x: i * bw + bw * 0.1, y: H - 1 - h, width: Math.max(1, bw * 0.8), height: h });
    if (grain) bar.append(mk("title", {}, utc(p.t * 1000) + ": " + p.n));
    kids.push(bar);
  });
  svg.replaceChildren(...kids);
  const box = svg.parentElement;
  box.querySelector(".ymax").textContent = fmt(max);
  const ticks = axisTicks(points, grain, Math.max(2, Math.floor((svg.clientWidth || W) / 80)));
  box.querySelector(".xaxis").replaceChildren(...ticks.map(({ i, text }) => {
    const at = ((i + 0.5) / points.length) * 100;
    // A label near an edge is aligned to it rather than centred, so it
    // stays inside the chart's width (the page must fit a phone).
    const cls = at < 8 ? "tick first" : at > 92 ? "tick last" : "tick";
    const e = el("span", { class: cls, text });
    // Set through the CSSOM: the page's Content-Security-Policy refuses
    // style attributes.
    if (at > 92) e.style.right = `${100 - at}%`; else e.style.left = `${at}%`;
    return e;
  }));
}

// Steps between time labels, in points of each grain, smallest first: a
// label falls on a point whose time is a whole number of steps since the
// Unix epoch (UTC), so hours are labelled at 00, 06, 12, 18 and the like.
const tickSteps = { second: [5, 10, 15, 30, 60], minute: [1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440],
  hour: [1, 2, 3, 6, 12, 24, 48, 72, 168], day: [1, 2, 7, 14, 28, 56, 91, 182, 364] };
const grainSeconds = { second: 1, minute: 60, hour: 3600, day: 86400 };

// axisTicks picks at most most labels for points' time axis: [{i, text}].
function axisTicks(points, grain, most) {
  const g = grain || "second";
  const unit = grainSeconds[g] || 1;
  const steps = tickSteps[g] || tickSteps.second;
  const step = steps.find((c) => points.length / c <= most) || steps[steps.length - 1];
  const now = points.length ? points[points.length - 1].t : 0;
  const out = [];
  points.forEach((p, i) => {
    // The live seconds are labelled by their age, so the labels stay put
    // as the bars move under them.
    if ((g === "second" ? now - p.t : Math.floor(p.t / unit)) % step !== 0) return;
    const d = new Date(p.t * 1000), iso = d.toISOString();
    const date = d.toLocaleDateString("en", { month: "short", day: "numeric", timeZone: "UTC" });
    let text;
    switch (g) {
      case "second": text = p.t === now ? "now" : `${now - p.t} s ago`; break;
      case "minute": text = iso.slice(11, 16); break;
      case "hour": text = step >= 24 || (iso.slice(11, 13) === "00" && points.length > 24) ? date : iso.slice(11, 16); break;
      default: text = date;
    }
    out.push({ i, text });
  });
  return out;
}

setInterval(() => { if (!document.hidden && state.me && state.view.range === "realtime") render(); }, 15000);

// ---- live ---------------------------------------------------------------

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(proto + "//" + location.host + "/live");
  setStatus("connecting", "connecting…");
  ws.onopen = () => { state.retry = 0; setStatus("live", "live"); };
  ws.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    const L = state.live;
    if (m.type === "snapshot") {
      L.sites = m.sites; L.recent = {}; L.pages = m.pages || {}; L.visitors = m.visitors || {}; L.seq = m.seq;
      const now = Math.floor(m.ts / 1000);
      for (const s in m.recent || {}) L.recent[s] = m.recent[s].map((n, i) => [now - m.recent[s].length + 1 + i, n]);
      if (state.me) fillSites();
    } else if (m.type === "delta") {
      if (m.seq !== L.seq + 1) { ws.close(4000, "missed an update"); return; } // resync with a snapshot
      L.seq = m.seq;
      const sec = Math.floor(m.ts / 1000);
      for (const s in m.sites) {
        const isNew = !(s in L.sites);
        L.sites[s] = m.sites[s];
        const r = (L.recent[s] = L.recent[s] || []);
        const last = r[r.length - 1];
        if (last && last[0] === sec) last[1] += (m.add || {})[s] || 0; else r.push([sec, (m.add || {})[s] || 0]);
        if (isNew && state.me) fillSites();
      }
      for (const s in m.pages || {}) L.pages[s] = m.pages[s];
      for (const s in m.visitors || {}) L.visitors[s] = m.visitors[s];
    }
    L.vcapped = !!m.visitors_capped;
    $("updated").textContent = "updated " + utc(m.ts, 19).slice(11);
    renderLive();
  };
  ws.onclose = (ev) => {
    // The credential ended (share link revoked, token removed, logged
    // out, expired): a reconnect would be refused with a 401 the page
    // cannot see, so ask /api/me, whose 401 shows the login form.
    if (ev.code === 1008 && (ev.reason === "credentials revoked" || ev.reason === "session expired")) {
      setStatus("down", ev.reason);
      start();
      return;
    }
    // Exponential backoff with jitter, capped at 15 s.
    const delay = Math.min(15000, 500 * 2 ** state.retry) * (0.7 + Math.random() * 0.6);
    state.retry++;
    const why = ev.reason ? ev.reason + "; " : "";
    setStatus("down", why + "reconnecting in " + Math.round(delay / 1000) + " s");
    setTimeout(connect, delay);
  };
  ws.onerror = () => ws.close();
}

function setStatus(cls, text) {
  const s = $("status");
  s.className = "status " + cls;
  s.textContent = text;
}

// setText sets e's text only when it changes: a screen reader announces
// each change of an aria-live element, and the live tiles render every
// second.
function setText(e, text) {
  if (e.textContent !== text) e.textContent = text;
}

function renderLive() {
  const site = state.view.site, L = state.live;
  setText($("total"), site in L.sites ? String(L.sites[site]) : "–");
  const now = Math.floor(Date.now() / 1000);
  const r = (L.recent[site] || []).filter(([t]) => t > now - 60);
  L.recent[site] = r;
  const last5 = r.filter(([t]) => t > now - 5).reduce((a, [, n]) => a + n, 0);
  setText($("eps"), (last5 / 5).toFixed(1));
  // A capped count is a lower bound: the aggregator held its limit of ids.
  setText($("visitors"), site in L.sites ? fmt(L.visitors[site] || 0) + (L.vcapped ? "+" : "") : "–");
  const pts = [];
  for (let t = now - 59; t <= now; t++) pts.push({ t, n: (r.find(([x]) => x === t) || [0, 0])[1] });
  drawBars($("rolling"), pts, 600, 60);
  const pages = L.pages[site] || [];
  $("pagesnow").replaceChildren(...(pages.length ? pages.map((p) => el("li", {}, el("span", { text: shown("page", p.path), title: shown("page", p.path) }), el("span", { text: fmt(p.n) }))) : [el("li", { class: "sub", text: "No pageviews stored in the last 5 minutes." })]));
}
setInterval(() => { if (state.me) renderLive(); }, 1000);

start();
