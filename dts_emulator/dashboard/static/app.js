// The dashboard page: a small router over the JSON API under /api/.
// Every piece of data is placed with textContent (via h()), never as markup,
// so names, keys, inputs and failure messages always show as text.
"use strict";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let refreshTimer = null;
let refreshing = false;  // true while an auto-refresh re-renders the view
let refreshes = 0;
let readOnly = false;  // from /api/settings, read before the first view

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value !== false && value !== null && value !== undefined) el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const enc = encodeURIComponent;
// Instance and entity IDs travel as ?id=, never as a path segment: browsers rewrite the
// segments "." and ".." (even escaped as %2E), so such an ID could not be opened.
const instancePath = (hub, id, action = "") => `/hubs/${enc(hub)}/instance${action && `/${action}`}?id=${enc(id)}`;
const entityPath = (hub, id, action = "") => `/hubs/${enc(hub)}/entity${action && `/${action}`}?id=${enc(id)}`;
const link = (href, text) => h("a", { href, "data-link": true }, text);
const json = (value) => h("pre", { class: "json" }, value === null || value === undefined ? "(none)" : JSON.stringify(value, null, 2));
const status = (s) => h("span", { class: `status ${s}` }, s);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
const pad = (n, width = 2) => String(n).padStart(width, "0");
// A time to the millisecond (local time): what the history, timeline and operation log show.
const clock = (iso) => {
  if (!iso) return "";
  const d = new Date(iso);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
};
const whenMs = (iso) => (iso ? `${new Date(iso).toLocaleDateString()} ${clock(iso)}` : "");
const isEntityId = (id) => typeof id === "string" && /^@[^@]+@/.test(id);
// A link to whatever an ID names: an entity (@name@key) or an orchestration instance.
const idLink = (hub, id) => (isEntityId(id) ? link(entityPath(hub, id), id) : link(instancePath(hub, id), id));

async function api(path, options) {
  const response = await fetch(`/api${path}`, options);
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function post(path, body) {
  return api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body || {}) });
}

function show(...nodes) {
  const kept = refreshing ? keptInput() : null;  // an auto-refresh keeps what the user typed and chose
  main.replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
  if (kept) restoreInput(kept);
  if (readOnly) disableActions();
}

// In read-only mode (--dashboard-read-only) what would change the emulator is disabled and says why;
// the server refuses it too. Reading, filtering and paging stay.
const READ_ONLY_TITLE = "Read-only dashboard (--dashboard-read-only): it shows everything and changes nothing";

function disableActions() {
  for (const el of main.querySelectorAll("[data-acts] button, [data-acts] input, [data-acts] select, [data-acts] textarea")) {
    el.disabled = true;
    el.title = READ_ONLY_TITLE;
  }
}

// What the user has typed into the forms marked data-keep, which panels are open, which rows are
// selected and where the cursor is: read just before a refresh replaces the page, set again after.
const keyOf = (el) => `${el.closest("[data-keep]").dataset.keep}/${el.name}`;

function keptInput() {
  const active = document.activeElement;
  let focus = null;
  if (active && main.contains(active) && active.name && active.closest("[data-keep]")) {
    focus = { key: keyOf(active), start: null, end: null };
    try { focus.start = active.selectionStart; focus.end = active.selectionEnd; } catch { /* no caret in this kind of field */ }
  }
  return {
    values: [...main.querySelectorAll("[data-keep] [name]")].map((el) => [keyOf(el), el.value]),
    open: [...main.querySelectorAll("details[data-keep]")].filter((d) => d.open).map((d) => d.dataset.keep),
    checked: new Set([...main.querySelectorAll("input.select:checked")].map((c) => c.value)),
    focus,
  };
}

function restoreInput(kept) {
  const fields = new Map([...main.querySelectorAll("[data-keep] [name]")].map((el) => [keyOf(el), el]));
  for (const [key, value] of kept.values) if (fields.has(key)) fields.get(key).value = value;
  for (const d of main.querySelectorAll("details[data-keep]")) d.open = kept.open.includes(d.dataset.keep);
  for (const c of main.querySelectorAll("input.select")) c.checked = kept.checked.has(c.value);
  const focused = kept.focus && fields.get(kept.focus.key);
  if (focused) {
    focused.focus();
    try { if (kept.focus.start !== null) focused.setSelectionRange(kept.focus.start, kept.focus.end); } catch { /* no caret here */ }
  }
}

function showError(err) {
  show(h("p", { class: "error", role: "alert" }, err.message));
}

function setNav(hub, current) {
  const items = [link("/", "Task hubs")];
  if (hub) {
    items.push(link(`/hubs/${enc(hub)}/instances`, "Orchestrations"), link(`/hubs/${enc(hub)}/entities`, "Entities"),
      link(`/hubs/${enc(hub)}/schedules`, "Schedules"), link(`/hubs/${enc(hub)}/workers`, "Workers"));
  }
  for (const a of items) if (a.textContent === current) a.classList.add("current");
  nav.replaceChildren(...items);
}

