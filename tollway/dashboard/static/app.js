// Tollway dashboard: polls the control plane's /v1/dashboard/* JSON and draws it.
// Plain DOM and inline SVG; no framework, no build step, nothing from another origin.
"use strict";

const POLL_MS = 1500;
const SVG_NS = "http://www.w3.org/2000/svg";
let updates = 0;

// ---- small DOM helpers -------------------------------------------------------------------

function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") node.textContent = String(v);
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function code(text) { return h("code", { text }); }

// Panels are redrawn every poll; a <details> the reader opened stays open across redraws.
const openDetails = new Set();

function details(key, attrs, ...children) {
  return h("details", { ...attrs, "data-key": key, open: openDetails.has(key) ? "" : null },
    ...children);
}

document.addEventListener("toggle", (ev) => {
  const key = ev.target.dataset && ev.target.dataset.key;
  if (!key) return;
  if (ev.target.open) openDetails.add(key); else openDetails.delete(key);
}, true);

function badge(word, title) {
  return h("span", { class: `badge ${word}`, text: word, title: title || null });
}

// ---- number formats ----------------------------------------------------------------------

function fmtRps(v) {
  if (v === null || v === undefined) return "–";
  return v < 10 ? v.toFixed(2) : v.toFixed(1);
}

function fmtPct(v) {
  if (v === null || v === undefined) return "–";
  return `${(v * 100).toFixed(v > 0 && v < 0.001 ? 3 : 1)}%`;
}

function fmtMs(v) {
  if (v === null || v === undefined) return "–";
  return v < 10 ? `${v.toFixed(1)} ms` : `${Math.round(v)} ms`;
}

function fmtNum(v) {
  if (v === null || v === undefined) return "–";
  if (Math.abs(v) < 1e-9) return "0";
  if (Math.abs(v) >= 1000 || (v !== 0 && Math.abs(v) < 0.01)) return v.toPrecision(3);
  return String(Math.round(v * 1000) / 1000);
}

function health(edge) {
  if (!edge.rps) return "idle";
  const e = edge.errorRate || 0;
  return e >= 0.05 ? "bad" : e >= 0.01 ? "warn" : "ok";
}

// ---- the service graph -------------------------------------------------------------------

const COL_W = 330;
const ROW_H = 100;
const PAD_X = 90;
const PAD_Y = 56;
const NODE_R = 24;
const RUN = 150; // the straight stretch of an arrow that carries its label

function renderGraph(g) {
  const svg = document.getElementById("graph");
  const empty = document.getElementById("graph-empty");
  const table = document.getElementById("edges");
  svg.replaceChildren();
  if (!g.nodes.length) {
    empty.hidden = false;
    empty.replaceChildren(g.proxies === 0
      ? h("span", {}, "No proxies are registered with this control plane yet. Start a mesh ",
          "with ", code("tollway up DIR"), " (for example ", code("tollway up examples/canary"),
          ") and its sidecars show up here.")
      : h("span", {}, "No traffic yet. Send requests through the client proxy, for example ",
          code("curl -x http://127.0.0.1:15001 http://SERVICE:PORT/"),
          ", and every call the sidecars report is drawn here."));
    svg.setAttribute("width", "0");
    svg.setAttribute("height", "0");
    svg.removeAttribute("viewBox");
    table.hidden = true;
    document.getElementById("graph-caption").textContent = "";
    return;
  }
  empty.hidden = !!g.measured;
  if (!g.measured) {
    empty.replaceChildren("Measuring: rates appear once the proxies have been read twice " +
      "(a second or two).");
  }
  const pos = {};
  let cols = 0, rows = 0;
  for (const [id, [c, r]] of Object.entries(g.layout)) {
    pos[id] = { x: PAD_X + c * COL_W, y: PAD_Y + r * ROW_H };
    cols = Math.max(cols, c + 1);
    rows = Math.max(rows, r + 1);
  }
  const width = PAD_X * 2 + (cols - 1) * COL_W + 40;
  const height = PAD_Y * 2 + (rows - 1) * ROW_H + 20;
  // natural size, shrunk to the panel when wider (CSS max-width), never enlarged
  svg.setAttribute("width", String(width));
  svg.setAttribute("height", String(height));
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.append(s("defs", {}, s("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "9",
    markerHeight: "9", markerUnits: "userSpaceOnUse", orient: "auto-start-reverse",
  }, s("path", { d: "M 0 0 L 10 5 L 0 10 z" }))));
  const byId = Object.fromEntries(g.nodes.map((n) => [n.id, n]));
  const ports = portOffsets(g.edges, pos);
  const taken = g.nodes.flatMap((n) => nodeBoxes(n, pos[n.id]));
  // splits first: each workload's only incoming arrow gets the run beside it
  const order = g.edges.map((e, i) => i)
    .sort((i, j) => (g.edges[i].kind === "split" ? 0 : 1) - (g.edges[j].kind === "split" ? 0 : 1));
  const shapes = [];
  for (const i of order) shapes[i] = edgeShape(g.edges[i], pos, byId, ports[i], taken);
  // edges first, labels last: no arrow is ever drawn over a label
  for (const sh of shapes) svg.append(sh.edge);
  for (const n of g.nodes) svg.append(nodeShape(n, pos[n.id]));
  for (const sh of shapes) svg.append(sh.label);
  renderEdgeTable(g, byId);
  document.getElementById("graph-caption").textContent = g.seconds
    ? `Rates over the last ${fmtNum(g.seconds)} s, from ${g.proxies} proxies' own counters.`
    : "";
}

