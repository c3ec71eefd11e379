// The page's entry: tabs, the API key, the model lists every view picks from,
// and the views' refreshes (models and metrics poll while the page is open).
import { events, json, setApiKey, Locked } from "./util.js";
import * as chat from "./chat.js";
import * as models from "./models.js";
import * as plan from "./plan.js";
import * as experts from "./experts.js";
import * as metrics from "./metrics.js";

const $ = (id) => document.getElementById(id);
let current = "chat";

function show(view) {
  current = view;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.view === view);
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== `view-${view}`;
  refresh();
}

// the models the server can serve, into every model picker
async function loadModelNames() {
  const list = await json("/v1/models");
  const names = list.data.map((m) => m.id);
  for (const id of ["chat-model", "plan-model"]) {
    const select = $(id), keep = select.value;
    select.replaceChildren(...names.map((n) => new Option(n, n)));
    if (names.includes(keep)) select.value = keep;
  }
  $("status").textContent = `${names.length} model${names.length === 1 ? "" : "s"}`;
  document.body.dataset.ready = "1";
}

async function refresh() {
  try {
    await loadModelNames();
    if (current === "models") await models.refresh();
    if (current === "experts") await experts.refreshServer();
    if (current === "metrics") await metrics.draw();
  } catch (err) {
    if (!(err instanceof Locked)) $("status").textContent = String(err.message || err);
  }
}

events.addEventListener("locked", () => {
  $("key-panel").hidden = false;
  document.body.dataset.locked = "1";
  $("status").textContent = "API key needed";
  $("send").disabled = true;
});
events.addEventListener("unlocked", () => {
  $("key-panel").hidden = true;
  delete document.body.dataset.locked;
  $("send").disabled = false;
  refresh();
});

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  setApiKey($("key-input").value.trim());
  $("key-input").value = "";
});
for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.view));

chat.init();
plan.init();
experts.init();
refresh();
setInterval(async () => {          // sampled all the time, so the curves cover the last minutes when opened
  if (document.body.dataset.locked) return;
  try {
    await metrics.sample();
    if (current === "metrics") metrics.draw();
    if (current === "experts") await experts.refreshServer();
  } catch { /* a server restarting: the next tick tries again */ }
}, 2000);
setInterval(() => { if (current === "models" && !document.body.dataset.locked) models.refresh().catch(() => {}); }, 1000);