// Re-render the current view every two seconds; main's data-refreshes counts the refreshes done
// (what a test waits on), and show() keeps the user's input across each (keptInput).
function autoRefresh(render, enabled) {
  clearInterval(refreshTimer);
  refreshTimer = enabled ? setInterval(async () => {
    refreshing = true;
    try { await render(); } finally { refreshing = false; }
    main.dataset.refreshes = String(++refreshes);
  }, 2000) : null;
}

// -- views ---------------------------------------------------------------------

async function hubsView() {
  setNav(null, "Task hubs");
  const { hubs } = await api("/hubs");
  show(
    h("h1", {}, "Task hubs"),
    h("div", { class: "cards" }, hubs.map((hub) =>
      h("section", { class: "card", "data-hub": hub.name },
        h("h2", {}, hub.name),
        h("dl", { class: "facts" },
          h("dt", {}, link(`/hubs/${enc(hub.name)}/instances`, "Orchestrations")), h("dd", {}, hub.instanceCount),
          Object.entries(hub.instances).map(([s, n]) => [h("dt", {}, status(s)), h("dd", {}, n)]),
          h("dt", {}, link(`/hubs/${enc(hub.name)}/entities`, "Entities")), h("dd", {}, hub.entities),
        ),
      ))),
  );
}

function listParams() {
  return new URLSearchParams(location.search);
}

// The API query for a list view: the page's own filters, as far as the API knows them.
function apiQuery(params, keys) {
  const query = new URLSearchParams();
  for (const key of keys) if (params.get(key)) query.set(key, params.get(key));
  return query;
}

// A list view's filter form: its non-empty fields and the auto-refresh box become the page's URL.
function filterTo(path, fields, refresh) {
  return (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [key, input] of Object.entries(fields)) {
      const value = input.toParam ? input.toParam() : input.value;  // a time field gives its UTC ISO form
      if (value) next.set(key, value);
    }
    if (refresh.checked) next.set("refresh", "1");
    go(`${path}?${next}`);
  };
}

// Previous/next buttons for a page of a list view; the page token lives in the URL.
function pager(page) {
  return h("div", { class: "pager" },
    listParams().get("after") ? h("button", { onclick: () => history.back() }, "Previous page") : null,
    page.next ? h("button", { onclick: () => { const next = listParams(); next.set("after", page.next); go(`?${next}`); } }, "Next page") : null);
}

function go(path) {
  history.pushState({}, "", path);
  route();
}

// A datetime-local field that shows an ISO time from the URL in local time and gives it back as ISO.
function timeField(name, label, iso) {
  const local = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const input = h("input", { type: "datetime-local", step: "1", name, "aria-label": label, title: label, value: iso && !Number.isNaN(Date.parse(iso)) ? local(new Date(iso)) : "" });
  input.toParam = () => (input.value ? new Date(input.value).toISOString() : "");
  return input;
}

const INSTANCE_FILTERS = ["status", "q", "tag", "from", "to", "sort"];

async function instancesView(hub) {
  setNav(hub, "Orchestrations");
  const params = listParams();
  const filterQuery = apiQuery(params, INSTANCE_FILTERS.filter((k) => k !== "sort"));
  const [page, counts] = await Promise.all([
    api(`/hubs/${enc(hub)}/instances?${apiQuery(params, [...INSTANCE_FILTERS, "after"])}`),
    api(`/hubs/${enc(hub)}/instances/histogram?${filterQuery}`),
  ]);
  const statusSelect = h("select", { name: "status", "aria-label": "Status" },
    ["", "PENDING", "RUNNING", "SUSPENDED", "COMPLETED", "FAILED", "TERMINATED"].map((s) =>
      h("option", { value: s, selected: s === (params.get("status") || "") }, s || "Any status")));
  const search = h("input", { name: "q", placeholder: "Instance ID or name", value: params.get("q") || "" });
  const tag = h("input", { name: "tag", placeholder: "Tag: key or key=value", value: params.get("tag") || "" });
  const from = timeField("from", "Created from", params.get("from"));
  const to = timeField("to", "Created before", params.get("to"));
  const sort = h("select", { name: "sort", "aria-label": "Sort" },
    [["", "Newest created first"], ["updated", "Last updated first"]].map(([v, t]) =>
      h("option", { value: v, selected: v === (params.get("sort") || "") }, t)));
  const refresh = h("input", { type: "checkbox", checked: params.get("refresh") === "1" });
  const filter = filterTo(`/hubs/${enc(hub)}/instances`, { status: statusSelect, q: search, tag, from, to, sort }, refresh);
  refresh.addEventListener("change", filter);
  const tags = (t) => Object.entries(t || {}).map(([k, v]) => h("span", { class: "tag" }, `${k}=${v}`));
  const rows = page.items.map((i) =>
    h("tr", { "data-instance": i.id },
      h("td", {}, h("input", { type: "checkbox", class: "select", value: i.id, "aria-label": `Select ${i.id}` })),
      h("td", { class: "id" }, link(instancePath(hub, i.id), i.id)),
      h("td", {}, i.name, i.version ? h("span", { class: "muted" }, ` v${i.version}`) : null), h("td", {}, status(i.status)),
      h("td", {}, when(i.created)), h("td", {}, when(i.updated)),
      h("td", {}, i.scheduledStart ? when(i.scheduledStart) : ""),
      h("td", { class: "tags" }, tags(i.tags)),
      h("td", {}, i.customStatus === null ? "" : JSON.stringify(i.customStatus))));
  const table = h("table", {}, h("thead", {}, h("tr", {}, ["", "Instance ID", "Name", "Status", "Created", "Last updated", "Scheduled start", "Tags", "Custom status"].map((t) => h("th", {}, t)))), h("tbody", {}, rows));
  const filterNow = Object.fromEntries([...filterQuery.entries()]);
  show(
    h("h1", {}, `Orchestrations in ${hub}`),
    startForm(hub),
    h("form", { class: "toolbar", "data-keep": "filter", onsubmit: filter }, statusSelect, search, tag, h("label", { class: "muted" }, "created ", from), h("label", { class: "muted" }, "to ", to), sort,
      h("button", { type: "submit" }, "Filter"),
      h("label", {}, refresh, " Auto-refresh")),
    histogramChart(counts),
    bulkBar(hub, table, filterNow),
    rows.length
      ? table
      : h("p", { class: "muted" }, "No orchestrations match."),
    pager(page),
  );
  autoRefresh(() => instancesView(hub).catch(showError), refresh.checked);
}

