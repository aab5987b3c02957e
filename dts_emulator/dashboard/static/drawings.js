// The dashboard's drawings: an instance's timeline and sequence diagram, and the list's histogram.
// Drawn as SVG with DOM calls: every name is set with textContent, like the rest of the page.
"use strict";

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