function label(node) {
  if (!node) return "?";
  if (node.kind === "service" || node.kind === "unknown") return node.fqdn || node.name;
  if (node.display && node.display !== node.name) return `${node.display} · ${node.namespace}`;
  return `${node.name}.${node.namespace}`;
}

// What a workload is, beyond the name shown: its real name, template hash and image.
function workloadDetail(node) {
  if (!node || node.kind === "service" || node.kind === "unknown") return "";
  return [`workload ${node.name}.${node.namespace}`, node.hash ? `template ${node.hash}` : "",
    node.image ? `image ${node.image}` : ""].filter(Boolean).join(", ");
}

// Where each arrow leaves its source and enters its target: arrows sharing a node are spread
// a few pixels apart, in the order of the nodes at their other end, so two callers of one
// service are two lines, not one drawn twice.
const PORT_GAP = 9;

function portOffsets(edges, pos) {
  const out = {}, inn = {};
  edges.forEach((e, i) => {
    (out[e.source] = out[e.source] || []).push(i);
    (inn[e.target] = inn[e.target] || []).push(i);
  });
  const off = edges.map(() => ({ src: 0, dst: 0 }));
  const spread = (groups, end, other) => {
    for (const list of Object.values(groups)) {
      list.sort((i, j) => pos[edges[i][other]].y - pos[edges[j][other]].y ||
        pos[edges[i][other]].x - pos[edges[j][other]].x);
      list.forEach((i, k) => { off[i][end] = (k - (list.length - 1) / 2) * PORT_GAP; });
    }
  };
  spread(out, "src", "target");
  spread(inn, "dst", "source");
  return off;
}

function overlaps(a, b) {
  return a.x1 < b.x2 && b.x1 < a.x2 && a.y1 < b.y2 && b.y1 < a.y2;
}

// The space a node's shape and its two lines of name take, so no label lands on them.
function nodeBoxes(n, p) {
  const name = n.display || n.name || "";
  const half = Math.max(28, name.length * 3.6);
  return [{ x1: p.x - 27, x2: p.x + 27, y1: p.y - 28, y2: p.y + 22 },
    { x1: p.x - half, x2: p.x + half, y1: p.y + 22, y2: p.y + 52 }];
}

