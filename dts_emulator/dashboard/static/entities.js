// The dashboard's entity views (helpers from app.js): the list, one entity's page with what it
// waits on and its operation log, and the SDK's recurring schedules.
"use strict";

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
