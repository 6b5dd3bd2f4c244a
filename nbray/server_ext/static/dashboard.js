// nbray dashboard: plain JS over the extension's REST API and event WebSocket.
//   GET nbray/api/cluster, nodes, tasks ─▶ first render
//   WS  nbray/api/events ─▶ task events (table, timeline, graph), metrics (node cards)
//   GET nbray/api/tasks/<id>/logs ─▶ the selected task's output (again on its log events)
"use strict";
(function () {
  const base = document.body.dataset.baseUrl || "/";
  const token = new URLSearchParams(location.search).get("token") || "";
  const tasks = new Map(); // task_id -> record
  let metrics = null;
  let nodes = [];
  let sshNodes = [];  // the SSH cluster's nodes (GET ssh/status, then "node" events)
  let selected = "";
  let ws = null;
  let backoff = 500;
  let dropped = false; // the event stream broke: refetch everything when it is back
  let dirty = true;
  let logsDirty = false; // the selected task printed since its output was fetched
  let logsLoading = false;

  function xsrf() {
    const m = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  async function api(path, body) {
    const headers = { "Content-Type": "application/json" };
    if (token) headers.Authorization = "token " + token;
    const x = xsrf();
    if (x) headers["X-XSRFToken"] = x;
    const init = body === undefined ? { headers } : { method: "POST", headers, body: JSON.stringify(body) };
    const resp = await fetch(base + "nbray/api/" + path, init);
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.message || resp.status + " " + resp.statusText);
    return data;
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function svgEl(tag, attrs) {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    return e;
  }

  function fmtBytes(n) {
    const u = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + " " + u[i];
  }

  function showError(msg) {
    const e = document.getElementById("error");
    e.textContent = msg || "";
    e.hidden = !msg;
  }

  // --- cluster state and controls -----------------------------------------------------
  function renderState(status) {
    const s = document.getElementById("state");
    s.textContent = status.state;
    s.className = "badge " + status.state;
    document.getElementById("start").disabled = status.state !== "stopped";
    document.getElementById("stop").disabled = status.state !== "running";
    if (status.error) showError(status.error);
  }

  async function action(name) {
    showError("");
    try {
      const status = await api("cluster/" + name, {});
      renderState(status);
      if (name !== "stop") { tasks.clear(); await loadAll(); }
      else { nodes = []; metrics = null; renderNodes(); }
    } catch (err) { showError(name + " failed: " + err.message); }
  }

  // --- nodes ---------------------------------------------------------------------------
  function bar(label, pct, detail) {
    const wrap = el("div");
    wrap.appendChild(el("div", {}, label + ": " + detail));
    const b = el("div", { class: "bar" });
    const fill = el("div");
    fill.style.width = Math.max(0, Math.min(100, pct)).toFixed(1) + "%";
    b.appendChild(fill);
    wrap.appendChild(b);
    return wrap;
  }

  function renderNodes() {
    const box = document.getElementById("nodes");
    box.replaceChildren();
    for (const node of nodes) {
      const m = (metrics && metrics.node_id === node.NodeID) ? metrics : node.metrics;
      const card = el("div", { class: "card node-card" + (node.Alive === false ? " dead" : "") });
      card.appendChild(el("b", {}, node.NodeManagerHostname + " (" + node.NodeID.slice(0, 8) + ")"));
      if (node.Alive === false) { card.appendChild(el("div", {}, "gone")); box.appendChild(card); continue; }
      const res = node.Resources || {};
      card.appendChild(el("div", {}, "CPU " + (res.CPU || 0) + (res.GPU ? ", GPU " + res.GPU : "")));
      if (m) {
        card.appendChild(bar("CPU", m.cpu_percent, m.cpu_percent.toFixed(0) + "% of " + m.num_cpus));
        card.appendChild(bar("Memory", m.memory_percent,
          fmtBytes(m.memory_used) + " / " + fmtBytes(m.memory_total)));
        for (const g of m.gpus || []) {
          card.appendChild(bar("GPU " + g.index, g.utilization,
            g.utilization.toFixed(0) + "%, " + fmtBytes(g.memory_used) + " / " + fmtBytes(g.memory_total)));
        }
        const workers = Object.values(m.workers || {});
        const cap = m.object_store_capacity_bytes ? " / " + fmtBytes(m.object_store_capacity_bytes) : "";
        card.appendChild(el("div", {}, workers.length + " workers, object store " +
          fmtBytes(m.object_store_bytes || 0) + cap));
      } else {
        card.appendChild(el("div", {}, "waiting for the first sample…"));
      }
      box.appendChild(card);
    }
    for (const n of sshNodes) {
      const gone = n.state !== "ALIVE";
      const card = el("div", { class: "card node-card ssh-node" + (gone ? " dead" : "") });
      card.appendChild(el("b", {}, n.address + " (SSH cluster, " + n.node_id.slice(0, 8) + ")"));
      card.appendChild(el("div", {}, gone ? "gone" + (n.reason ? ": " + n.reason : "") : "alive"));
      box.appendChild(card);
    }
  }

  function applyNodeEvent(ev) {
    const known = sshNodes.find((n) => n.node_id === ev.node_id);
    if (known) Object.assign(known, { state: ev.state, reason: ev.reason });
    else sshNodes.push({ node_id: ev.node_id, address: ev.address, state: ev.state, reason: ev.reason });
    for (const node of nodes) if (node.NodeID === ev.node_id) node.Alive = ev.state === "ALIVE";
    renderNodes();
  }

  // --- tasks ---------------------------------------------------------------------------
  function applyEvent(ev) {
    if (ev.type === "metrics") { metrics = ev; renderNodes(); return; }
    if (ev.type === "node") { applyNodeEvent(ev); return; }
    if (ev.type === "cluster") { renderState(ev); if (ev.state === "running") loadAll(); return; }
    if (ev.type === "log") { if (ev.task_id === selected) logsDirty = true; return; }
    if (ev.type !== "task") return;
    let rec = tasks.get(ev.task_id);
    if (!rec) {
      rec = { task_id: ev.task_id, name: ev.name, state: ev.state, submitted: ev.time,
              started: null, ended: null, worker_id: null, error: "", deps: [], returns: [],
              parent: ev.parent || "", owner: ev.owner };
      tasks.set(ev.task_id, rec);
    }
    rec.state = ev.state;
    if (ev.state === "SUBMITTED") { rec.deps = ev.deps || []; rec.returns = ev.returns || []; }
    if (ev.state === "RUNNING") { rec.started = ev.time; rec.worker_id = ev.worker_id; }
    if (["FINISHED", "FAILED", "CANCELLED"].includes(ev.state)) {
      rec.ended = ev.time;
      if (ev.worker_id != null) rec.worker_id = ev.worker_id;
    }
    if (ev.error) rec.error = ev.error;
    if (tasks.size > 5000) tasks.delete(tasks.keys().next().value);
    dirty = true;
  }

  function filtered() {
    const q = document.getElementById("search").value.trim().toLowerCase();
    const st = document.getElementById("filter-state").value;
    const out = [];
    for (const rec of tasks.values()) {
      if (st && rec.state !== st) continue;
      if (q && !rec.name.toLowerCase().includes(q) && !rec.task_id.includes(q)) continue;
      out.push(rec);
    }
    return out.reverse();
  }

  function renderTasks() {
    const body = document.querySelector("#tasks tbody");
    body.replaceChildren();
    for (const rec of filtered().slice(0, 300)) {
      const tr = el("tr", { "data-task-id": rec.task_id });
      tr.appendChild(el("td", {}, rec.name));
      tr.appendChild(el("td", { class: "state-" + rec.state }, rec.state));
      tr.appendChild(el("td", {}, rec.worker_id == null ? "" : String(rec.worker_id)));
      const dur = rec.started ? ((rec.ended || Date.now() / 1000) - rec.started) : null;
      tr.appendChild(el("td", {}, dur == null ? "" : dur.toFixed(3) + " s"));
      tr.appendChild(el("td", {}, rec.task_id));
      tr.addEventListener("click", () => {
        selected = rec.task_id;
        renderDetails();
        document.getElementById("logs").replaceChildren();
        loadLogs();
      });
      body.appendChild(tr);
    }
  }

  function renderDetails() {
    const rec = tasks.get(selected);
    if (!rec) return;
    const lines = [
      "task " + rec.task_id + "  " + rec.name,
      "state: " + rec.state + (rec.worker_id != null ? "  on worker " + rec.worker_id : ""),
      "submitted: " + new Date(rec.submitted * 1000).toLocaleTimeString(),
    ];
    if (rec.parent) lines.push("submitted by task " + rec.parent);
    if (rec.deps && rec.deps.length) lines.push("waits on objects " + rec.deps.join(", "));
    if (rec.error) lines.push("", "error:", rec.error);
    document.getElementById("details").textContent = lines.join("\n");
  }

  async function loadLogs() {
    if (!selected || logsLoading) { logsDirty = logsDirty || logsLoading; return; }
    const id = selected;
    logsDirty = false;
    logsLoading = true;
    let data;
    try {
      data = await api("tasks/" + id + "/logs");
    } catch (err) {
      data = { lines: [], dropped: 0, missing: err.message };
    } finally {
      logsLoading = false;
    }
    if (id === selected) renderLogs(data);
  }

  function renderLogs(data) {
    const box = document.getElementById("logs");
    const parts = [];
    if (data.dropped) parts.push(el("span", { class: "note" }, "(" + data.dropped + " earlier pieces not kept)\n"));
    for (const p of data.lines) {
      parts.push(el("span", { class: p.stream }, p.text + (p.truncated ? " …[cut]\n" : "")));
    }
    if (!parts.length) parts.push(el("span", { class: "note" }, data.missing ? "no output kept for this task" : "no output"));
    box.replaceChildren(...parts);
    box.scrollTop = box.scrollHeight;
  }

  function renderTimeline() {
    const svg = document.getElementById("timeline");
    svg.replaceChildren();
    const now = Date.now() / 1000;
    const t0 = now - 60;
    const width = svg.clientWidth || 800;
    const rows = new Map();
    const runs = [];
    for (const rec of tasks.values()) {
      if (!rec.started || (rec.ended && rec.ended < t0) || rec.worker_id == null) continue;
      if (!rows.has(rec.worker_id)) rows.set(rec.worker_id, rows.size);
      runs.push(rec);
    }
    svg.setAttribute("height", String(Math.max(40, rows.size * 18 + 10)));
    for (const [wid, row] of rows) {
      const t = svgEl("text", { x: 4, y: row * 18 + 17, "font-size": 11 });
      t.textContent = "w" + wid;
      svg.appendChild(t);
    }
    const colors = { RUNNING: "#3b7dd8", FINISHED: "#2e8540", FAILED: "#c33", CANCELLED: "#999" };
    for (const rec of runs) {
      const x0 = 40 + ((Math.max(rec.started, t0) - t0) / 60) * (width - 45);
      const x1 = 40 + (((rec.ended || now) - t0) / 60) * (width - 45);
      const r = svgEl("rect", { x: x0, y: rows.get(rec.worker_id) * 18 + 6, height: 13,
        width: Math.max(1.5, x1 - x0), fill: colors[rec.state] || "#777" });
      const title = svgEl("title");
      title.textContent = rec.name + " (" + rec.state + ")";
      r.appendChild(title);
      svg.appendChild(r);
    }
  }

  function renderGraph() {
    const svg = document.getElementById("graph");
    svg.replaceChildren();
    const recent = Array.from(tasks.values()).slice(-60);
    const byReturn = new Map();
    for (const rec of recent) for (const oid of rec.returns || []) byReturn.set(oid, rec.task_id);
    const ids = new Set(recent.map((r) => r.task_id));
    const edges = [];
    for (const rec of recent) {
      for (const d of rec.deps || []) if (byReturn.has(d)) edges.push([byReturn.get(d), rec.task_id]);
      if (rec.parent && ids.has(rec.parent)) edges.push([rec.parent, rec.task_id]);
    }
    const depth = new Map();
    for (const rec of recent) {
      let d = 0;
      for (const [a, b] of edges) if (b === rec.task_id && depth.has(a)) d = Math.max(d, depth.get(a) + 1);
      depth.set(rec.task_id, d);
    }
    const layers = new Map();
    const pos = new Map();
    for (const rec of recent) {
      const d = depth.get(rec.task_id);
      const i = layers.get(d) || 0;
      layers.set(d, i + 1);
      pos.set(rec.task_id, [20 + i * 26, 20 + d * 40]);
    }
    const maxDepth = Math.max(0, ...depth.values());
    svg.setAttribute("height", String(40 + maxDepth * 40));
    for (const [a, b] of edges) {
      const [x1, y1] = pos.get(a); const [x2, y2] = pos.get(b);
      svg.appendChild(svgEl("line", { x1, y1, x2, y2, stroke: "#aaa" }));
    }
    const colors = { RUNNING: "#3b7dd8", FINISHED: "#2e8540", FAILED: "#c33", CANCELLED: "#999" };
    for (const rec of recent) {
      const [cx, cy] = pos.get(rec.task_id);
      const c = svgEl("circle", { cx, cy, r: 8, fill: colors[rec.state] || "#e0a000",
                                  "data-task-id": rec.task_id });
      const title = svgEl("title");
      title.textContent = rec.name + " (" + rec.state + ")";
      c.appendChild(title);
      c.addEventListener("click", () => { selected = rec.task_id; renderDetails(); });
      svg.appendChild(c);
    }
  }

  function renderSummary(summary) {
    if (!summary) return;
    const parts = Object.entries(summary.counts).map(([k, v]) => k.toLowerCase() + " " + v);
    parts.push(summary.rate.toFixed(1) + " tasks/s");
    document.getElementById("summary").textContent = parts.join(" · ");
  }

  // --- data flow -----------------------------------------------------------------------
  async function loadAll() {
    try {
      const status = await api("cluster");
      showError("");
      renderState(status);
      nodes = (await api("nodes")).nodes;
      sshNodes = (await api("ssh/status")).nodes;
      renderNodes();
      const list = (await api("tasks?limit=2000")).tasks.reverse();
      for (const rec of list) tasks.set(rec.task_id, rec);
      renderSummary(await api("summary"));
      dirty = true;
    } catch (err) { showError("cannot reach the nbray API: " + err.message); }
  }

  function connect() {
    if (ws || document.hidden) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const q = token ? "?token=" + encodeURIComponent(token) : "";
    ws = new WebSocket(proto + "//" + location.host + base + "nbray/api/events" + q);
    ws.onopen = () => {
      backoff = 500;
      if (dropped) { dropped = false; tasks.clear(); loadAll(); } // missed events: refetch
    };
    ws.onmessage = (msg) => {
      const data = JSON.parse(msg.data);
      for (const ev of data.events) applyEvent(ev);
      renderSummary(data.summary);
      if (data.dropped) { loadAll(); if (selected) logsDirty = true; }
    };
    ws.onclose = () => {
      ws = null;
      dropped = true;
      if (!document.hidden) setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 15000);
    };
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) { if (ws) ws.close(); }
    else { loadAll(); connect(); }
  });
  document.getElementById("search").addEventListener("input", () => { dirty = true; });
  document.getElementById("filter-state").addEventListener("change", () => { dirty = true; });
  for (const name of ["start", "stop", "restart"]) {
    document.getElementById(name).addEventListener("click", () => action(name));
  }
  setInterval(() => {
    if (document.hidden) return;
    const running = Array.from(tasks.values()).some((t) => t.state === "RUNNING");
    if (!dirty && !running) return;
    dirty = false;
    renderTasks();
    renderTimeline();
    renderGraph();
    if (selected) renderDetails();
  }, 400);
  setInterval(() => { if (logsDirty && !document.hidden) loadLogs(); }, 400);
  loadAll().then(connect);
})();