// An arrow is a straight run out of its source, a curve, and a straight run into its target.
// Its label (two short lines) goes beside a straight run, never on the line: the first free
// spot of above the run into the target, above the run out of the source, then below each;
// "free" means clear of every node and every label placed before it.
function edgeShape(e, pos, byId, o, taken) {
  const a = pos[e.source], b = pos[e.target];
  const width = 1.5 + Math.min(6, Math.log10(1 + (e.rps || 0)) * 2.2);
  const tip = `${label(byId[e.source])} → ${label(byId[e.target])}: ${fmtRps(e.rps)} rps, ` +
    `${fmtPct(e.errorRate)} errors, p50 ${fmtMs(e.p50)}, p99 ${fmtMs(e.p99)}`;
  const top = `${fmtRps(e.rps)} rps`;
  const bottom = `${fmtPct(e.errorRate)} err · p99 ${fmtMs(e.p99)}`;
  const textW = Math.max(top.length * 6.6, bottom.length * 5.9);
  const gap = width / 2 + 4;
  let d;
  const spots = [];
  if (b.x > a.x) {
    const ay = a.y + o.src, by = b.y + o.dst;
    const x1 = a.x + NODE_R, x2 = b.x - NODE_R - 4;
    const run = Math.min(RUN, (x2 - x1) / 2 - 12);
    const xs = x1 + run, xe = x2 - run;
    const mx = (xs + xe) / 2;
    d = `M ${x1} ${ay} L ${xs} ${ay} C ${mx} ${ay}, ${mx} ${by}, ${xe} ${by} L ${x2} ${by}`;
    const atTarget = { x: (xe + x2) / 2, y: by }, atSource = { x: (x1 + xs) / 2, y: ay };
    for (const where of [atTarget, atSource]) spots.push({ ...where, above: true });
    for (const where of [atTarget, atSource]) spots.push({ ...where, above: false });
    for (let k = 1; k <= 4; k++) {  // crowded: stack further out from the target's run
      spots.push({ ...atTarget, y: atTarget.y - 28 * k, above: true },
        { ...atTarget, y: atTarget.y + 28 * k, above: false });
    }
  } else {  // same column or backwards (a cycle): a loop out to the right, label beside it
    const bend = 70 + Math.abs(a.y - b.y) * 0.2;
    d = `M ${a.x + NODE_R} ${a.y} C ${a.x + bend} ${a.y}, ${b.x + bend} ${b.y}, ` +
      `${b.x + NODE_R + 4} ${b.y}`;
    spots.push({ x: Math.max(a.x, b.x) + bend * 0.75 + 8 + textW / 2, y: (a.y + b.y) / 2,
      above: false });
  }
  const boxOf = (sp) => sp.above
    ? { x1: sp.x - textW / 2, x2: sp.x + textW / 2, y1: sp.y - gap - 25, y2: sp.y - gap + 3 }
    : { x1: sp.x - textW / 2, x2: sp.x + textW / 2, y1: sp.y + gap - 1, y2: sp.y + gap + 27 };
  const spot = spots.find((sp) => !taken.some((t) => overlaps(t, boxOf(sp)))) || spots[0];
  taken.push(boxOf(spot));
  const y1 = spot.above ? spot.y - gap - 13 : spot.y + gap + 10;
  const edge = s("g", {
    class: `edge ${e.kind} ${health(e)}`, "data-edge": e.id, "data-rps": e.rps ?? "",
    "data-error-rate": e.errorRate ?? "",
  },
  s("title", { text: tip }),
  s("path", { d, "stroke-width": width.toFixed(2), "marker-end": "url(#arrow)" }));
  const lbl = s("g", { class: `edge-label ${health(e)}`, "data-edge-label": e.id },
    s("title", { text: tip }),
    s("text", { x: spot.x, y: y1, "text-anchor": "middle", class: "rate", text: top }),
    s("text", { x: spot.x, y: y1 + 13, "text-anchor": "middle", text: bottom }));
  return { edge, label: lbl, box: boxOf(spot) };
}

function nodeShape(n, p) {
  const service = n.kind === "service" || n.kind === "unknown";
  const inbound = n.inbound || {};
  const unhealthy = (inbound.errorRate || 0) >= 0.05;
  const cls = `node ${n.kind} ${n.role || ""} ${unhealthy ? "unhealthy" : ""}`;
  const shape = service
    ? s("polygon", { points: `${p.x},${p.y - 22} ${p.x + 22},${p.y + 16} ${p.x - 22},${p.y + 16}` })
    : s("circle", { cx: p.x, cy: p.y, r: 18 });
  const named = !service && n.display && n.display !== n.name;
  const sub = service ? n.namespace
    : [n.namespace, named ? "" : n.version, n.track].filter(Boolean).join(" · ");
  const tip = service ? `service ${n.fqdn}`
    : `${n.role || "workload"} ${n.display || n.name} — ${workloadDetail(n)}` +
      (n.track ? ` (${n.track} of ${n.rollout})` : "") +
      (n.inbound ? `; inbound ${fmtRps(inbound.rps)} rps, ${fmtPct(inbound.errorRate)} errors`
        : "");
  return s("g", { class: cls, "data-node": n.id },
    s("title", { text: tip }), shape,
    s("text", { x: p.x, y: p.y + 34, class: "name", text: service ? n.name : n.display || n.name }),
    s("text", { x: p.x, y: p.y + 47, class: "small", text: sub || (n.role || "") }));
}

function renderEdgeTable(g, byId) {
  const table = document.getElementById("edges");
  const body = table.querySelector("tbody");
  body.replaceChildren(...g.edges.map((e) => h("tr", { "data-edge": e.id },
    h("td", { text: label(byId[e.source]), title: workloadDetail(byId[e.source]) || null }),
    h("td", { text: `${e.kind === "split" ? "⤷ " : ""}${label(byId[e.target])}`,
      title: workloadDetail(byId[e.target]) || null }),
    h("td", { class: "num", text: fmtRps(e.rps) }),
    h("td", { class: "num", text: fmtPct(e.errorRate) }),
    h("td", { class: "num", text: fmtMs(e.p50) }),
    h("td", { class: "num", text: fmtMs(e.p99) }),
    h("td", { class: "num", text: fmtNum(e.requests) }))));
  table.hidden = !g.edges.length;
}

// ---- rollouts ----------------------------------------------------------------------------