// A form's own error line: the form and what the user typed stay as they are.
function formError(form, message) {
  let line = form.querySelector(".error");
  if (!line) { line = h("p", { class: "error", role: "alert" }); form.append(line); }
  line.textContent = message;
}

function parseJson(text, what) {
  try { return JSON.parse(text); } catch { throw new Error(`${what} is not valid JSON`); }
}

function startForm(hub) {
  const field = (name, label, attrs = {}) => h("label", {}, label, h("input", { name, ...attrs }));
  const form = h("form", { class: "start", id: "start-form", "data-acts": true },
    field("name", "Orchestration", { required: true, placeholder: "e.g. counter_workflow" }),
    field("input", "Input (JSON)", { placeholder: "e.g. {\"key\": \"a\"}" }),
    field("instanceId", "Instance ID", { placeholder: "(new)" }),
    field("scheduledStart", "Start at", { type: "datetime-local", step: "1" }),
    field("tags", "Tags (JSON object)", { placeholder: "{\"team\": \"billing\"}" }),
    field("version", "Version"),
    h("button", { type: "submit" }, "Start"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const v = (name) => form.elements[name].value.trim();
    try {
      const body = { name: v("name") };
      if (v("input")) body.input = parseJson(v("input"), "The input");
      if (v("instanceId")) body.instanceId = v("instanceId");
      if (v("scheduledStart")) body.scheduledStart = new Date(v("scheduledStart")).toISOString();
      if (v("tags")) body.tags = parseJson(v("tags"), "The tags");
      if (v("version")) body.version = v("version");
      const { instanceId } = await post(`/hubs/${enc(hub)}/start`, body);
      go(instancePath(hub, instanceId));
    } catch (err) {
      formError(form, err.message);
    }
  });
  return h("details", { class: "panel", "data-keep": "start" }, h("summary", {}, "Start an orchestration"), form);
}

function bulkBar(hub, table, filterNow) {
  const actionSelect = h("select", { name: "bulk-action", "aria-label": "Bulk action" },
    ["terminate", "suspend", "resume", "purge"].map((a) => h("option", { value: a }, a)));
  const bar = h("div", { class: "toolbar bulk", "data-keep": "bulk", "data-acts": true });
  const run = async (target) => {
    const action = actionSelect.value;
    try {
      const { count } = await post(`/hubs/${enc(hub)}/bulk`, { action, dryRun: true, ...target });
      if (!count) return formError(bar, `No instance there can be given '${action}'.`);
      if (!window.confirm(`${action} ${count} instance(s)? ${action === "purge" ? "This cannot be undone." : ""}`)) return;
      const done = await post(`/hubs/${enc(hub)}/bulk`, { action, ...target });
      await route();
      main.prepend(h("p", { class: "notice", role: "status" }, `${action}: ${done.count} instance(s).`));
    } catch (err) {
      formError(bar, err.message);
    }
  };
  const selected = () => [...table.querySelectorAll("input.select:checked")].map((c) => c.value);
  bar.append(actionSelect,
    h("button", { type: "button", onclick: () => run({ ids: selected() }) }, "Apply to selected"),
    h("button", { type: "button", onclick: () => run({ filter: filterNow }) }, "Apply to all matching the filter"));
  return bar;
}

