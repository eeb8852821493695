// edgepixel dashboard: live counts over a WebSocket (/live) and a
// per-minute chart from /api/history. No dependencies, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { sites: {}, selected: localStorage.getItem("edgepixel.site") || "", retry: 0 };

// ---- live counts -------------------------------------------------------

function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(proto + "//" + location.host + "/live");
  setStatus("connecting", "connecting…");
  ws.onopen = () => { state.retry = 0; setStatus("live", "live"); };
  ws.onmessage = (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    if (m.type === "counts") showCounts(m);
  };
  ws.onclose = () => {
    // Exponential backoff with jitter, capped at 15 s.
    const delay = Math.min(15000, 500 * 2 ** state.retry) * (0.7 + Math.random() * 0.6);
    state.retry++;
    setStatus("down", "disconnected – retrying in " + Math.round(delay / 1000) + " s");
    setTimeout(connect, delay);
  };
  ws.onerror = () => ws.close();
}

function setStatus(cls, text) {
  const el = $("status");
  el.className = "status " + cls;
  el.textContent = text;
}

function showCounts(m) {
  // Plain digits (no locale grouping): what you read is what ClickHouse has.
  $("total").textContent = String(m.total);
  $("updated").textContent = "updated " + new Date(m.ts).toLocaleTimeString();
  const tbody = $("sites").tBodies[0];
  const names = Object.keys(m.sites).sort();
  for (const name of names) {
    let tr = tbody.querySelector('tr[data-site="' + CSS.escape(name) + '"]');
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.site = name;
      const td1 = document.createElement("td");
      td1.className = "name";
      td1.textContent = name;
      const td2 = document.createElement("td");
      td2.className = "count";
      tr.append(td1, td2);
      // keep rows sorted by name
      const next = [...tbody.rows].find((r) => r.dataset.site > name);
      tbody.insertBefore(tr, next || null);
    }
    const cell = tr.querySelector(".count");
    const text = String(m.sites[name]);
    if (cell.textContent !== text) {
      cell.textContent = text;
      tr.classList.add("flash");
      setTimeout(() => tr.classList.remove("flash"), 600);
    }
  }
  // Sites the aggregator does not list one by one (it bounds them) are
  // summed up in m.other; the total includes them.
  const other = m.other || 0;
  $("otherrow").hidden = other === 0;
  $("other").textContent = String(other);
  $("nosites").hidden = names.length > 0 || other > 0;
  const changed = names.join("\n") !== Object.keys(state.sites).sort().join("\n");
  state.sites = m.sites;
  if (changed) fillSiteSelect(names);
}

function fillSiteSelect(names) {
  const sel = $("site");
  if (!state.selected || !names.includes(state.selected)) {
    // default to the busiest site
    state.selected = names.slice().sort((a, b) => state.sites[b] - state.sites[a])[0] || "";
  }
  sel.replaceChildren(...names.map((n) => new Option(n, n, false, n === state.selected)));
  loadHistory();
}

// ---- history chart -----------------------------------------------------

async function loadHistory() {
  const site = state.selected;
  if (!site) return;
  const minutes = $("minutes").value;
  try {
    const res = await fetch("/api/history?site=" + encodeURIComponent(site) + "&minutes=" + minutes, { cache: "no-store" });
    if (!res.ok) throw new Error(res.status + " " + (await res.text()));
    const h = await res.json();
    if (h.site === state.selected) drawChart(h.points);
  } catch (e) {
    $("chartinfo").textContent = "history unavailable: " + e.message;
  }
}

function drawChart(points) {
  const svg = $("chart");
  const W = 800, H = 220, top = 10, bottom = 20, left = 34;
  const max = Math.max(1, ...points.map((p) => p.n));
  const bw = (W - left) / Math.max(1, points.length);
  const ns = "http://www.w3.org/2000/svg";
  const el = (name, attrs, text) => {
    const e = document.createElementNS(ns, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const kids = [
    el("line", { class: "axis", x1: left, y1: H - bottom, x2: W, y2: H - bottom }),
    el("text", { x: 0, y: top + 8 }, String(max)),
    el("text", { x: 0, y: H - bottom }, "0"),
  ];
  points.forEach((p, i) => {
    const h = ((H - top - bottom) * p.n) / max;
    const bar = el("rect", { class: "bar", x: left + i * bw + bw * 0.1, y: H - bottom - h, width: Math.max(1, bw * 0.8), height: h });
    bar.append(el("title", {}, new Date(p.t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) + ": " + p.n));
    kids.push(bar);
  });
  if (points.length) {
    const fmt = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    kids.push(el("text", { x: left, y: H - 4 }, fmt(points[0].t)));
    kids.push(el("text", { x: W, y: H - 4, "text-anchor": "end" }, fmt(points[points.length - 1].t)));
  }
  svg.replaceChildren(...kids);
  const sum = points.reduce((a, p) => a + p.n, 0);
  $("chartinfo").textContent = sum + " events in the last " + points.length + " minutes";
}

$("site").addEventListener("change", (e) => {
  state.selected = e.target.value;
  localStorage.setItem("edgepixel.site", state.selected);
  loadHistory();
});
$("minutes").addEventListener("change", loadHistory);
setInterval(() => { if (!document.hidden) loadHistory(); }, 10000);

connect();