function renderRollouts(data) {
  const root = document.getElementById("rollouts");
  if (!data.items.length) {
    root.replaceChildren(h("div", { class: "empty", id: "rollouts-empty" },
      "No rollouts. Put an Argo ", code("Rollout"), " (with its ", code("AnalysisTemplate"),
      "s) or a Flagger ", code("Canary"), " in the folder ", code("tollway up"),
      " watches (see ", code("examples/rollout"), ") and it shows here with its steps, ",
      "weights and analysis."));
    return;
  }
  root.replaceChildren(...data.items.map(rolloutCard));
}

function versionName(v) {
  return v && v.version ? ` ${v.version}` : "";
}

function versionTip(v) {
  if (!v) return null;
  return [`workload ${v.workload}`, v.hash ? `template ${v.hash}` : "",
    v.image ? `image ${v.image}` : ""].filter(Boolean).join(", ");
}

function rolloutCard(r) {
  const w = r.weights;
  const v = r.versions || {};
  return h("article", {
    class: "rollout", "data-rollout": `${r.namespace}/${r.name}`, "data-phase": r.phase,
  },
  h("h3", {}, `${r.kind} ${r.namespace}/${r.name}`, badge(r.phase),
    r.paused && r.phase !== "Paused" ? badge("Paused") : null, r.aborted ? badge("Aborted") : null,
    h("span", { class: "muted", text: `  ${r.strategy}` })),
  h("div", { class: "message", text: r.observed ? r.message || ""
    : "Waiting for the rollout controller to pick it up." }),
  actionBar(r),
  h("div", { class: "weights", "data-canary-weight": w.canary, title: "traffic weights" },
    w.stable ? h("span", { class: "stable", title: versionTip(v.stable),
      text: `stable${versionName(v.stable)} ${w.stable}%` }) : null,
    w.canary ? h("span", { class: "canary", title: versionTip(v.canary),
      text: `canary${versionName(v.canary)} ${w.canary}%` }) : null),
  v.stable || v.canary ? h("div", { class: "versions muted" },
    ...[["stable", v.stable], ["canary", v.canary]].filter(([, x]) => x).map(([t, x]) =>
      h("span", { class: `version ${t}`, "data-track": t, title: versionTip(x) },
        `${t}: `, h("strong", { text: `${r.name}${versionName(x)}` }),
        x.image ? h("span", { text: ` (${x.image})` }) : null))) : null,
  r.steps.length ? h("ol", { class: "steps" }, ...r.steps.map((st) => h("li", {
    class: `${st.done ? "done" : ""} ${st.current ? "current" : ""}`,
    "data-current": st.current ? "true" : null, text: st.text,
  }))) : null,
  ...r.analysis.slice().reverse().map(analysisRun),
  r.warnings.length ? h("div", { class: "muted", text: `warnings: ${r.warnings.join("; ")}` })
    : null,
  r.decisions.length ? details(`decisions:${r.namespace}/${r.name}`, {},
    h("summary", { text: `decisions (${r.decisions.length} latest)` }),
    h("ul", { class: "decisions" }, ...r.decisions.map((d) => h("li", {
      text: `[${d.actor || "controller"}] ${d.phase || ""} step ${d.step ?? "–"} ` +
        `weight ${d.weight ?? "–"}%: ${d.reason || ""}`,
    })))) : null);
}

function analysisRun(run) {
  return h("div", { class: "analysis", "data-run": run.name },
    h("h4", {}, `analysis ${run.name}`, badge(run.phase || "Pending")),
    run.message ? h("div", { class: "muted", text: run.message }) : null,
    ...run.metrics.map((m) => metricBlock(m, run.name, run.message || "")));
}

function metricBlock(m, runName, runMessage) {
  const counts = Object.entries(m.counts || {}).filter(([, v]) => v)
    .map(([k, v]) => `${v} ${k}`).join(", ");
  return h("div", { class: "metric", "data-metric": m.name },
    h("div", {}, h("span", { class: "title", text: m.name }), badge(m.phase || "Pending",
      m.recordedPhase && m.recordedPhase !== m.phase ? `recorded as ${m.recordedPhase}` : null),
      h("span", { class: "muted", text: ` ${m.provider || ""} ${counts ? "· " + counts : ""}` })),
    m.successCondition ? h("div", { class: "muted" }, "success: ", code(m.successCondition))
      : null,
    m.failureCondition ? h("div", { class: "muted" }, "failure: ", code(m.failureCondition))
      : null,
    m.evidence ? evidence(m.evidence, `stats:${runName}/${m.name}`, m) : null,
    m.evidence && m.rates && m.rates.length
      ? chart({ ...m, series: m.rates, thresholds: [] }, "rates") : null,
    m.evidence ? null : chart(m),
    // the run's message often quotes its metric's: say it once
    m.message && !runMessage.includes(m.message)
      ? h("div", { class: "muted", text: m.message }) : null);
}

const CW = 380, CH = 150, ML = 48, MR = 70, MT = 10, MB = 26;

