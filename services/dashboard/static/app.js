"use strict";
// Atomic Mesh dashboard: renders the JSON view the server pushes over /ws.
// Every string from the stream goes in through textContent, never as HTML.

const $ = (id) => document.getElementById(id);
let view = null;
let symbol = "";
const seenTypes = new Set();

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) tr.appendChild(c instanceof Node ? c : el("td", c));
  return tr;
}
function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}
function fmtNs(ns) {
  if (ns === null || ns === undefined) return "–";
  if (ns < 1e3) return ns + " ns";
  if (ns < 1e6) return (ns / 1e3).toFixed(ns < 1e4 ? 2 : 1) + " µs";
  if (ns < 1e9) return (ns / 1e6).toFixed(ns < 1e7 ? 2 : 1) + " ms";
  return (ns / 1e9).toFixed(2) + " s";
}
function latClass(ms) {
  if (ms === null || ms === undefined) return "";
  return ms < 50 ? "lat-g" : ms < 200 ? "lat-c" : ms < 500 ? "lat-y" : "lat-r";
}
function latCell(ms) {
  const td = el("td", ms === null || ms === undefined ? "–" : ms.toFixed(1), "num " + latClass(ms));
  return td;
}
function num(v) { return el("td", v === null || v === undefined ? "–" : v, "num"); }
function dur(s) {
  if (s < 60) return s.toFixed(0) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function renderSummary(v) {
  $("follower").textContent = v.status ? v.status.follower + (v.status.error ? " (" + v.status.error + ")" : "") : "–";
  $("follower").className = v.status && v.status.follower === "following" ? "ok" : "warn";
  $("seq").textContent = v.seq ?? "–";
  $("head").textContent = v.head ?? "–";
  $("lag").textContent = v.lag ?? "–";
  $("lag").className = v.lag > 1000 ? "warn" : "";
  $("event-count").textContent = v.events_total ?? 0;
  $("rate").textContent = v.rate ?? "–";
  $("clock").textContent = v.time || "–";
}

function renderCluster(v) {
  fill($("cluster-table").tBodies[0], (v.cluster || []).map((s) => {
    const counters = Object.entries(s.counters || {}).map(([k, x]) => k + "=" + x).join(" ");
    return row([
      el("td", s.service),
      el("td", s.up ? "UP" : "DOWN", s.up ? "up" : "down"),
      el("td", s.state),
      el("td", dur(s.uptime_s), "num"),
      el("td", s.restarts, "num" + (s.restarts ? " warn" : "")),
      el("td", s.last_hb + " (" + (s.last_hb_ms / 1000).toFixed(1) + " s ago)"),
      num(s.last_seq), num(s.lag),
      el("td", counters, "counters"),
    ]);
  }));
}

function renderLatency(v) {
  const rows = v.latency || [];
  fill($("latency-table").tBodies[0], rows.map((r) => row([
    el("td", r.stage), el("td", r.source + (r.window ? "" : " (all time)")),
    num(r.total), num(fmtNs(r.p50)), num(fmtNs(r.p90)), num(fmtNs(r.p99)), num(fmtNs(r.p999)), num(fmtNs(r.max)), num(fmtNs(r.mean)),
  ])));
  $("lat-note").textContent = "percentiles over the last window of sequencer time; " +
    (v.skipped_not_wallclock || 0) + " events without wall-clock event time not counted in sequencing";
}

function drawEquity(points) {
  const cv = $("equity");
  const w = cv.clientWidth || cv.width, h = cv.clientHeight || cv.height;
  if (cv.width !== w) cv.width = w;
  if (cv.height !== h) cv.height = h;
  const g = cv.getContext("2d");
  g.clearRect(0, 0, w, h);
  g.fillStyle = "#8b949e";
  g.font = "11px monospace";
  if (!points || points.length < 2) { g.fillText("equity curve: waiting for fills", 8, 16); return; }
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  let y0 = Math.min(0, ...ys), y1 = Math.max(0, ...ys);
  if (y1 - y0 < 1e-9) { y1 += 1; y0 -= 1; }
  const X = (x) => 40 + (w - 50) * (x - x0) / Math.max(1, x1 - x0);
  const Y = (y) => h - 14 - (h - 24) * (y - y0) / (y1 - y0);
  g.strokeStyle = "#30363d"; g.beginPath(); g.moveTo(40, Y(0)); g.lineTo(w - 10, Y(0)); g.stroke();
  g.strokeStyle = ys[ys.length - 1] >= 0 ? "#3fb950" : "#f85149"; g.lineWidth = 1.5; g.beginPath();
  points.forEach((p, i) => (i ? g.lineTo(X(p[0]), Y(p[1])) : g.moveTo(X(p[0]), Y(p[1]))));
  g.stroke();
  g.fillText(y1.toFixed(2), 2, 12); g.fillText(y0.toFixed(2), 2, h - 4);
  g.fillText("equity " + ys[ys.length - 1].toFixed(4), w - 160, 12);
}

function renderTrading(v) {
  const all = v.trading || [];
  const sel = $("symbol-select");
  const names = all.map((t) => t.symbol);
  if (sel.options.length !== names.length) {
    sel.replaceChildren(...names.map((n) => { const o = el("option", n); o.value = n; return o; }));
  }
  if (!symbol || !names.includes(symbol)) symbol = names[0] || "";
  sel.value = symbol;
  const t = all.find((x) => x.symbol === symbol);
  if (!t) return;
  const kv = [];
  const p = t.pnl || {};
  const add = (k, x, cls) => { const d = el("div"); d.appendChild(el("span", k)); d.appendChild(el("b", x ?? "–", cls)); kv.push(d); };
  add("position", p.position ?? "0");
  add("realized (net)", p.net_realized ?? "0", p.net_realized && p.net_realized.startsWith("-") ? "down" : "up");
  add("unrealized", p.unrealized ?? "0");
  add("equity", p.equity ?? "0");
  add("fees", p.fees ?? "0");
  add("max drawdown", p.max_drawdown ?? "0");
  add("fills", p.fills ?? 0);
  add("round trips", p.trips !== undefined ? p.trips + " (" + p.wins + "W/" + p.losses + "L)" : "0");
  add("last trade", t.last_trade);
  $("pnl").replaceChildren(...kv);
  drawEquity(t.equity);
  const b = t.book;
  if (!b) return;
  const maxq = Math.max(1e-12, ...b.bids.map((l) => l[2]), ...b.asks.map((l) => l[2]));
  const bar = (q) => { const s = el("span", null, "bar"); s.style.width = (100 * q / maxq).toFixed(1) + "%"; return s; };
  fill($("book-bids").tBodies[0], b.bids.map((l) => { const q = el("td", l[1]); q.appendChild(bar(l[2])); return row([q, el("td", l[0], "bid")]); }));
  fill($("book-asks").tBodies[0], b.asks.map((l) => { const q = el("td", l[1]); q.appendChild(bar(l[2])); return row([el("td", l[0], "ask"), q]); }));
  $("book-meta").textContent = "mid " + b.mid + " · spread " + b.spread + " · imbalance " + (b.imbalance_bps / 100).toFixed(2) +
    "% (top " + b.bids.length + "/" + b.asks.length + ")" + (b.seeded ? " · seeded from " + b.seeded : "");
}

function renderOrders(v) {
  fill($("orders-table").tBodies[0], (v.orders || []).map((o) => row([
    num(o.seq), el("td", o.order_id), el("td", o.side, o.side === "BUY" ? "bid" : "ask"), num(o.price), num(o.qty),
    el("td", o.status + (o.reason ? " (" + o.reason + ")" : ""), o.status.includes("reject") ? "down" : o.status === "filled" ? "up" : ""),
    latCell(o.decision_ms), latCell(o.child_ms), latCell(o.ack_ms), latCell(o.fill_ms), num(o.filled),
  ])));
}

function renderStrategy(v) {
  const s = v.strategy || {};
  const kv = [];
  const add = (k, x, cls) => { const d = el("div"); d.appendChild(el("span", k)); d.appendChild(el("b", x ?? "–", cls)); kv.push(d); };
  const syms = s.symbols || {};
  const one = syms[symbol] || Object.values(syms)[0];
  if (one) {
    add("fair (microprice)", one.fair); add("quote bid", one.bid); add("quote ask", one.ask);
    add("imbalance", (one.imbalance_bps / 100).toFixed(2) + "%"); add("VPIN", (one.vpin_bps / 100).toFixed(2) + "%", one.toxic ? "down" : "");
    add("volatility (EMA |Δfair|)", one.volatility); add("spread multiplier", one.spread_mult + "×");
    add("half spread", one.half_spread); add("skew", one.skew); add("position", one.position);
    add("quotes", one.quotes); add("strategy fills", one.fills); add("realized PnL", one.realized);
    add("book updates", one.book_updates); add("trades seen", one.trades); add("toxic", one.toxic ? "yes" : "no", one.toxic ? "down" : "up");
  }
  add("intents", s.intents); add("fills (stream)", s.fills); add("order/fill ratio", s.order_fill_ratio);
  add("cancels", s.cancels); add("risk rejects", s.rejects);
  $("inspector").replaceChildren(...kv);
  $("insp-note").textContent = s.name ? (s.name + " · " + (s.exact ? "exact (replica since seq " + s.since_seq + ")" : "approximate: warming since seq " + s.since_seq)) : "no inspector";
  fill($("hash-table").tBodies[0], (v.hashes || []).map((hh) => {
    let status = hh.status;
    if (hh.replica) status += " · replica " + (hh.replica.ok ? "match" : "MISMATCH") + " @" + hh.replica.covers_seq;
    const cls = hh.status.startsWith("DIVERGED") || (hh.replica && !hh.replica.ok) ? "down" : hh.status === "match" ? "up" : "warn";
    return row([el("td", hh.service), num(hh.covers_seq), el("td", hh.hash), el("td", hh.time), el("td", status, cls)]);
  }));
  const d = v.divergences || [];
  $("divergences").replaceChildren(...d.slice(0, 5).map((x) =>
    el("div", "DIVERGENCE " + x.service + " at " + x.covers_seq + ": verifier " + x.expected + " ≠ published " + x.published, "down")));
}

function renderEvents(v) {
  for (const t of Object.keys(v.types || {})) {
    if (!seenTypes.has(t)) {
      seenTypes.add(t);
      const o = el("option", t); o.value = t; $("type-filter").appendChild(o);
    }
  }
  if ($("pause").checked) return;
  const f = $("type-filter").value;
  const evs = (f ? (v.by_type || {})[f] || [] : v.events || []).slice().reverse();
  fill($("events-table").tBodies[0], evs.map((e) => row([num(e.seq), el("td", e.time), el("td", e.type), el("td", e.source), el("td", e.text)])));
}

function render() {
  if (!view) return;
  const parts = [renderSummary, renderCluster, renderLatency, renderTrading, renderOrders, renderStrategy, renderEvents];
  for (const fn of parts) {
    try { fn(view); } catch (err) { console.error(fn.name, err); }
  }
}

let backoff = 250;
function connect() {
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
  ws.onopen = () => { backoff = 250; $("conn").textContent = "live"; $("conn").className = "ok"; };
  ws.onmessage = (m) => { try { view = JSON.parse(m.data); } catch (err) { return; } requestAnimationFrame(render); };
  ws.onclose = () => {
    $("conn").textContent = "reconnecting"; $("conn").className = "bad";
    setTimeout(connect, backoff); backoff = Math.min(5000, backoff * 2);
  };
}
document.addEventListener("DOMContentLoaded", () => {
  $("symbol-select").addEventListener("change", (e) => { symbol = e.target.value; render(); });
  $("type-filter").addEventListener("change", render);
  connect();
});
