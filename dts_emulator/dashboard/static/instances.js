// The dashboard's orchestration views (helpers from app.js, charts from drawings.js): the list with
// its filters, histogram, start form and bulk actions, and one instance's page with its actions.
"use strict";

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

function startedBy(hub, s) {
  if (!s || s.kind === "client" || !s.id) return "a client";
  return h("span", {}, s.kind === "entity" ? "entity " : "parent orchestration ", idLink(hub, s.id));
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