function chart(m, kind) {
  const pts = m.series.flatMap((sr) => sr.points);
  const values = pts.map((p) => p.v).filter((v) => v !== null && v !== undefined);
  const lines = (m.thresholds || []).map((t) => t.value);
  if (!pts.length) {
    return h("div", { class: "muted", text: "No measurement yet." });
  }
  let lo = Math.min(...values, ...lines), hi = Math.max(...values, ...lines);
  if (!isFinite(lo)) { lo = 0; hi = 1; }
  if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
  const pad = (hi - lo) * 0.1;
  lo -= pad; hi += pad;
  const tmax = Math.max(1, ...pts.map((p) => p.t));
  const X = (t) => ML + (t / tmax) * (CW - ML - MR);
  const Y = (v) => MT + (1 - (v - lo) / (hi - lo)) * (CH - MT - MB);
  const svg = s("svg", {
    class: `chart ${kind || ""}`, width: CW, height: CH, viewBox: `0 0 ${CW} ${CH}`,
    role: "img", "aria-label": `${m.name} ${kind === "rates" ? "canary and stable rates"
      : "measurements"}`, "data-points": pts.length,
  });
  svg.append(s("line", { class: "axis", x1: ML, y1: MT, x2: ML, y2: CH - MB }),
    s("line", { class: "axis", x1: ML, y1: CH - MB, x2: CW - MR, y2: CH - MB }));
  const tick = kind === "rates" ? (v) => `${v < 10 ? v.toFixed(1) : Math.round(v)}%` : fmtNum;
  for (const v of [hi - pad, (hi + lo) / 2, lo + pad]) {
    svg.append(s("text", { x: ML - 4, y: Y(v) + 3, "text-anchor": "end", text: tick(v) }));
  }
  svg.append(s("text", { x: ML, y: CH - 8, text: "0 s" }),
    s("text", { x: CW - MR, y: CH - 8, "text-anchor": "end", text: `${fmtNum(tmax)} s` }),
    s("text", { x: (ML + CW - MR) / 2, y: CH - 8, "text-anchor": "middle",
      text: "since the run started" }));
  for (const t of m.thresholds || []) {
    const y = Y(t.value);
    svg.append(s("line", {
      class: `threshold ${t.kind}`, x1: ML, x2: CW - MR, y1: y, y2: y, "data-threshold": t.value,
    }), s("text", {
      class: t.kind, x: CW - MR + 4, y: y + 3,
      text: t.op ? `${t.op} ${fmtNum(t.value)}` : `${t.text} ${fmtNum(t.value)}`,
    }));
  }
  m.series.forEach((sr, i) => {
    const known = sr.points.filter((p) => p.v !== null && p.v !== undefined);
    if (known.length > 1) {
      svg.append(s("polyline", {
        class: `series s${i % 2} ${seriesClass(sr.name)}`,
        points: known.map((p) => `${X(p.t)},${Y(p.v)}`).join(" "),
      }));
    }
    for (const p of known) {
      // on the rates chart a dot is its line's colour; elsewhere, its measurement's phase
      svg.append(s("circle", { class: kind === "rates" ? `dot ${seriesClass(sr.name)}`
        : p.phase, cx: X(p.t), cy: Y(p.v), r: kind === "rates" ? 2.5 : 3.5 },
        s("title", { text: `${sr.name} = ${fmtNum(p.v)} at ${fmtNum(p.t)} s: ${p.phase}` +
          (p.message ? ` — ${p.message}` : "") })));
    }
  });
  const missing = pts.length - values.length;
  if (missing) {
    svg.append(s("text", { x: ML + 4, y: MT + 10, text: `${missing} without a value` }));
  }
  if (kind === "rates") {  // legend beside the drawing, not over its lines
    return h("div", { class: "chart-box" }, svg, h("div", { class: "legend" },
      ...m.series.map((sr) => h("span", { class: seriesClass(sr.name), text: `— ${sr.name}` }))));
  }
  if (m.series.length > 1) {
    m.series.forEach((sr, i) => svg.append(s("text", {
      x: ML + 4 + i * 90, y: MT + 22, class: `legend s${i}`, text: `— ${sr.name}`,
    })));
  }
  return svg;
}

// The judge's rate lines: canary orange, stable blue; slow requests dashed.
function seriesClass(name) {
  const words = String(name).split(" ");
  return ["canary", "stable"].includes(words[0])
    ? `${words[0]} ${words[1] === "slow" ? "slow" : ""}` : "";
}

