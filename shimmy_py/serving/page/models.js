// Models: every one the server can serve (/api/models) and every loaded one
// (/api/ps): size, bytes per device (weights and KV cache), context, cache
// RAM, keep-alive countdown; load and unload as
// Ollama's API does (/api/generate with no prompt; keep_alive 0 unloads).
import { bytes, h, json, showError } from "./util.js";

const $ = (id) => document.getElementById(id);

function countdown(expires) {
  if (!expires) return "kept loaded";
  const s = Math.max(0, Math.round((Date.parse(expires) - Date.now()) / 1000));
  return `unloads in ${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function deviceBar(devices, total) {
  const names = Object.keys(devices);
  return h("div", { class: "bar", title: names.map((d) => `${d}: ${bytes(devices[d])}`).join(", ") },
    names.map((d, i) => h("span", {
      class: d.toUpperCase().startsWith("CPU") ? "dev-cpu" : `dev-${i % 4}`,
      style: { width: `${(100 * devices[d]) / Math.max(1, total)}%` },
    })));
}

function perDevice(devices) {
  return Object.entries(devices).map(([d, b]) => h("div", { class: "device", dataset: { device: d, bytes: b } },
    `${d}: ${bytes(b)}`));
}

async function setLoaded(name, load) {
  await json("/api/generate", { method: "POST", body: load ? { model: name } : { model: name, keep_alive: 0 } });
  await refresh();
}

function loadedTable(ps) {
  if (!ps.models.length) return h("p", { class: "hint" }, "No model is loaded: one loads on its first request, or with Load below.");
  return h("table", { id: "loaded-table" },
    h("tr", {}, ["model", "size (plan)", "weights per device", "KV cache per device", "context", "cache RAM",
      "requests", "keep-alive", ""].map((t) => h("th", {}, t))),
    ps.models.map((m) => h("tr", { dataset: { model: m.name, size: m.size } },
      h("td", {}, m.name),
      h("td", { class: "num" }, bytes(m.size)),
      h("td", {}, deviceBar(m.devices || {}, m.size), perDevice(m.devices || {})),
      h("td", { class: "kv" }, perDevice(m.kv_bytes || {})),
      h("td", { class: "num" }, m.context_length ?? "-"),
      h("td", { class: "num" }, bytes(m.cache_ram_bytes || 0)),
      h("td", { class: "num" }, m.active_requests),
      h("td", { class: "countdown", dataset: { expires: m.expires_at || "" } }, countdown(m.expires_at)),
      h("td", {}, h("button", { type: "button", onclick: () => setLoaded(m.name, false).catch((e) => showError($("loaded"), e)) }, "Unload")))));
}

function knownTable(list) {
  return h("table", { id: "known-table" },
    h("tr", {}, ["model", "file size", "architecture", "parameters (active)", "quantization", ""].map((t) => h("th", {}, t))),
    list.models.map((m) => h("tr", { dataset: { model: m.name, bytes: m.size_bytes } },
      h("td", {}, m.name),
      h("td", { class: "num" }, bytes(m.size_bytes)),
      h("td", {}, m.architecture || "-"),
      h("td", { class: "num" }, m.parameter_count ? `${(m.parameter_count / 1e6).toFixed(1)} M (${((m.active_parameter_count || 0) / 1e6).toFixed(1)} M)` : "-"),
      h("td", {}, m.quantization || "-"),
      h("td", {}, m.loaded ? "loaded" : h("button", { type: "button", onclick: () => setLoaded(m.name, true).catch((e) => showError($("known"), e)) }, "Load")))));
}

export async function refresh() {
  try {
    const [ps, list] = await Promise.all([json("/api/ps"), json("/api/models")]);
    $("loaded").replaceChildren(loadedTable(ps));
    $("known").replaceChildren(knownTable(list));
  } catch (err) {
    showError($("loaded"), err);
  }
}
