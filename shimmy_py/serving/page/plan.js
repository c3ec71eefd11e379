// A model's plan (POST /api/plan, planned without loading it): per device
// its weights, KV cache and reserve against its capacity, per layer the
// bytes on each device, as bars to scale (each segment names its tensors);
// the llama-server flags that place it the same way.
import { bytes, h, json, showError } from "./util.js";

const $ = (id) => document.getElementById(id);

export function init() {
  $("plan-show").addEventListener("click", show);
  $("plan-model").addEventListener("change", show);
}

function devicesTable(plan) {
  const scale = Math.max(...plan.devices.map((d) => Math.max(d.capacity_bytes || 0, d.total_bytes)));
  const pct = (n) => `${(100 * n) / Math.max(1, scale)}%`;
  return h("table", { id: "plan-devices" },
    h("tr", {}, ["device", "type", "weights", "KV cache", "reserve", "total", "capacity", ""].map((t) => h("th", {}, t))),
    plan.devices.map((d) => h("tr", { dataset: { device: d.name, total: d.total_bytes, weights: d.weights_bytes, kv: d.kv_bytes } },
      h("td", {}, d.name), h("td", {}, d.type),
      h("td", { class: "num" }, bytes(d.weights_bytes)), h("td", { class: "num" }, bytes(d.kv_bytes)),
      h("td", { class: "num" }, bytes(d.reserve_bytes)), h("td", { class: "num" }, bytes(d.total_bytes)),
      h("td", { class: "num" }, d.capacity_bytes ? bytes(d.capacity_bytes) : "-"),
      h("td", {}, h("div", { class: "bar" },
        h("span", { class: "seg-weights", style: { width: pct(d.weights_bytes) } }),
        h("span", { class: "seg-kv", style: { width: pct(d.kv_bytes) } }),
        h("span", { class: "seg-reserve", style: { width: pct(d.reserve_bytes) } }))))));
}

function layers(plan) {
  const devices = plan.devices.map((d) => d.name);
  const cls = (d) => (d.toUpperCase().startsWith("CPU") ? "dev-cpu" : `dev-${devices.indexOf(d) % 4}`);
  const rows = new Map();          // layer -> {device: bytes}
  const names = new Map();         // "layer device" -> its tensors' short names
  for (const t of plan.tensors) {
    const key = t.layer === null || t.layer === undefined ? "other" : t.layer;
    const row = rows.get(key) || {};
    row[t.device] = (row[t.device] || 0) + t.bytes;
    rows.set(key, row);
    const at = `${key} ${t.device}`;
    names.set(at, [...(names.get(at) || []), t.name.replace(/^blk\.\d+\./, "").replace(/\.weight$/, "")]);
  }
  const order = [...rows.keys()].sort((a, b) => (a === "other") - (b === "other") || a - b);
  const max = Math.max(...[...rows.values()].map((r) => Object.values(r).reduce((x, y) => x + y, 0)));
  return h("div", { class: "layers" },
    h("div", { class: "legend" }, devices.map((d) => [h("span", { class: cls(d) }), d])),
    order.map((key) => {
      const row = rows.get(key);
      const total = Object.values(row).reduce((x, y) => x + y, 0);
      return h("div", { class: "layer", dataset: { layer: key } },
        h("span", {}, key === "other" ? "outside" : `layer ${key}`),
        h("div", { class: "bar", title: Object.entries(row).map(([d, b]) => `${d}: ${bytes(b)}`).join(", ") },
          Object.entries(row).map(([d, b]) => h("span", {
            class: cls(d), style: { width: `${(100 * b) / Math.max(1, max)}%` },
            title: `${d}, ${bytes(b)}: ${names.get(`${key} ${d}`).join(", ")}`,
          }))),
        h("span", { class: "num" }, bytes(total)));
    }));
}

async function show() {
  const model = $("plan-model").value;
  if (!model) return;
  try {
    const plan = await json("/api/plan", { method: "POST", body: { model } });
    $("plan").replaceChildren(...[
      h("p", {}, `${plan.model} (${plan.file}): strategy ${plan.strategy}, context ${plan.n_ctx} tokens`,
        plan.accelerator ? `, accelerator ${plan.accelerators.join(" + ")}` : ", no accelerator"),
      devicesTable(plan),
      h("h2", {}, "Per layer"), layers(plan),
      h("h2", {}, "The same placement with llama-server"),
      h("pre", { class: "flags", id: "plan-flags" }, `llama-server ${plan.llama_server_args.join(" ")}`),
      plan.notices.length ? h("ul", {}, plan.notices.map((n) => h("li", {}, n))) : null].filter(Boolean));
  } catch (err) {
    showError($("plan"), err);
  }
}