function evidence(ev, key, m) {
  const rows = (ev.signals || []).map((sg) => h("tr", {},
    h("td", { text: sg.name }),
    h("td", { class: "num", text: `${sg.canary_bad} / ${sg.canary_total}` }),
    h("td", { class: "num", text: fmtPct(sg.canary_rate) }),
    h("td", { class: "num", text: `${sg.stable_bad} / ${sg.stable_total}` }),
    h("td", { class: "num", text: fmtPct(sg.stable_rate) }),
    h("td", { class: "num", text: fmtNum(sg.log_likelihood_ratio) }),
    h("td", {}, badge(sg.verdict))));
  const word = { pass: "passed", fail: "failed", inconclusive: "not decided yet" };
  return h("div", { class: "evidence", "data-verdict": ev.verdict },
    h("div", { class: `plain ${ev.verdict}` }, badge(ev.verdict, word[ev.verdict]),
      h("span", { class: "summary", text: ` ${ev.summary || ev.reason || ""}` })),
    details(key, { class: "stats" },
      h("summary", { text: "the statistics behind it" }),
      h("div", { class: "reason", text: `judge: ${ev.statistics || ev.reason || ""}` }),
      h("table", { class: "table" },
        h("thead", {}, h("tr", {}, ...["signal", "canary bad / total", "canary rate",
          "stable bad / total", "stable rate", "log LR", "verdict"]
          .map((t) => h("th", { text: t })))),
        h("tbody", {}, ...rows)),
      chart(m, "statistic"),
      h("div", { class: "muted", text: `fails at log LR ≥ ${fmtNum(ev.fail_bound)}, passes ` +
        `at ≤ ${fmtNum(ev.pass_bound)} (alpha ${ev.alpha}, beta ${ev.beta})` +
        (ev.requests_needed ? `; about ${ev.requests_needed} more canary requests needed` : "") +
        (ev.latency_threshold_ms ? `; slow means > ${fmtMs(ev.latency_threshold_ms)}` : "") })));
}

// ---- actions: promote, abort, retry, pause, resume ---------------------------------------
// Every button asks first (a modal <dialog>, with an optional reason recorded in the
// rollout's decisions), then POSTs the rollout API the CLI uses. The cards are redrawn every
// poll, so one listener on the panel handles every button (event delegation).

let pending = null; // {rollout, action} waiting for the dialog's answer

// Without a session (the page was not opened through `tollway dashboard`) every change
// would answer 401: the buttons are shown, disabled, with how to get one.
const READ_ONLY = "read-only: open the dashboard with `tollway dashboard --open` to act";

function actionBar(r) {
  if (!r.actions || !r.actions.length) return null;
  const session = hasSession();
  return h("div", { class: "actions", role: "group", "aria-label": `actions on ${r.name}` },
    ...r.actions.map((a) => h("button", {
      type: "button", class: `action ${a.action}`, "data-action": a.action,
      "data-rollout": `${r.namespace}/${r.name}`,
      disabled: a.enabled && session ? null : "disabled",
      title: !session ? READ_ONLY : a.enabled ? a.does
        : `${a.label}: not possible while ${r.phase}` + (r.aborted ? " (aborted)" : ""),
      text: a.label,
    })),
    session ? null : h("span", { class: "hint muted", text: READ_ONLY }));
}

function ask(rollout, action) {
  pending = { rollout, action };
  const [ns, name] = rollout.split("/");
  document.getElementById("confirm-title").textContent = `${action.label} ${ns}/${name}?`;
  document.getElementById("confirm-text").textContent =
    `${action.label} will ${action.does}. It is recorded as done by "dashboard".`;
  document.getElementById("confirm-reason").value = "";
  const ok = document.getElementById("confirm-ok");
  ok.textContent = action.label;
  ok.className = action.action === "abort" ? "danger" : "primary";
  document.getElementById("confirm").showModal();
  ok.focus();
}

let resultTimer = null;

// The API's answer above the cards; a success fades after a while (the card shows the
// effect), a refusal stays until the next action.
function showResult(text, bad) {
  const out = document.getElementById("action-result");
  out.hidden = false;
  out.className = `action-result ${bad ? "error" : "ok"}`;
  out.textContent = text;
  clearTimeout(resultTimer);
  if (!bad) resultTimer = setTimeout(() => { out.hidden = true; }, 20000);
}

// What a state-changing request carries: same origin, JSON, a custom header a cross-site
// form or image cannot send, and the session's `Authorization: Bearer` (see postJSON).
const MUTATE_HEADERS = { "Content-Type": "application/json", "X-Tollway-Request": "1" };

function mutateHeaders() {
  const token = sessionStorage.getItem(SESSION_KEY);
  return token ? { ...MUTATE_HEADERS, Authorization: `Bearer ${token}` } : { ...MUTATE_HEADERS };
}

