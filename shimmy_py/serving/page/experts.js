// Experts: for the last answer (chat with "trace experts" on a server started
// with --trace-experts), the layer x expert heatmap of its tokens' choices and
// the token strip (each token's first-choice expert, per layer), from the
// routing its last chunk carries (return_routed_experts); and the server-wide
// selection counts of /metrics (shimmy_expert_selections_total) as a heatmap
// per model, redrawn as they grow.
import { call, events, expertColor, h, heatmap, json, parseMetrics } from "./util.js";

const $ = (id) => document.getElementById(id);
const experts = new Map();     // model -> routed experts per layer (from /api/models)

export function init() {
  events.addEventListener("answer", (e) => drawAnswer(e.detail).catch(() => {}));
}

async function expertCount(model, seen) {
  if (!experts.has(model)) {
    try {
      const list = await json("/api/models");
      for (const m of list.models) if (m.experts) experts.set(m.name, m.experts);
    } catch { /* the count seen is used */ }
  }
  return Math.max(experts.get(model) || 0, seen + 1);
}

// each routed token's text: the prompt as the server renders and tokenizes it,
// the answer's from its logprobs (null where they do not line up)
async function tokenTexts(model, messages, nPrompt, answerPieces) {
  try {
    const { prompt } = await json("/apply-template", { method: "POST", body: { model, messages } });
    const { tokens } = await json("/tokenize", { method: "POST",
      body: { model, content: prompt, add_special: true, parse_special: true, with_pieces: true } });
    if (tokens.length !== nPrompt) return null;
    return [...tokens.map((t) => t.piece), ...answerPieces];
  } catch { return null; }
}

async function drawAnswer({ model, messages, layers, prompt, answer, pieces }) {
  const tokens = [...prompt, ...answer];          // [token][layer][k]
  const texts = await tokenTexts(model, messages, prompt.length, pieces);
  const label = (ti) => (texts && texts[ti] !== undefined ? ` ${JSON.stringify(texts[ti])}` : "");
  const seen = Math.max(0, ...tokens.flat(2));
  const n = await expertCount(model, seen);
  const counts = layers.map(() => new Array(n).fill(0));
  for (const t of tokens) t.forEach((choice, li) => choice.forEach((e) => counts[li][e]++));
  const names = layers.map((l) => `layer ${l}`);
  const strip = h("div", { class: "strip", id: "token-strip" }, layers.map((l, li) => h("div", { class: "hm-row", dataset: { layer: l } },
    h("span", { class: "hm-label" }, `layer ${l}`),
    tokens.map((t, ti) => h("span", {
      class: "hm-cell", title: `token ${ti}${label(ti)}${ti >= prompt.length ? " (answer)" : " (prompt)"}, layer ${l}: experts ${t[li].join(", ")}`,
      style: { backgroundColor: expertColor(t[li][0], n), opacity: ti >= prompt.length ? "1" : "0.45" },
    })))));
  const map = heatmap(counts, names, (r, c) => `${names[r]}, expert ${c}`);
  map.id = "answer-heatmap";
  $("answer-experts").replaceChildren(
    h("p", {}, `${model}: ${prompt.length} prompt tokens (faded in the strip) and ${answer.length} answer tokens, ` +
      `${layers.length} MoE layers, ${tokens[0]?.[0]?.length || 0} experts per token`),
    map, h("h2", {}, "Token strip (first-choice expert, a colour per expert)"), strip);
}

export async function refreshServer() {
  const resp = await call("/metrics");
  if (!resp.ok) return;
  const samples = parseMetrics(await resp.text()).filter((s) => s.name === "shimmy_expert_selections_total");
  const byModel = new Map();
  for (const s of samples) {
    const m = byModel.get(s.labels.model) || new Map();
    const layer = Number(s.labels.layer), e = Number(s.labels.expert);
    if (!m.has(layer)) m.set(layer, []);
    m.get(layer)[e] = s.value;
    byModel.set(s.labels.model, m);
  }
  if (!byModel.size) {
    $("server-experts").replaceChildren(h("p", { class: "hint" },
      "No counts: the server counts routing with --trace-experts, once a model has answered."));
    return;
  }
  const parts = [];
  for (const [model, layers] of [...byModel].sort()) {
    const order = [...layers.keys()].sort((a, b) => a - b);
    const n = Math.max(...order.map((l) => layers.get(l).length));
    const counts = order.map((l) => Array.from({ length: n }, (_, e) => layers.get(l)[e] || 0));
    const names = order.map((l) => `layer ${l}`);
    const map = heatmap(counts, names, (r, c) => `${names[r]}, expert ${c}`);
    map.dataset.model = model;
    parts.push(h("h2", {}, model), map);
  }
  $("server-experts").replaceChildren(...parts);
}
