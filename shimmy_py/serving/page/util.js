// What every view of the page shares: calls to the server (with the API key
// once given), building elements, byte sizes, heatmaps, Prometheus text.

const KEY = "shimmy-py-api-key";
export const events = new EventTarget();   // "locked" (a call needs the key), "unlocked", "answer" (routing)

export class Locked extends Error {}

export function apiKey() { return sessionStorage.getItem(KEY) || ""; }
export function setApiKey(key) {
  sessionStorage.setItem(KEY, key);
  events.dispatchEvent(new Event("unlocked"));
}

// fetch() of a server route: the key sent when given; a 401 asks for it (Locked)
export async function call(path, { method = "GET", body, signal } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (apiKey()) headers["Authorization"] = `Bearer ${apiKey()}`;
  const resp = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  if (resp.status === 401) {
    events.dispatchEvent(new Event("locked"));
    throw new Locked("this server needs its API key");
  }
  return resp;
}

// a route's JSON answer, or an Error carrying the server's own message
export async function json(path, options) {
  const resp = await call(path, options);
  const text = await resp.text();
  let value;
  try { value = JSON.parse(text); } catch { value = null; }
  if (!resp.ok) {
    const message = value && (value.error?.message || value.error || value.message) || text || resp.statusText;
    throw new Error(`${resp.status}: ${typeof message === "string" ? message : JSON.stringify(message)}`);
  }
  return value;
}

// h("div", {class: "x", dataset: {n: 1}, onclick: f}, child, "text", ...)
export function h(tag, attrs = {}, ...children) {
  const svg = ["svg", "polyline", "line", "rect", "text"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style") Object.assign(el.style, v);
    else if (k in el && !svg && k !== "list") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

export function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, v = Number(n);
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i === 0 ? 0 : v < 10 ? 2 : 1)} ${units[i]}`;
}

export function showError(where, err) {
  if (err instanceof Locked) return;
  where.replaceChildren(h("p", { class: "error" }, String(err.message || err)));
}

// A heatmap of counts[row][col] as a grid of cells, one .hm-row per row
export function heatmap(counts, rowLabels, title) {
  const max = Math.max(1, ...counts.flat());
  const grid = h("div", { class: "heatmap", dataset: { rows: counts.length } });
  counts.forEach((row, r) => {
    const line = h("div", { class: "hm-row", dataset: { label: rowLabels[r] } }, h("span", { class: "hm-label" }, rowLabels[r]));
    row.forEach((n, c) => line.append(h("span", {
      class: "hm-cell", title: `${title(r, c)}: ${n}`, dataset: { n },
      style: { backgroundColor: `rgba(200, 70, 30, ${(n / max).toFixed(3)})` },
    })));
    grid.append(line);
  });
  return grid;
}

// a hue per expert id, for the token strip
export function expertColor(e, n) {
  return `hsl(${Math.round((360 * e) / Math.max(1, n))}, 65%, 55%)`;
}

// Prometheus exposition text -> [{name, labels, value}]
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const [, k, v] of (m[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v.replace(/\\(.)/g, "$1");
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

export function sum(samples, name, keep = () => true) {
  return samples.filter((s) => s.name === name && keep(s.labels)).reduce((a, s) => a + s.value, 0);
}