async function act(rollout, action, reason) {
  const [ns, name] = rollout.split("/");
  const path = `/v1/rollouts/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/` +
    encodeURIComponent(action.path);
  try {
    const data = await postJSON(path, { ...action.body, actor: "dashboard", reason });
    showResult((data && data.message) || `${action.label} requested`, false);
  } catch (err) {
    showResult(err instanceof TypeError
      ? `${action.label} ${rollout}: the control plane did not answer (${err.message})`
      : `${action.label} ${rollout} refused: ${err.message}`, true);
  }
  tick();
}

let lastRollouts = { items: [] };

document.getElementById("rollouts").addEventListener("click", (ev) => {
  const btn = ev.target.closest("button[data-action]");
  if (!btn || btn.disabled) return;
  const r = lastRollouts.items.find((x) => `${x.namespace}/${x.name}` === btn.dataset.rollout);
  const a = r && r.actions.find((x) => x.action === btn.dataset.action);
  if (a) ask(btn.dataset.rollout, a);
});

document.getElementById("confirm-cancel").addEventListener("click", () => {
  pending = null;
  document.getElementById("confirm").close();
});

function confirmed() {
  const dialog = document.getElementById("confirm");
  if (!pending) { dialog.close(); return; }
  const { rollout, action } = pending;
  pending = null;
  dialog.close();
  act(rollout, action, document.getElementById("confirm-reason").value.trim());
}

document.getElementById("confirm-ok").addEventListener("click", confirmed);
document.getElementById("confirm-reason").addEventListener("keydown", (ev) => {
  if (ev.key === "Enter") { ev.preventDefault(); confirmed(); }
});
document.getElementById("confirm").addEventListener("close", () => { pending = null; });

// ---- proxies and config ------------------------------------------------------------------

function renderMesh(m) {
  const root = document.getElementById("mesh");
  const sum = m.summary;
  const parts = [h("div", { class: "chips" },
    h("span", { class: "chip", text: `config revision ${m.revision}` }),
    h("span", { class: "chip", text: `${sum.proxies} proxies` }),
    ...["synced", "stale", "nacked", "disconnected"].filter((k) => sum[k])
      .map((k) => h("span", { class: "chip", text: `${sum[k]} ${k}` })))];
  if (!m.proxies.length) {
    parts.push(h("div", { class: "empty", id: "mesh-empty" },
      "No proxies yet. ", code("tollway up DIR"), " starts a sidecar per replica, a client ",
      "proxy and a gateway; a VM sidecar joins with ",
      code("tollway proxy --control-plane URL …"), "."));
  } else {
    parts.push(h("table", { class: "table", id: "proxies" },
      h("thead", {}, h("tr", {}, ...["proxy", "kind", "status", "config", "admin", "metrics"]
        .map((t) => h("th", { text: t })))),
      h("tbody", {}, ...m.proxies.map((p) => h("tr", { "data-proxy": p.name },
        h("td", { class: "wrap" }, p.name,
          p.display ? h("div", { class: "muted small", text: p.display }) : null),
        h("td", { text: p.kind }),
        h("td", {}, badge(p.status)),
        h("td", { title: p.nack_reason || "" }, p.acked || "–",
          p.status === "NACKED" ? h("div", { class: "panel-error",
            text: `refused ${p.nacked}: ${p.nack_reason}` }) : null),
        h("td", {}, p.admin ? code(p.admin) : "–"),
        h("td", { class: p.metrics === "ok" ? "" : "muted", text: p.metrics }))))));
  }
  parts.push(h("h4", { text: "resources" }), m.resources.length
    ? h("div", { class: "chips" }, ...m.resources.map((r) => h("span", {
      class: "chip", text: `${r.kind} ${r.count}`,
    })))
    : h("div", { class: "muted", text: "No resources applied yet." }));
  if (m.changes.length) {
    parts.push(h("h4", { text: "recent changes" }), h("ul", { class: "decisions" },
      ...m.changes.map((c) => h("li", {
        text: `rev ${c.revision} ${c.action} by ${c.actor}: ${c.reason} ` +
          `(${c.changed.length} changed, ${c.deleted.length} deleted)`,
      }))));
  }
  root.replaceChildren(...parts);
}

// ---- traces (shown when `tollway up --tracing` runs Jaeger) -------------------------------

let lastTraces = null;

