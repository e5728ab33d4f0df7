// grid-ops dashboard: polls /api/state (what the server's refresher last saw) and
// redraws. Every value from the cluster reaches the page as text (textContent), never
// as markup.
"use strict";
(function () {
  const KEY = "grid-ops-token";
  const POLL_MS = 2000;
  let lastFetch = 0;
  let lastState = null;

  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    sessionStorage.setItem(KEY, hash.get("token"));
    history.replaceState(null, "", location.pathname + location.search);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = String(value);
      else node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const badge = (text, kind, title) => el("span", { class: "badge " + (kind || ""), title: title, text: text });
  // A bar filled to ``fraction``: its width set through the CSSOM (element.style), which
  // the Content-Security-Policy allows; a style attribute it would block.
  function bar(fraction, kind, title) {
    const pct = Math.max(0, Math.min(1, fraction || 0)) * 100;
    const fill = el("span");
    fill.style.width = pct.toFixed(1) + "%";
    return el("div", { class: kind + (pct >= 90 ? " bad" : pct >= 70 ? " warn" : ""), title: title }, fill);
  }
  function meter(fraction, label, title) {
    return el("div", { class: "meter", title: title }, bar(fraction, "bar"), el("span", { class: "label", text: label }));
  }
  const thin = (fraction, title) => bar(fraction, "bar thin", title);
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n.toFixed(0)) + " " + units[i];
  }
  function duration(seconds) {
    if (seconds === null || seconds === undefined || seconds < 0) return "";
    seconds = Math.round(seconds);
    const h = Math.floor(seconds / 3600), m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + s + "s";
  }
  const clock = (t) => t ? new Date(t * 1000).toLocaleTimeString() : "never";
  function fill(table, rows, columns, empty) {
    const body = document.querySelector("#" + table + " tbody");
    const fresh = el("tbody");
    if (!rows.length) fresh.append(el("tr", { class: "empty" }, el("td", { colspan: columns, text: empty })));
    for (const row of rows) fresh.append(row);
    body.replaceWith(fresh);
  }

  function nodeRow(node, ray, head) {
    const state = el("td", { class: "state" });
    const role = node.name === head ? "head" : "";
    if (!node.reachable) {
      state.append(badge("unreachable", "bad"), el("span", { class: "note", text: node.error || "" }));
    } else {
      const rayState = ray ? ray.ray : (node.ray_running ? "alive" : "absent");
      state.append(badge("ray " + rayState, rayState === "alive" ? "ok" : rayState === "dead" ? "bad" : ""));
      if (node.drained) {
        const quarantined = node.drained.startsWith("quarantine:");
        state.append(badge(quarantined ? "quarantined" : "drained", quarantined ? "bad" : "warn", node.drained));
      }
      for (const check of node.checks || []) {
        state.append(badge(check.check, check.severity === "sick" ? "bad" : "warn", check.reason));
      }
      if (node.drained) state.append(el("span", { class: "note", text: node.drained }));
    }
    const cores = node.cpu_count || 1;
    const load = node.load1 === null || node.load1 === undefined ? null : node.load1;
    const memUsed = node.mem_total_bytes ? node.mem_total_bytes - (node.mem_available_bytes || 0) : null;
    const list = node.gpus || [];
    const compact = list.length > 2;  // many GPUs: one small block each, figures on hover
    const gpus = el("div", { class: "gpus" + (compact ? " compact" : "") });
    for (const [i, gpu] of list.entries()) {
      const used = gpu.memory_used_mib || 0, total = gpu.memory_total_mib || 0;
      const util = gpu.utilization_gpu === null || gpu.utilization_gpu === undefined ? "–" : gpu.utilization_gpu;
      const index = gpu.index !== undefined ? gpu.index : i;
      const label = (used / 1024).toFixed(1) + "/" + (total / 1024).toFixed(0) + " GiB · " + util + "%";
      gpus.append(el("div", { class: "gpu", title: "GPU " + index + " " + (gpu.name || "") + ": " + label },
        el("div", { class: "title" }, el("span", { text: (compact ? "" : "GPU ") + index }),
          el("span", { class: "figures", text: compact ? util + "%" : label })),
        thin(total ? used / total : 0, "memory used"),
        thin((gpu.utilization_gpu || 0) / 100, "utilisation")));
    }
    return el("tr", { "data-node": node.name },
      el("td", {}, el("strong", { text: node.name }), role ? el("span", { class: "role", text: role }) : null),
      state,
      el("td", { class: "num", text: node.score === null || node.score === undefined ? "–" : node.score.toFixed(2) }),
      el("td", {}, load === null ? "–" : meter(load / cores, load.toFixed(2) + " / " + cores, "1-minute load / cores")),
      el("td", {}, memUsed === null ? "–" : meter(memUsed / node.mem_total_bytes, bytes(memUsed) + " / " + bytes(node.mem_total_bytes), "memory used")),
      el("td", { class: "gpucell" }, list.length ? gpus : el("span", { class: "note", text: "none" })),
      el("td", { class: "num", text: bytes(node.disk_free_bytes) }));
  }

  const JOB_STYLE = { SUCCEEDED: "ok", FAILED: "bad", STOPPED: "warn", RUNNING: "info", QUEUED: "" };
  function jobRow(job, now) {
    const live = job.status === "RUNNING";
    const end = job.ended_at || (job.status === "RUNNING" ? now : null);
    return el("tr", { "data-job": job.name },
      el("td", {}, el("strong", { text: job.name })),
      el("td", { text: job.submitter || "" }),
      el("td", { class: "state" }, badge(job.status || "?", JOB_STYLE[job.status] || "", job.message || ""),
        job.attempt > 1 ? el("span", { class: "note", text: "attempt " + job.attempt }) : null,
        job.status === "QUEUED" ? el("span", { class: "note", text: job.reason || "" }) : null),
      el("td", { class: "num", text: job.started_at && end ? duration(end - job.started_at) : "" }),
      el("td", { class: "num", text: job.nodes }),
      el("td", {}, el("div", { class: "tailbox" }, el("pre", { class: "tail", text: (job.log_tail || []).slice(live ? -8 : -3).join("\n") }))));
  }

  function draw(state) {
    lastState = state;
    document.getElementById("cluster").textContent = state.cluster_name;
    document.title = "grid-ops: " + state.cluster_name;
    const health = (state.health && state.health.nodes) || [];
    const rayRows = {};
    for (const row of (state.cluster && state.cluster.nodes) || []) rayRows[row.name] = row;
    fill("nodes", health.map((n) => nodeRow(n, rayRows[n.name], state.head)), 7, "no health round yet");
    const sick = health.filter((n) => (n.checks || []).some((c) => c.severity === "sick")).length;
    const down = health.filter((n) => !n.reachable).length;
    const drained = health.filter((n) => n.drained).length;
    document.getElementById("nodes-count").textContent = health.length + " of " + state.node_names.length;

    const repairs = (state.repairs || []).slice().reverse();
    fill("repairs", repairs.map((r) => el("tr", { "data-repair": r.node },
      el("td", { text: clock(r.time) }), el("td", { text: r.node }), el("td", { text: r.action }),
      el("td", {}, badge(r.ok ? "repaired" : r.quarantined ? "failed, quarantined" : "failed " + r.failures + "×",
        r.ok ? "ok" : "bad")),
      el("td", { text: r.detail || "" }))), 5, "none: every node that should run Ray does");
    document.getElementById("repairs-count").textContent = repairs.length ? "latest " + repairs.length : "";

    const jobs = (state.jobs || []).slice().reverse().slice(0, 25);
    const running = (state.jobs || []).filter((j) => j.status === "RUNNING").length;
    const queued = (state.jobs || []).filter((j) => j.status === "QUEUED").length;
    fill("jobs", jobs.map((j) => jobRow(j, state.now)), 6, "no jobs in the queue yet");
    document.getElementById("jobs-count").textContent = running + " running, " + queued + " queued, " + (state.jobs || []).length + " in all";

    const controller = state.controller || {};
    fill("boosts", (controller.reservations || []).map((r) => el("tr", { "data-boost": r.id },
      el("td", { text: r.id }), el("td", { text: r.owner || "" }), el("td", { text: r.node }),
      el("td", { text: r.resource + (r.kind === "share" ? " (shared)" : "") }),
      el("td", { class: "num", text: r.resource === "memory" ? bytes(r.amount) : r.amount }),
      el("td", { text: r.priority || "" }),
      el("td", {}, badge(r.state, r.state === "active" ? "ok" : r.state === "node-lost" ? "bad" : "warn")),
      el("td", { text: r.expires_at ? clock(r.expires_at) : "never" }))), 8,
      state.controller ? "none active" : "controller not answering");
    fill("memory", (controller.memory || []).map((o) => el("tr", { "data-key": o.key },
      el("td", { text: o.key }), el("td", { text: o.owner || "" }), el("td", { class: "num", text: bytes(o.size) }),
      el("td", {}, o.nodes.length ? o.nodes.join(", ") : badge("lost", "bad")))), 4,
      state.controller ? "empty" : "controller not answering");

    const users = Object.entries((controller.metrics && controller.metrics.users) || {})
      .sort((a, b) => b[1].gpu_hours_week - a[1].gpu_hours_week);
    fill("usage", users.map(([name, u]) => el("tr", { "data-user": name },
      el("td", { text: name }), el("td", { class: "num", text: u.jobs_running }),
      el("td", { class: "num", text: u.jobs_queued }), el("td", { class: "num", text: u.gpus_running }),
      el("td", { class: "num", text: u.gpu_hours_week.toFixed(2) }))), 5,
      state.controller ? "no jobs yet" : "controller not answering");

    const parts = [health.length + " nodes", (health.length - down - drained) + " in service"];
    if (sick) parts.push(sick + " sick");
    if (drained) parts.push(drained + " drained");
    if (down) parts.push(down + " unreachable");
    parts.push("head " + state.head);
    document.getElementById("summary").textContent = parts.join(" · ");

    const errors = document.getElementById("errors");
    errors.replaceChildren(...Object.entries(state.errors || {}).map(([section, e]) =>
      el("p", {}, el("strong", { text: section + ": " }), e.error + (e.hint ? " " + e.hint : ""))));
    tick();
  }

  function tick() {
    const box = document.getElementById("freshness");
    if (!lastState) return;
    const age = (lastState.now - (lastState.health_at || lastState.now)) + (Date.now() - lastFetch) / 1000;
    box.textContent = "updated " + duration(age) + " ago · round " + lastState.rounds;
    box.classList.toggle("stale", age > 3 * lastState.interval + 5);
  }

  async function poll() {
    const headers = {};
    const token = sessionStorage.getItem(KEY);
    if (token) headers.Authorization = "Bearer " + token;
    try {
      const answer = await fetch("/api/state", { headers: headers, cache: "no-store" });
      if (answer.status === 401) {
        document.getElementById("token-box").hidden = false;
        document.getElementById("freshness").textContent = "token needed";
      } else if (answer.ok) {
        document.getElementById("token-box").hidden = true;
        lastFetch = Date.now();
        draw(await answer.json());
      } else {
        document.getElementById("freshness").textContent = "server answered " + answer.status;
      }
    } catch (e) {
      const box = document.getElementById("freshness");
      box.textContent = "server not answering";
      box.classList.add("stale");
    }
    setTimeout(poll, POLL_MS);
  }

  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, document.getElementById("token-input").value.trim());
    document.getElementById("token-input").value = "";
  });
  setInterval(tick, 1000);
  poll();
})();
