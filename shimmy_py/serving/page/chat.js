// Chat over the server's own OpenAI route (/v1/chat/completions, streamed):
// the conversation's messages, a system prompt, temperature and max tokens;
// reasoning apart from the answer; tool calls as calls; TTFT and tok/s from
// the last chunk's timings; Stop aborts the request, which ends the
// generation on the server as for any client that leaves.
import { call, events, h, Locked } from "./util.js";

const $ = (id) => document.getElementById(id);
let history = [];            // the conversation as OpenAI messages
let running = null;          // the AbortController of the answer streaming now

export function init() {
  $("chat-form").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); }
  });
  $("stop").addEventListener("click", () => running && running.abort());
  $("clear-chat").addEventListener("click", () => { history = []; $("messages").replaceChildren(); });
}

function bubble(role) {
  const parts = {
    reasoning: h("div", { class: "reasoning", hidden: true }),
    content: h("div", { class: "content" }),
    calls: h("div", { class: "tool-calls" }),
    stats: h("div", { class: "stats" }),
  };
  const el = h("div", { class: `msg ${role}` }, h("div", { class: "role" }, role), parts.reasoning, parts.content,
    parts.calls, parts.stats);
  $("messages").append(el);
  return parts;
}

// the SSE events of a streamed answer, as parsed JSON objects
async function* sseEvents(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffered = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffered.indexOf("\n\n")) >= 0) {
      const event = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (data === "[DONE]") return;
      if (data) yield JSON.parse(data);
    }
  }
}

function request(prompt) {
  const messages = [];
  const system = $("system").value.trim();
  if (system) messages.push({ role: "system", content: system });
  messages.push(...history, { role: "user", content: prompt });
  const body = {
    model: $("chat-model").value, messages, stream: true,
    temperature: Number($("temperature").value), max_tokens: Number($("max-tokens").value),
  };
  if ($("trace").checked) Object.assign(body, { return_routed_experts: true, logprobs: true });  // logprobs: each token's text
  const tools = $("tools").value.trim();
  if (tools) {
    try { body.tools = JSON.parse(tools); } catch (err) { throw new Error(`the tools are not JSON: ${err.message}`); }
  }
  return body;
}

async function send() {
  const prompt = $("prompt").value;
  if (!prompt.trim() || running) return;
  $("prompt").value = "";
  bubble("user").content.textContent = prompt;
  const out = bubble("assistant");
  let body;
  try { body = request(prompt); } catch (err) {
    out.content.append(h("span", { class: "error" }, err.message));
    return;
  }
  const calls = [], pieces = [];
  let text = "", reasoning = "", last = null;
  running = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  try {
    const resp = await call("/v1/chat/completions", { method: "POST", body, signal: running.signal });
    if (!resp.ok) {
      const err = await resp.json().catch(() => ({}));
      throw new Error(`${resp.status}: ${err.error?.message || resp.statusText}`);
    }
    for await (const chunk of sseEvents(resp)) {
      if (chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
      const choice = chunk.choices?.[0];
      const delta = choice?.delta || {};
      if (delta.reasoning_content) {
        reasoning += delta.reasoning_content;
        out.reasoning.hidden = false;
        out.reasoning.textContent = reasoning;
      }
      if (delta.content) { text += delta.content; out.content.textContent = text; }
      for (const tc of delta.tool_calls || []) {
        calls[tc.index] = tc;
        out.calls.append(h("div", { class: "tool-call" }, `call ${tc.function.name}(${tc.function.arguments})`));
      }
      if (choice?.finish_reason) last = chunk;
      for (const lp of choice?.logprobs?.content || []) pieces.push(lp.token);
    }
    finish(out, last, body, { text, reasoning, calls, pieces }, prompt);
  } catch (err) {
    if (err.name === "AbortError") {
      out.stats.textContent = "stopped";
      out.content.dataset.stopped = "1";
    } else if (!(err instanceof Locked)) {
      out.content.append(h("span", { class: "error" }, String(err.message || err)));
    }
  } finally {
    running = null;
    $("send").disabled = !!document.body.dataset.locked;
    $("stop").disabled = true;
  }
}

function finish(out, last, body, { text, reasoning, calls, pieces }, prompt) {
  const t = last?.timings || {};
  const tokens = last?.usage?.completion_tokens;
  out.stats.textContent = [
    last?.choices[0].finish_reason && `finish: ${last.choices[0].finish_reason}`,
    tokens !== undefined && `${tokens} tokens`,
    t.ttft_ms !== undefined && `TTFT ${Math.round(t.ttft_ms)} ms`,
    t.tokens_per_second && `${t.tokens_per_second.toFixed(1)} tok/s`,
  ].filter(Boolean).join(" · ");
  out.stats.dataset.done = "1";
  const message = { role: "assistant", content: text };
  if (calls.length) message.tool_calls = calls.map(({ index, ...call }) => call);
  history.push({ role: "user", content: prompt }, message);
  if (last?.routed_experts_layers) {
    events.dispatchEvent(new CustomEvent("answer", { detail: {
      model: body.model, messages: body.messages, layers: last.routed_experts_layers,
      prompt: last.prompt_routed_experts, answer: last.choices[0].routed_experts, pieces, text, reasoning,
    } }));
  }
}
