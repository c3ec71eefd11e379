// Metrics at a glance, from /metrics sampled every 2 s while the page is
// open: requests and generated tokens (per second), decode tok/s, queue
// depth and sequences decoding, over the last five minutes.
import { call, h, parseMetrics, sum } from "./util.js";

const WINDOW_S = 300;
const history = [];            // {t, requests, tokens, queue, active}
const OWN = new Set(["/metrics", "/", "other"]);   // the page's own polling is not traffic

export async function sample() {
  const resp = await call("/metrics");
  if (!resp.ok) return;
  const s = parseMetrics(await resp.text());
  const now = Date.now() / 1000;
  history.push({
    t: now,
    requests: sum(s, "shimmy_requests_total", (l) => !OWN.has(l.route) && !String(l.route).startsWith("/ui/")),
    tokens: sum(s, "shimmy_generated_tokens_total"),
    queue: sum(s, "shimmy_queue_depth"),
    active: sum(s, "shimmy_active_sequences"),
    tps: sum(s, "shimmy_decode_tokens_per_second"),
  });
  while (history.length && history[0].t < now - WINDOW_S) history.shift();
}

function rate(key) {
  return history.slice(1).map((p, i) => ({ t: p.t, v: Math.max(0, (p[key] - history[i][key]) / (p.t - history[i].t)) }));
}

function spark(points) {
  const w = 300, hgt = 60;
  if (points.length < 2) return h("svg", { viewBox: `0 0 ${w} ${hgt}` });
  const t0 = points[0].t, t1 = points[points.length - 1].t, max = Math.max(1e-9, ...points.map((p) => p.v));
  const xy = points.map((p) => `${(((p.t - t0) / Math.max(1e-9, t1 - t0)) * w).toFixed(1)},${(hgt - 2 - (p.v / max) * (hgt - 4)).toFixed(1)}`);
  return h("svg", { viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: "none" }, h("polyline", { points: xy.join(" ") }));
}

function card(id, title, value, points) {
  return h("div", { class: "card", id }, h("div", {}, title), h("div", { class: "value" }, value), spark(points));
}

export async function draw() {
  if (!history.length) await sample();
  const last = history[history.length - 1];
  const level = (key) => history.map((p) => ({ t: p.t, v: p[key] }));
  const reqRate = rate("requests"), tokRate = rate("tokens");
  const fmt = (pts) => (pts.length ? pts[pts.length - 1].v.toFixed(2) : "-");
  document.getElementById("metric-cards").replaceChildren(h("div", { class: "cards" },
    card("m-requests", "requests (total, and per second)", `${last.requests}`, reqRate),
    card("m-tokens", "generated tokens (total)", `${last.tokens}`, level("tokens")),
    card("m-tps", "generated tokens per second", fmt(tokRate), tokRate),
    card("m-queue", "queue depth", `${last.queue}`, level("queue")),
    card("m-active", "sequences decoding", `${last.active}`, level("active"))),
  h("p", { class: "hint" }, `${history.length} samples over the last ${Math.round(last.t - history[0].t)} s (2 s apart).`));
}
