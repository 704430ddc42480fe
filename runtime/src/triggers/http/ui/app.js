// The executions page: a small client of the admin API under /_flow/.
// Hash routes: #/runs?flow=&status=&since=&until=&q= (the list, its filters
// in the address so a view can be bookmarked), #/runs/ID (one run) and
// #/flows. Data is written with textContent only, never as HTML.
"use strict";

const PAGE_SIZE = 50;
const REFRESH_MS = 5000;
const REPLAY_POLL_MS = 1000;
const REPLAY_POLL_TRIES = 120;
const BULK_LIMIT = 1000;
const FINAL = ["succeeded", "failed", "skipped"];

let csrf = "";
let runs = [];
let refreshTimer = 0;
// Bumped by every load of the list: an answer to an older load (a refresh
// still in flight when the filters changed) is dropped, not drawn.
let listGeneration = 0;
// Set while the filters' Apply changes the address: focus stays on the form.
let keepFocus = false;

const $ = (id) => document.getElementById(id);

function say(message) {
  $("status").textContent = message;
}

// One call of the admin API; a lost session reloads into the sign-in form.
// Where the admin API is served from: "" or an instance's "/i/NAME"
// (`serve --instances`), whatever the page's own path starts with.
const base = location.pathname.slice(0, Math.max(0, location.pathname.indexOf("/_flow/ui")));

async function api(path, options = {}) {
  const headers = { Accept: "application/json" };
  if (options.method && options.method !== "GET") headers["X-Flow-CSRF"] = csrf;
  const resp = await fetch(base + path, { credentials: "same-origin", ...options, headers });
  if (resp.status === 401) {
    location.reload();
    throw new Error("signed out");
  }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || `HTTP ${resp.status}`);
  return body;
}

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function cell(row, label, content, className) {
  const td = el("td", undefined, className);
  td.dataset.label = label;
  if (content instanceof Node) td.append(content);
  else td.textContent = content === undefined || content === null ? "" : String(content);
  row.append(td);
  return td;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function duration(from, to) {
  if (!from) return "";
  const ms = (to ? new Date(to) : new Date()) - new Date(from);
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60000);
  return minutes < 60 ? `${minutes} min ${Math.round((ms % 60000) / 1000)} s` : `${(minutes / 60).toFixed(1)} h`;
}

function statusText(status) {
  return el("span", status, `st-${status}`);
}

// --- Routing -----------------------------------------------------------