async function workersView(hub) {
  setNav(hub, "Workers");
  const { connected, gone } = await api(`/hubs/${enc(hub)}/workers`);
  const names = (r) => (r ? ["orchestrations", "activities", "entities"].map((k) => `${k}: ${r[k].join(", ") || "none"}`).join("; ") : "everything (no work-item filters sent)");
  const holds = (held) => Object.entries(held).filter(([, n]) => n).map(([k, n]) => `${n} ${k}`).join(", ") || "nothing";
  const refresh = h("input", { type: "checkbox", checked: listParams().get("refresh") === "1" });
  refresh.addEventListener("change", () => go(`/hubs/${enc(hub)}/workers${refresh.checked ? "?refresh=1" : ""}`));
  show(
    h("h1", {}, `Workers of ${hub}`),
    h("label", {}, refresh, " Auto-refresh"),
    h("h2", {}, "Connected"),
    connected.length
      ? h("table", { id: "workers" }, h("thead", {}, h("tr", {}, ["Stream", "Worker", "Registered", "Holds now", "Connected", "Last work item"].map((t) => h("th", {}, t)))),
        h("tbody", {}, connected.map((w) => h("tr", { "data-stream": w.stream }, h("td", {}, w.stream), h("td", { class: "id" }, w.workerId || ""),
          h("td", { class: "registered" }, names(w.registered)), h("td", {}, holds(w.holds)), h("td", {}, when(w.connected)), h("td", {}, when(w.lastWorkItem))))))
      : h("p", { class: "muted" }, "No worker is connected to this task hub."),
    h("h2", {}, "Gone (disconnected, or dropped by the liveness check)"),
    gone.length
      ? h("table", { id: "gone" }, h("thead", {}, h("tr", {}, ["Stream", "Worker", "Registered", "Connected", "Ended", "Work re-queued"].map((t) => h("th", {}, t)))),
        h("tbody", {}, gone.map((w) => h("tr", { "data-stream": w.stream }, h("td", {}, w.stream), h("td", { class: "id" }, w.workerId || ""),
          h("td", {}, names(w.registered)), h("td", {}, when(w.connected)), h("td", {}, when(w.ended)), h("td", {}, w.requeuedAtEnd)))))
      : h("p", { class: "muted" }, "None yet."),
  );
  autoRefresh(() => workersView(hub).catch(showError), refresh.checked);
}

const schedulePath = (hub, id) => `/hubs/${enc(hub)}/schedule?id=${enc(id)}`;