function renderTraces(t) {
  lastTraces = t;
  const panel = document.getElementById("traces-panel");
  panel.hidden = !t.enabled;
  if (!t.enabled) return;
  const root = document.getElementById("traces");
  if (t.error) {
    root.replaceChildren(h("div", { class: "panel-error", text: t.error }));
    return;
  }
  const find = document.getElementById("trace-find").value.trim().toLowerCase();
  const rows = t.traces.filter((r) => !find || r.request_id.toLowerCase().includes(find) ||
    r.trace_id.includes(find));
  if (!rows.length) {
    root.replaceChildren(h("div", { class: "empty", id: "traces-empty" }, find
      ? `No trace among the latest ${t.traces.length} matches “${find}”.`
      : "No traces yet: send a request through the gateway or the client proxy."));
    return;
  }
  root.replaceChildren(h("table", { class: "table", id: "trace-rows" },
    h("thead", {}, h("tr", {}, ...["time", "request", "path through the mesh", "status",
      "duration", "spans", "trace"].map((x) => h("th", { text: x })))),
    h("tbody", {}, ...rows.map((r) => h("tr", { "data-trace": r.trace_id },
      h("td", { text: new Date(r.start_us / 1000).toLocaleTimeString() }),
      h("td", { class: "wrap" }, `${r.method} ${r.url}`,
        h("div", { class: "muted small", text: `x-request-id ${r.request_id}` })),
      h("td", { class: "wrap", text: r.services.join(" → ") }),
      h("td", { class: r.error ? "bad" : "", text: r.status === null ? "–" : r.status }),
      h("td", { text: fmtMs(r.duration_ms) }),
      h("td", { text: r.spans }),
      h("td", {}, h("a", { href: r.link, target: "_blank", rel: "noopener", text: "open" }),
        " ", h("a", { href: r.json, target: "_blank", rel: "noopener", text: "json" })))))));
}

document.getElementById("trace-find").addEventListener("input", () => {
  if (lastTraces) renderTraces(lastTraces);
});

// ---- acting on the mesh (the control plane's credential) ----------------------------------
// `tollway dashboard` opens /dashboard#token=T: a 12 h admin session in the URL's fragment,
// which the browser never sends to any server. It is kept in sessionStorage (this origin,
// this tab only) and sent as `Authorization: Bearer` on every change, with a JSON body:
// what the API requires (a cross-site page can send neither). Without it, reading works and
// changes answer 401; the message says how to open the dashboard with a session.

const SESSION_KEY = "tollway.session";

(function takeSessionFromFragment() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (!m) return;
  sessionStorage.setItem(SESSION_KEY, decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + location.search);
})();

function hasSession() {
  return Boolean(sessionStorage.getItem(SESSION_KEY));
}

// POST `body` (an object) to `path` as the API requires; resolves to the parsed answer or
// throws an Error whose message is the control plane's one sentence.
async function postJSON(path, body) {
  const r = await fetch(path, {
    method: "POST", headers: mutateHeaders(), body: JSON.stringify(body || {}),
    cache: "no-store", credentials: "omit",
  });
  const text = await r.text();
  let data = null;
  try { data = JSON.parse(text); } catch (e) { /* a plain-text refusal */ }
  if (!r.ok) {
    const why = (data && (data.error || data.message)) || text.trim() || `HTTP ${r.status}`;
    const hint = r.status === 401 ? " (open the dashboard with `tollway dashboard --open` to act)" : "";
    throw new Error(`${why}${hint}`);
  }
  return data;
}

// ---- polling -----------------------------------------------------------------------------

async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) {
    let why = `HTTP ${r.status}`;
    try { why = (await r.json()).error || why; } catch (e) { /* not JSON */ }
    throw new Error(`${path}: ${why}`);
  }
  return r.json();
}

function panelError(id, err) {
  document.getElementById(id).replaceChildren(
    h("div", { class: "panel-error", text: `Could not load: ${err.message}` }));
}

async function tick() {
  const win = document.getElementById("window").value;
  const [g, r, m, t] = await Promise.allSettled([
    getJSON(`/v1/dashboard/graph?window=${encodeURIComponent(win)}`),
    getJSON("/v1/dashboard/rollouts"),
    getJSON("/v1/dashboard/mesh"),
    getJSON("/v1/dashboard/traces"),
  ]);
  const failed = [g, r, m].filter((x) => x.status === "rejected");
  if (g.status === "fulfilled") renderGraph(g.value); else panelError("graph-empty", g.reason);
  if (g.status !== "fulfilled") document.getElementById("graph-empty").hidden = false;
  if (r.status === "fulfilled") {
    lastRollouts = r.value;
    renderRollouts(r.value);
  } else panelError("rollouts", r.reason);
  if (m.status === "fulfilled") renderMesh(m.value); else panelError("mesh", m.reason);
  if (t.status === "fulfilled") renderTraces(t.value); else panelError("traces", t.reason);
  const status = document.getElementById("status");
  status.className = failed.length ? "status error" : "status";
  status.textContent = failed.length
    ? "control plane not answering; retrying… (is `tollway up` still running?)"
    : `updated ${new Date().toLocaleTimeString()}`;
  document.body.dataset.updates = String(++updates);
}

async function loop() {
  try {
    await tick();
  } catch (err) {
    document.getElementById("status").textContent = `error: ${err.message}`;
  }
  setTimeout(loop, POLL_MS);
}

document.getElementById("window").addEventListener("change", () => { tick(); });
loop();
