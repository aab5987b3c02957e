// The dashboard page's shell: a small router over the JSON API under /api/, the helpers every
// view uses (h(), links, fetch, the filter form and pager, auto-refresh that keeps input) and
// read-only mode. The views live in hubs.js, instances.js and entities.js, the SVG in drawings.js;
// index.html loads this file first. Every piece of data is placed with textContent (via h()),
// never as markup, so names, keys, inputs and failure messages always show as text.
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

async function act(path, body, confirmText, then = route) {
  if (confirmText && !window.confirm(confirmText)) return;
  try {
    await post(path, body);
    then();
  } catch (err) {
    main.prepend(h("p", { class: "error", role: "alert" }, err.message));
  }
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
// The views are in the scripts loaded after this one: route once all of them have run.
document.addEventListener("DOMContentLoaded", () => {
  api("/settings").then((s) => {
    readOnly = s.readOnly;
    if (readOnly) document.body.prepend(h("p", { class: "notice", id: "read-only" }, "Read-only: this dashboard shows everything and changes nothing."));
  }).catch(() => {}).finally(route);
});