// The SDK's recurring schedules (entities @schedule@<id>), one row each.
async function schedulesView(hub) {
  setNav(hub, "Schedules");
  const params = listParams();
  const page = await api(`/hubs/${enc(hub)}/schedules?${apiQuery(params, ["after"])}`);
  const refresh = h("input", { type: "checkbox", checked: params.get("refresh") === "1" });
  refresh.addEventListener("change", () => go(`/hubs/${enc(hub)}/schedules${refresh.checked ? "?refresh=1" : ""}`));
  const rows = page.items.map((s) =>
    h("tr", { "data-schedule": s.id },
      h("td", { class: "id" }, link(schedulePath(hub, s.id), s.id)), h("td", {}, s.orchestration || ""),
      h("td", { class: "interval" }, s.interval || ""), h("td", {}, h("span", { class: `status ${s.status}` }, s.status)),
      h("td", {}, when(s.lastRun)), h("td", {}, when(s.nextRun)),
      h("td", { class: "id" }, s.lastInstanceId ? link(instancePath(hub, s.lastInstanceId), s.lastInstanceId) : "")));
  show(
    h("h1", {}, `Schedules in ${hub}`),
    h("label", {}, refresh, " Auto-refresh"),
    rows.length
      ? h("table", { id: "schedules" }, h("thead", {}, h("tr", {}, ["Schedule ID", "Orchestration", "Interval", "Status", "Last run", "Next run", "Last started instance"].map((t) => h("th", {}, t)))), h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No schedules in this task hub (the SDK's ScheduledTaskClient creates them)."),
    pager(page),
  );
  autoRefresh(() => schedulesView(hub).catch(showError), refresh.checked);
}

async function scheduleView(hub, id) {
  setNav(hub, "Schedules");
  const { schedule: s } = await api(schedulePath(hub, id));
  const fact = (label, value) => [h("dt", {}, label), h("dd", {}, value === null || value === undefined || value === "" ? "(none)" : value)];
  show(
    h("h1", {}, `Schedule ${s.id}`),
    h("dl", { class: "facts", id: "schedule" },
      fact("Status", h("span", { class: `status ${s.status}` }, s.status)),
      fact("Orchestration", s.orchestration),
      fact("Interval", s.interval),
      fact("Instance ID", s.fixedInstanceId || "(a new one per run: <schedule ID>-<run time>)"),
      fact("Start at", when(s.startAt)), fact("End at", when(s.endAt)),
      fact("Last run", when(s.lastRun)), fact("Next run", when(s.nextRun)),
      fact("Last started instance", s.lastInstanceId ? link(instancePath(hub, s.lastInstanceId), s.lastInstanceId) : null),
      fact("Created", when(s.created)), fact("Last modified", when(s.lastModified)),
      fact("Entity", link(entityPath(hub, s.entityId), s.entityId)),
    ),
    h("h2", {}, "Orchestration input"), json(s.input),
  );
}

async function act(path, body, confirmText, then = route) {
  if (confirmText && !window.confirm(confirmText)) return;
  try {
    await post(path, body);
    then();
  } catch (err) {
    main.prepend(h("p", { class: "error", role: "alert" }, err.message));
  }
}

async function instanceView(hub, id) {
  setNav(hub, "Orchestrations");
  const { instance: i, history: events, drawings } = await api(instancePath(hub, id));
  const action = (name) => instancePath(hub, id, name);
  const ended = ["COMPLETED", "FAILED", "TERMINATED"].includes(i.status);
  const eventName = h("input", { name: "event", placeholder: "Event name", required: true });
  const eventData = h("input", { name: "data", placeholder: "JSON data (optional)" });
  const showReplay = h("input", { type: "checkbox" });
  const timeline = h("ol", { class: "timeline", id: "timeline" }, events.map((e) =>
    h("li", { class: e.category, "data-kind": e.kind, hidden: e.category === "replay" },
      h("span", { class: "time" }, clock(e.timestamp)),
      h("span", { class: "cat" }, e.category),
      h("div", {}, h("div", { class: "label" }, e.label),
        e.links.length ? h("div", { class: "links" }, e.links.map((l) => idLink(hub, l.id))) : null,
        e.payload === null || e.payload === undefined ? null : h("code", { class: "json" }, JSON.stringify(e.payload))))));
  showReplay.addEventListener("change", () => {
    for (const li of timeline.querySelectorAll("li.replay")) li.hidden = !showReplay.checked;
  });
  show(
    h("h1", {}, i.id),
    h("dl", { class: "facts" },
      h("dt", {}, "Orchestration"), h("dd", {}, i.name + (i.version ? ` (version ${i.version})` : "")),
      h("dt", {}, "Status"), h("dd", { id: "status" }, status(i.status)),
      h("dt", {}, "Created"), h("dd", {}, when(i.created)),
      h("dt", {}, "Last updated"), h("dd", {}, when(i.updated)),
      h("dt", {}, "Started by"), h("dd", { id: "started-by" }, startedBy(hub, i.startedBy)),
      h("dt", {}, "Custom status"), h("dd", {}, i.customStatus === null ? "(none)" : JSON.stringify(i.customStatus)),
    ),
    h("div", { class: "actions", "data-acts": true },
      h("button", { class: "danger", disabled: ended, onclick: () => act(action("terminate"), { reason: "terminated from the dashboard" }, `Terminate ${i.id}?`) }, "Terminate"),
      h("button", { disabled: ended || i.status === "SUSPENDED", onclick: () => act(action("suspend"), {}) }, "Suspend"),
      h("button", { disabled: i.status !== "SUSPENDED", onclick: () => act(action("resume"), {}) }, "Resume"),
      h("button", { disabled: i.status !== "FAILED", onclick: () => act(action("rewind"), { reason: "rewound from the dashboard" }, `Rewind ${i.id}? It runs again from where it failed.`) }, "Rewind"),
      h("button", { disabled: !ended, onclick: () => act(action("restart"), {}, `Restart ${i.id} with the same input?`) }, "Restart"),
      h("button", { class: "danger", disabled: !ended, onclick: () => act(action("purge"), {}, `Purge ${i.id} and its history? This cannot be undone.`, () => go(`/hubs/${enc(hub)}/instances`)) }, "Purge"),
    ),
    h("form", { class: "inline", "data-acts": true, onsubmit: (event) => {
      event.preventDefault();
      let data;
      try { data = eventData.value ? JSON.parse(eventData.value) : undefined; } catch { return showError(new Error("The event data is not valid JSON")); }
      act(action("raise-event"), data === undefined ? { name: eventName.value } : { name: eventName.value, data });
    } }, eventName, eventData, h("button", { type: "submit", disabled: ended }, "Raise event")),
    h("h2", {}, "Input"), json(i.input),
    h("h2", {}, "Output"), h("div", { id: "output" }, json(i.output)),
    i.failure ? [h("h2", {}, "Failure"), h("pre", { class: "json", id: "failure" }, `${i.failure.type}: ${i.failure.message}\n${i.failure.stackTrace || ""}`)] : null,
    h("h2", {}, "Timeline"), timelineChart(hub, drawings),
    h("h2", {}, "Sequence"), sequenceChart(hub, drawings),
    h("h2", {}, "History ", h("label", { class: "muted" }, showReplay, " show worker turns")),
    timeline,
  );
}

async function entitiesView(hub) {
  setNav(hub, "Entities");
  const params = listParams();
  const page = await api(`/hubs/${enc(hub)}/entities?${apiQuery(params, ["q", "after"])}`);
  const search = h("input", { name: "q", placeholder: "Entity name or key prefix", value: params.get("q") || "" });
  const refresh = h("input", { type: "checkbox", checked: params.get("refresh") === "1" });
  const filter = filterTo(`/hubs/${enc(hub)}/entities`, { q: search }, refresh);
  refresh.addEventListener("change", filter);
  const rows = page.items.map((e) =>
    h("tr", { "data-entity": e.id },
      h("td", {}, e.name), h("td", { class: "id" }, link(entityPath(hub, e.id), e.key)),
      h("td", { class: "state" }, h("code", { class: "json" }, JSON.stringify(e.state))),
      h("td", {}, when(e.lastModified)), h("td", { class: "id" }, e.lockedBy ? idLink(hub, e.lockedBy) : ""),
      h("td", {}, e.backlog),
      h("td", { class: e.lastFailure ? "failed-at" : "" }, e.lastFailure ? whenMs(e.lastFailure) : "")));
  show(
    h("h1", {}, `Entities in ${hub}`),
    h("form", { class: "toolbar", onsubmit: filter }, search, h("button", { type: "submit" }, "Search"),
      h("label", {}, refresh, " Auto-refresh")),
    rows.length
      ? h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Key", "State", "Last modified", "Locked by", "Pending operations", "Last failure"].map((t) => h("th", {}, t)))), h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No entities match."),
    pager(page),
  );
  autoRefresh(() => entitiesView(hub).catch(showError), refresh.checked);
}

async function entityView(hub, id) {
  setNav(hub, "Entities");
  const [{ entity: e, pending }, log] = await Promise.all([api(entityPath(hub, id)), api(`${entityPath(hub, id, "operations")}&page_size=50`)]);
  const operation = h("input", { name: "operation", placeholder: "Operation, e.g. add", required: true });
  const input = h("input", { name: "input", placeholder: "JSON input, e.g. 5 (optional)" });
  show(
    h("h1", {}, `${e.name} / ${e.key}`),
    h("dl", { class: "facts" },
      h("dt", {}, "Entity ID"), h("dd", {}, e.id),
      h("dt", {}, "Last modified"), h("dd", {}, when(e.lastModified)),
      h("dt", {}, "Locked by"), h("dd", {}, e.lockedBy ? link(instancePath(hub, e.lockedBy), e.lockedBy) : "nobody"),
      h("dt", {}, "Pending operations"), h("dd", {}, e.backlog),
    ),
    h("h2", {}, "State"), h("div", { id: "state" }, json(e.state)),
    h("h2", {}, "Waiting on"),
    pending.length
      ? h("table", {}, h("thead", {}, h("tr", {}, ["Operation", "Input", "From", "Due"].map((t) => h("th", {}, t)))),
        h("tbody", {}, pending.map((p) => h("tr", {}, h("td", {}, p.operation), h("td", {}, JSON.stringify(p.input)), h("td", { class: "id" }, p.sender ? idLink(hub, p.sender) : "client"), h("td", {}, when(p.visibleAt))))))
      : h("p", { class: "muted" }, e.lockedBy ? "Nothing queued; held by the lock above." : "Nothing: no operations are queued."),
    h("h2", {}, "Operation log"),
    operationLog(hub, id, log),
    h("h2", {}, "Signal this entity"),
    h("form", { class: "inline", "data-acts": true, onsubmit: (event) => {
      event.preventDefault();
      let value;
      try { value = input.value ? JSON.parse(input.value) : undefined; } catch { return showError(new Error("The input is not valid JSON")); }
      act(entityPath(hub, id, "signal"), value === undefined ? { operation: operation.value } : { operation: operation.value, input: value });
    } }, operation, input, h("button", { type: "submit" }, "Signal")),
  );
}

// The sender of an operation: a client, or a link to the orchestration or entity that sent it.
function sender(hub, s) {
  if (s.kind === "client") return "client";
  if (s.kind === "lock") return h("span", {}, "critical section of ", idLink(hub, s.id));
  return h("span", {}, `${s.kind} `, idLink(hub, s.id));
}

const kept = (k) => (k === null || k === undefined ? json(null)
  : h("div", {}, json(k.value), k.truncated ? h("p", { class: "muted" }, `cut short: ${k.size} bytes in full`) : null));

// One operation: a line with its outcome, and, opened, its input, result or error and the states.
function operationRow(hub, op) {
  const failed = op.outcome === "failed";
  return h("details", { class: `op ${op.outcome}`, "data-seq": op.seq },
    h("summary", {},
      h("span", { class: "time" }, whenMs(op.applied)),
      h("span", { class: "opname" }, op.operation),
      h("span", { class: `outcome ${op.outcome}` }, failed ? `failed: ${op.error.type}` : "succeeded"),
      h("span", { class: "from" }, "from ", sender(hub, op.sender))),
    h("dl", { class: "facts" },
      h("dt", {}, "Sent"), h("dd", {}, whenMs(op.sent)),
      h("dt", {}, "Applied"), h("dd", {}, whenMs(op.applied)),
      op.batchSize > 1 ? [h("dt", {}, "Batch"), h("dd", {}, `one of ${op.batchSize} operations applied together; the states are the batch's`)] : null,
      h("dt", {}, "Input"), h("dd", {}, kept(op.input)),
      failed ? [h("dt", {}, "Error"), h("dd", {}, h("pre", { class: "json error-text" }, `${op.error.type}: ${op.error.message}`))]
        : [h("dt", {}, "Result"), h("dd", {}, kept(op.result))],
      h("dt", {}, "State before"), h("dd", {}, json(op.stateBefore)),
      h("dt", {}, "State after"), h("dd", {}, kept(op.stateAfter))));
}

function operationLog(hub, id, log) {
  if (!log.kept) return h("p", { class: "muted" }, "The operation log is off (--entity-log 0).");
  const list = h("div", { id: "oplog" }, log.items.map((op) => operationRow(hub, op)));
  const more = (next) => (next ? h("button", { onclick: async (event) => {
    const page = await api(`${entityPath(hub, id, "operations")}&page_size=50&before=${next}`).catch((err) => ({ error: err }));
    if (page.error) return event.target.replaceWith(h("p", { class: "error", role: "alert" }, page.error.message));
    list.append(...page.items.map((op) => operationRow(hub, op)));
    event.target.replaceWith(more(page.next) || "");
  } }, "Older operations") : null);
  return h("div", {},
    h("p", { class: "muted" }, `Newest first; the last ${log.kept} operations are kept.`),
    log.items.length ? list : h("p", { class: "muted" }, "No operations logged yet."),
    more(log.next));
}

// -- drawings ------------------------------------------------------------------
// Drawn as SVG with DOM calls: every name is set with textContent, like the rest of the page.

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined && value !== false) el.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const fmtMs = (ms) => (ms >= 10000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 2 : 0)} ms`);
const svgLink = (href, child) => svg("a", { href, "data-link": "" }, child);
const cut = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

function startedBy(hub, s) {
  if (!s || s.kind === "client" || !s.id) return "a client";
  return h("span", {}, s.kind === "entity" ? "entity " : "parent orchestration ", idLink(hub, s.id));
}

// One bar per span on a shared millisecond axis; a lock's bar shows its wait (light) and hold (dark).
function timelineChart(hub, d) {
  const spans = d.timeline;
  if (!spans.length) return h("p", { class: "muted" }, "Nothing to draw yet.");
  const labelW = 300, width = 1100, row = 24, top = 28, plotW = width - labelW - 200;
  const end = Math.max(d.endMs, ...spans.map((sp) => sp.end), 0.001);
  const x = (ms) => labelW + (Math.max(ms, 0) / end) * plotW;
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => f * end);
  const rows = spans.map((sp, n) => {
    const y = top + n * row;
    const pieces = [];
    if (sp.kind === "lock" && sp.granted !== null && sp.granted !== undefined) {
      pieces.push(svg("rect", { class: "bar lock-wait", x: x(sp.start), y: y + 4, width: Math.max(x(sp.granted) - x(sp.start), 1), height: row - 8 }));
      pieces.push(svg("rect", { class: "bar lock", x: x(sp.granted), y: y + 4, width: Math.max(x(sp.end) - x(sp.granted), 1), height: row - 8 }));
    } else {
      pieces.push(svg("rect", { class: `bar ${sp.kind} ${sp.outcome}`, x: x(sp.start), y: y + 4, width: Math.max(x(sp.end) - x(sp.start), 2), height: row - 8 }));
    }
    const duration = sp.kind === "lock" && sp.heldMs !== undefined
      ? `held ${fmtMs(sp.heldMs)} (waited ${fmtMs(sp.waitMs)})`
      : sp.outcome === "open" ? `${fmtMs(sp.end - sp.start)}, still open` : fmtMs(sp.ms);
    const label = svg("text", { x: labelW - 8, y: y + row / 2 + 4, "text-anchor": "end", class: "label" }, cut(`${sp.kind}: ${sp.label}`, 44));
    const target = sp.target && sp.target.startsWith("entity:") ? sp.target.slice(7) : null;
    return svg("g", { class: `span ${sp.kind}`, "data-kind": sp.kind, "data-ms": sp.ms ?? "" },
      svg("title", {}, `${sp.kind}: ${sp.label}\n${duration}`),
      target ? svgLink(entityPath(hub, target), label) : label,
      pieces,
      svg("text", { x: x(sp.end) + 6, y: y + row / 2 + 4, class: "duration" }, duration));
  });
  const height = top + spans.length * row + 8;
  return h("div", { class: "drawing", id: "timeline-chart" }, svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Timeline" },
    ticks.map((t) => [svg("line", { class: "tick", x1: x(t), x2: x(t), y1: top - 6, y2: height }),
      svg("text", { class: "axis", x: x(t), y: top - 10, "text-anchor": "middle" }, `+${fmtMs(t)}`)]),
    rows));
}

// Lifelines for the orchestration and what it talks to; one arrow per message, in order.
function sequenceChart(hub, d) {
  const { participants, messages } = d.sequence;
  const colW = 170, left = 90, top = 56, step = 30;
  const width = left + participants.length * colW;
  const height = top + messages.length * step + 20;
  const col = Object.fromEntries(participants.map((p, n) => [p.key, left + n * colW + colW / 2]));
  const heads = participants.map((p) => {
    const cx = col[p.key];
    const box = [svg("rect", { class: `head ${p.kind}`, x: cx - colW / 2 + 6, y: 6, width: colW - 12, height: 34, rx: 6 }),
      svg("text", { class: "head-text", x: cx, y: 20, "text-anchor": "middle" }, cut(p.label, 22)),
      svg("text", { class: "head-kind", x: cx, y: 34, "text-anchor": "middle" }, p.kind === "self" ? "" : p.kind)];
    const head = svg("g", { class: "participant", "data-key": p.key }, svg("title", {}, p.id || p.label), box);
    return [p.id ? svgLink(isEntityId(p.id) ? entityPath(hub, p.id) : instancePath(hub, p.id), head) : head,
      svg("line", { class: "lifeline", x1: cx, x2: cx, y1: 40, y2: height })];
  });
  const arrows = messages.map((m, n) => {
    const y = top + n * step, x1 = col[m.from], x2 = col[m.to];
    const when = svg("text", { class: "axis", x: 6, y: y + 4 }, `+${fmtMs(m.at)}`);
    if (x1 === x2) {
      return svg("g", { class: `message ${m.kind}`, "data-from": m.from, "data-to": m.to }, when,
        svg("path", { class: "arrow", d: `M${x1} ${y - 6} h28 v12 h-28`, "marker-end": "url(#arrowhead)" }),
        svg("text", { class: "message-text", x: x1 + 34, y: y + 4 }, cut(m.label, 30)));
    }
    return svg("g", { class: `message ${m.kind}`, "data-from": m.from, "data-to": m.to }, when,
      svg("line", { class: "arrow", x1, x2: x2 + (x2 > x1 ? -4 : 4), y1: y, y2: y, "marker-end": "url(#arrowhead)" }),
      svg("text", { class: "message-text", x: (x1 + x2) / 2, y: y - 5, "text-anchor": "middle" }, cut(m.label, 34)));
  });
  return h("div", { class: "drawing", id: "sequence-chart" }, svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Sequence diagram" },
    svg("defs", {}, svg("marker", { id: "arrowhead", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      svg("path", { d: "M0 0 L10 5 L0 10 z", class: "arrowhead" }))),
    heads, arrows));
}

// Starts and completions of the filtered instances over time, one pair of bars per span.
function histogramChart(c) {
  if (!c.total) return null;
  const width = 1100, height = 120, left = 40, bottom = 22, n = c.started.length;
  const most = Math.max(1, ...c.started, ...c.completed);
  const slot = (width - left) / n, barW = Math.max(slot / 2 - 1, 1);
  const y = (v) => height - bottom - (v / most) * (height - bottom - 10);
  const bars = (series, cls, offset) => series.map((v, i) => svg("rect", {
    class: `bar ${cls}`, x: left + i * slot + offset, y: y(v), width: barW, height: height - bottom - y(v), "data-count": v },
  svg("title", {}, `${v} ${cls === "started" ? "started" : "completed"} from ${whenMs(new Date(Date.parse(c.from) + i * c.bucketSeconds * 1000).toISOString())}`)));
  return h("div", { class: "drawing", id: "histogram" },
    h("p", { class: "muted legend" }, h("span", { class: "key started" }, "started"), " and ", h("span", { class: "key completed" }, "completed"),
      ` per ${fmtMs(c.bucketSeconds * 1000)}, ${c.total} instances`),
    svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Starts and completions over time" },
      svg("text", { class: "axis", x: 2, y: 14 }, String(most)),
      svg("line", { class: "tick", x1: left, x2: width, y1: height - bottom, y2: height - bottom }),
      bars(c.started, "started", 0), bars(c.completed, "completed", barW + 1),
      svg("text", { class: "axis", x: left, y: height - 6 }, whenMs(c.from)),
      svg("text", { class: "axis", x: width - 4, y: height - 6, "text-anchor": "end" }, whenMs(c.to))));
}

// -- routing -------------------------------------------------------------------

async function route() {
  autoRefresh(null, false);
  refreshes = 0;
  delete main.dataset.refreshes;
  try {
    const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    const id = listParams().get("id");
    if (parts.length === 0) return await hubsView();
    if (parts[0] === "hubs" && parts[2] === "instance" && parts.length === 3 && id) return await instanceView(parts[1], id);
    if (parts[0] === "hubs" && parts[2] === "entity" && parts.length === 3 && id) return await entityView(parts[1], id);
    if (parts[0] === "hubs" && parts[2] === "instances" && parts.length === 3) return await instancesView(parts[1]);
    if (parts[0] === "hubs" && parts[2] === "entities" && parts.length === 3) return await entitiesView(parts[1]);
    if (parts[0] === "hubs" && parts[2] === "workers" && parts.length === 3) return await workersView(parts[1]);
    if (parts[0] === "hubs" && parts[2] === "schedules" && parts.length === 3) return await schedulesView(parts[1]);
    if (parts[0] === "hubs" && parts[2] === "schedule" && parts.length === 3 && id) return await scheduleView(parts[1], id);
    showError(new Error(`Nothing here: ${location.pathname}`));
  } catch (err) {
    showError(err);
  }
}

document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-link]");
  // Links in the drawings are SVG elements, which have no .origin: theirs are always paths on this site.
  const local = a && (a instanceof SVGElement ? a.getAttribute("href").startsWith("/") : a.origin === location.origin);
  if (local && !event.ctrlKey && !event.metaKey) {
    event.preventDefault();
    go(a.getAttribute("href"));
  }
});
window.addEventListener("popstate", route);
api("/settings").then((s) => {
  readOnly = s.readOnly;
  if (readOnly) document.body.prepend(h("p", { class: "notice", id: "read-only" }, "Read-only: this dashboard shows everything and changes nothing."));
}).catch(() => {}).finally(route);