function route() {
  const hash = location.hash.replace(/^#/, "") || "/runs";
  const [path, query] = hash.split("?");
  return { path, params: new URLSearchParams(query || "") };
}

function show(view) {
  for (const id of ["runs-view", "run-view", "flows-view"]) $(id).hidden = id !== view;
  const flows = view === "flows-view";
  markCurrent($("nav-runs"), !flows);
  markCurrent($("nav-flows"), flows);
}

function markCurrent(link, current) {
  if (current) link.setAttribute("aria-current", "page");
  else link.removeAttribute("aria-current");
}

// Shows the view the address names. `moveFocus` (the user went to another
// view): focus its heading, so that keyboard and screen reader users start
// reading there instead of wherever the link was.
async function render(moveFocus = false) {
  stopRefresh();
  const { path, params } = route();
  try {
    let heading;
    if (path.startsWith("/runs/")) {
      show("run-view");
      heading = "run-heading";
      await renderRun(decodeURIComponent(path.slice("/runs/".length)));
    } else if (path === "/flows") {
      show("flows-view");
      heading = "flows-heading";
      await renderFlows();
    } else {
      show("runs-view");
      heading = "runs-heading";
      fillFilters(params);
      await loadRuns();
      startRefresh();
    }
    if (moveFocus) $(heading).focus();
  } catch (e) {
    say(`Could not load: ${e.message}`);
  }
}

// --- Runs list ---------------------------------------------------------

// datetime-local values are local times; the API takes RFC 3339.
function toIso(local) {
  return local ? new Date(local).toISOString() : "";
}

function toLocal(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fillFilters(params) {
  $("f-flow").value = params.get("flow") || "";
  $("f-status").value = params.get("status") || "";
  $("f-since").value = toLocal(params.get("since"));
  $("f-until").value = toLocal(params.get("until"));
  $("f-q").value = params.get("q") || "";
}

// The current filters as API query parameters (empty ones left out).
function filterParams({ withStatus = true } = {}) {
  const p = new URLSearchParams();
  const add = (name, value) => { if (value) p.set(name, value); };
  add("flow", $("f-flow").value);
  if (withStatus) add("status", $("f-status").value);
  add("since", toIso($("f-since").value));
  add("until", toIso($("f-until").value));
  add("q", $("f-q").value.trim());
  return p;
}

async function loadRuns() {
  // A refresh reloads as many rows as are shown, paged or not.
  const p = filterParams();
  p.set("limit", String(Math.min(BULK_LIMIT, Math.max(PAGE_SIZE, runs.length))));
  const generation = ++listGeneration;
  const { executions } = await api(`/_flow/executions?${p}`);
  if (generation !== listGeneration) return;
  runs = executions;
  drawRuns(executions.length >= Number(p.get("limit")));
}

async function loadOlder() {
  const p = filterParams();
  p.set("limit", String(PAGE_SIZE));
  p.set("before", runs[runs.length - 1].id);
  const generation = ++listGeneration;
  const { executions } = await api(`/_flow/executions?${p}`);
  if (generation !== listGeneration) return;
  runs = runs.concat(executions);
  drawRuns(executions.length >= PAGE_SIZE);
  say(executions.length ? `${executions.length} older runs shown.` : "No older runs.");
}

function drawRuns(mayHaveMore) {
  const body = $("runs");
  body.replaceChildren();
  for (const run of runs) {
    const row = el("tr");
    const link = el("a", run.id);
    link.href = `#/runs/${encodeURIComponent(run.id)}`;
    cell(row, "Id", link, "id");
    cell(row, "Flow", run.flow);
    cell(row, "Status", statusText(run.status));
    cell(row, "Started", when(run.started_at || run.created_at));
    cell(row, "Duration", duration(run.started_at, run.finished_at));
    cell(row, "Last error", run.error, "err");
    body.append(row);
  }
  $("runs-empty").hidden = runs.length > 0;
  $("older").hidden = !mayHaveMore || runs.length === 0;
}

function startRefresh() {
  stopRefresh();
  refreshTimer = setInterval(() => {
    if (document.visibilityState !== "visible" || !$("auto-refresh").checked) return;
    loadRuns().catch((e) => say(`Refresh failed: ${e.message}`));
  }, REFRESH_MS);
}

function stopRefresh() {
  clearInterval(refreshTimer);
}

function applyFilters(event) {
  event.preventDefault();
  runs = [];
  const p = filterParams();
  const target = `#/runs${p.toString() ? `?${p}` : ""}`;
  if (location.hash === target) {
    render();
  } else {
    keepFocus = true;
    location.hash = target;
  }
}

// Replays every failed run matching the filters, after saying how many.
async function replayFailed() {
  const p = filterParams({ withStatus: false });
  const counted = new URLSearchParams(p);
  counted.set("status", "failed");
  counted.set("limit", String(BULK_LIMIT));
  const { executions } = await api(`/_flow/executions?${counted}`);
  const n = executions.length;
  if (n === 0) {
    say("No failed runs match these filters.");
    return;
  }
  const many = n >= BULK_LIMIT ? ` (the first ${BULK_LIMIT}; replay again for the rest)` : "";
  if (!confirm(`Replay ${n} failed run${n === 1 ? "" : "s"}${many}?`)) return;
  const answer = await api(`/_flow/executions/replay-failed?${p}`, { method: "POST" });
  say(`Replay queued for ${answer.replayed} run${answer.replayed === 1 ? "" : "s"}.`);
  await loadRuns();
}

// --- One run -------------------------------------------------------------

function json(value) {
  return value === undefined || value === null ? "(none)" : JSON.stringify(value, null, 2);
}

async function renderRun(id) {
  const run = await api(`/_flow/executions/${encodeURIComponent(id)}`);
  $("run-heading").textContent = `Run ${run.id}`;
  const summary = $("run-summary");
  summary.replaceChildren();
  const fields = [
    ["Flow", run.flow],
    ["Status", statusText(run.status)],
    ["Attempts", run.attempts],
    ["Duration", duration(run.started_at, run.finished_at)],
    ["Error", run.error || ""],
    ["Failed step", run.error_step || ""],
  ];
  for (const [name, value] of fields) {
    // A run that did not fail has no error to show.
    if (value === "") continue;
    summary.append(el("dt", name));
    const dd = el("dd");
    if (value instanceof Node) dd.append(value);
    else dd.textContent = String(value);
    summary.append(dd);
  }
  const timeline = $("run-timeline");
  timeline.replaceChildren(
    el("li", `Created ${when(run.created_at)}`),
    el("li", run.started_at ? `Started ${when(run.started_at)}` : "Not started yet"),
    el("li", run.finished_at ? `Finished ${when(run.finished_at)} (${run.status})` : `Not finished (${run.status})`),
  );
  $("run-trigger").textContent = json(run.trigger);
  $("run-result").textContent = json(run.result);
  drawSteps(run.steps || []);
  const replay = $("replay");
  replay.hidden = !FINAL.includes(run.status);
  replay.dataset.id = run.id;
  return run;
}

function drawSteps(steps) {
  const body = $("run-steps");
  body.replaceChildren();
  for (const step of steps) {
    const row = el("tr");
    cell(row, "Step", step.key);
    cell(row, "Call", step.call);
    cell(row, "Status", statusText(step.status));
    cell(row, "Attempts", step.attempts);
    cell(row, "Duration", `${step.duration_ms} ms`);
    cell(row, "Input", step.input == null ? "" : el("pre", json(step.input)));
    // A succeeded step may keep the error of an earlier attempt: its
    // output is what matters then.
    const failed = step.status === "failed";
    const detail = failed ? el("pre", step.error, "error") : el("pre", json(step.output));
    cell(row, "Output or error", detail);
    body.append(row);
  }
  $("run-no-steps").hidden = steps.length > 0;
}

async function replayRun() {
  const button = $("replay");
  const id = button.dataset.id;
  button.disabled = true;
  try {
    await api(`/_flow/executions/${encodeURIComponent(id)}/replay`, { method: "POST" });
    say("Replay queued; waiting for the run to finish…");
    for (let i = 0; i < REPLAY_POLL_TRIES; i++) {
      await new Promise((resolve) => setTimeout(resolve, REPLAY_POLL_MS));
      // The user went elsewhere: stop following this run.
      if (decodeURIComponent(route().path) !== `/runs/${id}`) return;
      const run = await renderRun(id);
      if (FINAL.includes(run.status)) {
        say(`The replay ended: ${run.status}.`);
        return;
      }
    }
    say("The replay has not finished yet; reload to see its status.");
  } catch (e) {
    say(`Replay failed: ${e.message}`);
  } finally {
    button.disabled = false;
  }
}

// --- Flows ---------------------------------------------------------------

async function renderFlows() {
  const [listing, counted] = await Promise.all([api("/_flow/flows"), api("/_flow/flows/counts")]);
  const figure = $("graph-figure");
  figure.hidden = !listing.graph;
  // Loaded once: the drawing changes only with the binary.
  if (listing.graph && !$("graph").src) $("graph").src = base + "/_flow/ui/graph.svg";
  const body = $("flows");
  body.replaceChildren();
  for (const flow of listing.flows) {
    const row = el("tr");
    const link = el("a", flow.name);
    link.href = `#/runs?flow=${encodeURIComponent(flow.name)}`;
    cell(row, "Flow", link);
    const next = flow.next_tick ? ` (next: ${when(flow.next_tick)})` : "";
    cell(row, "Trigger", flow.trigger + next);
    cell(row, "Route", flow.endpoint || "");
    const counts = counted.flows[flow.name] || {};
    for (const status of ["queued", "running", "succeeded", "failed", "skipped"]) {
      const n = counts[status] || 0;
      const text = n >= counted.cap ? `${n}+` : String(n);
      const label = status[0].toUpperCase() + status.slice(1);
      if (n === 0) {
        cell(row, label, text);
      } else {
        const a = el("a", text);
        a.href = `#/runs?flow=${encodeURIComponent(flow.name)}&status=${status}`;
        cell(row, label, a);
      }
    }
    body.append(row);
  }
  $("flows-cap").textContent = `Counts stop at ${counted.cap} (shown as ${counted.cap}+).`;
}

// --- Start -----------------------------------------------------------------

async function signOut() {
  try {
    await api("/_flow/ui/session/delete", { method: "POST" });
  } finally {
    location.reload();
  }
}

async function start() {
  ({ csrf } = await api("/_flow/ui/session"));
  const listing = await api("/_flow/flows");
  $("integration").textContent = `${listing.integration} ${listing.version || ""}`.trim();
  document.title = `Executions: ${listing.integration}`;
  const select = $("f-flow");
  for (const flow of listing.flows) {
    const option = el("option", flow.name);
    option.value = flow.name;
    select.append(option);
  }
  $("filters").addEventListener("submit", applyFilters);
  $("older").addEventListener("click", () => loadOlder().catch((e) => say(`Could not load: ${e.message}`)));
  $("replay-failed").addEventListener("click", () => replayFailed().catch((e) => say(`Replay failed: ${e.message}`)));
  $("replay").addEventListener("click", replayRun);
  $("sign-out").addEventListener("click", signOut);
  window.addEventListener("hashchange", () => {
    // A message about the previous view would read as about this one.
    say("");
    runs = [];
    render(!keepFocus);
    keepFocus = false;
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && !$("runs-view").hidden) loadRuns().catch(() => {});
  });
  await render();
}

document.addEventListener("DOMContentLoaded", () => {
  start().catch((e) => say(`Could not start: ${e.message}`));
});
