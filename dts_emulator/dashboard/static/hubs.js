// The dashboard's task hub overview and a hub's workers (helpers from app.js).
"use strict";

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
