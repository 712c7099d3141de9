// Wharf console: the little script it needs. Every page works without it; it
// keeps relative times fresh, asks before destructive actions, and follows a
// release live over server-sent events.
//
// Data from the server is only ever put into the page as text (textContent,
// attributes set with setAttribute), never as HTML.
"use strict";

(function () {
  // ---------------------------------------------------------------- formatting
  // The same rules as src/console/fmt.rs.

  function ago(date, now) {
    const secs = Math.floor((now - date) / 1000);
    if (secs < 0) return "in the future";
    if (secs < 5) return "just now";
    if (secs < 60) return secs + " s ago";
    if (secs < 3600) return Math.floor(secs / 60) + " min ago";
    if (secs < 86400) return Math.floor(secs / 3600) + " h ago";
    if (secs <= 2592000) return Math.floor(secs / 86400) + " d ago";
    return date.toISOString().slice(0, 10);
  }

  function duration(ms) {
    ms = Math.max(0, Math.round(ms));
    if (ms < 1000) return ms + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
    const secs = Math.floor(ms / 1000);
    if (secs < 3600) return Math.floor(secs / 60) + " min " + (secs % 60) + " s";
    return Math.floor(secs / 3600) + " h " + Math.floor((secs % 3600) / 60) + " min";
  }

  function span(start, end) {
    if (!start) return "";
    const from = Date.parse(start);
    const to = end ? Date.parse(end) : Date.now();
    return duration(to - from);
  }

  function bytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KiB";
    return (n / (1024 * 1024)).toFixed(1) + " MiB";
  }

  function isoTitle(iso) {
    const d = new Date(iso);
    return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  // ---------------------------------------------------------------- DOM helpers

  // h("span", {class: "x"}, "text", otherNode): children are text or nodes.
  function h(tag, attrs) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const name of Object.keys(attrs)) {
        const value = attrs[name];
        if (value === null || value === undefined || value === false) continue;
        el.setAttribute(name, value === true ? "" : String(value));
      }
    }
    for (let i = 2; i < arguments.length; i++) {
      const child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      el.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return el;
  }

  function badge(state, extra) {
    return h("span", Object.assign({ class: "badge s-" + state }, extra || {}), state);
  }

  function when(iso, none) {
    if (!iso) return h("span", { class: "muted" }, none);
    return h("time", { datetime: iso, title: isoTitle(iso), "data-rel": "" }, ago(new Date(iso), Date.now()));
  }

  function replaceChildren(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    for (let i = 1; i < arguments.length; i++) el.appendChild(arguments[i]);
  }

  // ---------------------------------------------------------------- every page

  function refreshTimes() {
    const now = Date.now();
    document.querySelectorAll("time[data-rel]").forEach(function (el) {
      const t = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(t)) el.textContent = ago(new Date(t), now);
    });
  }

  function tickDurations() {
    document.querySelectorAll("[data-since]").forEach(function (el) {
      el.textContent = span(el.getAttribute("data-since"), null);
    });
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    const question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // The deployment form: image fields only for docker-image.
  function deploymentForm() {
    const type = document.getElementById("dep-type");
    const image = document.getElementById("image-fields");
    if (!type || !image) return;
    const sync = function () { image.hidden = type.value === "command"; };
    type.addEventListener("change", sync);
    sync();
  }

  // ---------------------------------------------------------------- release page

  const TERMINAL = ["succeeded", "failed", "cancelled"];

  function bannerFor(r) {
    const done = r.batches.filter(function (b) { return TERMINAL.indexOf(b.state) >= 0; }).length;
    switch (r.state) {
      case "pending": return ["Waiting to start.", "info"];
      case "running": return ["Publishing batch " + Math.min(done + 1, r.batch_count) + " of " + r.batch_count + ".", "info"];
      case "paused": return ["Paused after batch " + done + " of " + r.batch_count +
        ". Check the instances below, then continue to publish batch " + (done + 1) + ".", "warn"];
      case "succeeded": return ["Succeeded: " + r.app + "/" + r.group + " runs " + r.deployment + ".", "ok"];
      case "failed": return ["Failed: " + (r.message || "the release failed"), "error"];
      case "cancelled": return ["Cancelled: " + (r.message || "cancelled by an operator"), "muted"];
      default: return ["", "info"];
    }
  }

  function stepTitle(s) {
    let title = s.name + ": " + s.state;
    if (s.exit_code !== null && s.exit_code !== undefined) title += ", exit " + s.exit_code;
    if (s.message) title += " — " + s.message;
    return title;
  }

  function logHead(l) {
    return h("div", { class: "log-head" },
      h("span", { class: "log-step" }, l.step), " ",
      badge(l.state),
      (l.exit_code !== null && l.exit_code !== undefined) ? h("span", { class: "muted" }, " exit " + l.exit_code) : null,
      l.dropped_bytes > 0 ? h("span", { class: "muted" }, " · " + bytes(l.dropped_bytes) + " dropped") : null,
      l.output === "" ? h("span", { class: "muted" }, " · no output") : null,
      l.message ? h("span", { class: "log-msg" }, " " + l.message) : null);
  }

  function logBlock(l) {
    return h("div", { class: l.output === "" ? "log quiet" : "log", "data-step": l.step },
      logHead(l), h("pre", { class: "log-body", hidden: l.output === "" }, l.output));
  }

  function follow(root) {
    const logs = new Map();      // "instance/step" -> StepLog
    const open = new Set();      // instance ids whose logs are open
    const liveStatus = document.getElementById("live-status");

    function setLive(text, cls) {
      if (!liveStatus) return;
      liveStatus.hidden = false;
      liveStatus.textContent = text;
      liveStatus.className = "live-status " + cls;
    }

    function instanceLogs(iid) {
      const list = [];
      logs.forEach(function (l) { if (l.instance_id === iid) list.push(l); });
      return list;
    }

    function renderInstance(i) {
      const steps = i.steps.length
        ? i.steps.map(function (s) {
            return h("li", { class: "step s-" + s.state, "data-step": s.name, title: stepTitle(s) },
              h("span", { class: "dot" }), s.name,
              h("span", { class: "dur", "data-since": s.finished_at ? null : s.started_at }, span(s.started_at, s.finished_at)));
          })
        : [h("li", { class: "step s-waiting" }, h("span", { class: "dot" }), i.state === "cancelled" ? "did not run" : "waiting")];
      const ol = h("ol", { class: "steps" });
      steps.forEach(function (s) { ol.appendChild(s); });
      const running = i.started_at && !i.finished_at;
      const el = h("div", { class: "inst", "data-instance": i.id },
        h("div", { class: "inst-row" },
          h("a", { class: "inst-name", href: "/instances/" + encodeURIComponent(i.id) }, i.name),
          badge(i.state, { "data-role": "instance-state" }),
          ol,
          h("span", { class: "inst-dur", "data-since": running ? i.started_at : null }, span(i.started_at, i.finished_at))),
        i.message ? h("div", { class: "inst-msg" }, i.message) : null);
      // Logs in the order the steps ran.
      const byStep = instanceLogs(i.id);
      const order = i.steps.map(function (s) { return s.name; });
      byStep.sort(function (a, b) { return order.indexOf(a.step) - order.indexOf(b.step); });
      if (byStep.length) {
        const details = h("details", { class: "logs", "data-key": i.id, open: open.has(i.id) },
          h("summary", null, "Logs ", h("span", { class: "muted" }, "(" + byStep.length + " steps)")));
        byStep.forEach(function (l) { details.appendChild(logBlock(l)); });
        el.appendChild(details);
      }
      return el;
    }

    function renderBatches(r) {
      const container = document.getElementById("batches");
      // Keep what the reader opened and where each log was scrolled to.
      container.querySelectorAll("details.logs").forEach(function (d) {
        if (d.open) open.add(d.getAttribute("data-key")); else open.delete(d.getAttribute("data-key"));
      });
      const scroll = new Map();
      container.querySelectorAll(".inst").forEach(function (inst) {
        inst.querySelectorAll(".log").forEach(function (log) {
          const pre = log.querySelector("pre");
          const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          scroll.set(inst.getAttribute("data-instance") + "/" + log.getAttribute("data-step"), atEnd ? -1 : pre.scrollTop);
        });
      });
      const fragment = document.createDocumentFragment();
      r.batches.forEach(function (b) {
        const section = h("section", { class: "card batch", "data-batch": b.number },
          h("header", { class: "batch-head" },
            h("h2", null, "Batch " + b.number), " ",
            badge(b.state, { "data-role": "batch-state" }), " ",
            h("span", { class: "muted" }, b.instances.length + " instance(s)")));
        b.instances.forEach(function (i) { section.appendChild(renderInstance(i)); });
        fragment.appendChild(section);
      });
      replaceChildren(container, fragment);
      container.querySelectorAll(".inst").forEach(function (inst) {
        inst.querySelectorAll(".log").forEach(function (log) {
          const pre = log.querySelector("pre");
          const top = scroll.get(inst.getAttribute("data-instance") + "/" + log.getAttribute("data-step"));
          pre.scrollTop = (top === undefined || top === -1) ? pre.scrollHeight : top;
        });
      });
    }

    function renderProgress(r) {
      const c = r.counts;
      const total = Math.max(c.total, 1);
      let x = 0;
      ["succeeded", "failed", "running", "cancelled"].forEach(function (k) {
        const width = c[k] * 100 / total;
        root.querySelectorAll('#release-progress rect[data-seg="' + k + '"]').forEach(function (rect) {
          rect.setAttribute("x", x.toFixed(2));
          rect.setAttribute("width", width.toFixed(2));
        });
        x += width;
      });
      const svg = root.querySelector("#release-progress svg");
      if (svg) svg.setAttribute("aria-label", (c.succeeded + c.failed + c.cancelled) + "/" + c.total + " done");
      root.querySelectorAll("[data-count]").forEach(function (el) {
        el.textContent = String(c[el.getAttribute("data-count")]);
      });
    }

    function renderRelease(r) {
      const terminal = TERMINAL.indexOf(r.state) >= 0;
      root.setAttribute("data-state", r.state);
      const state = document.getElementById("release-state");
      state.className = "badge big s-" + r.state;
      state.textContent = r.state;
      const banner = bannerFor(r);
      const bannerEl = document.getElementById("release-banner");
      bannerEl.textContent = banner[0];
      bannerEl.className = "banner " + banner[1];
      bannerEl.hidden = banner[0] === "";
      renderProgress(r);
      replaceChildren(document.getElementById("f-started"), when(r.started_at, "not yet"));
      replaceChildren(document.getElementById("f-finished"), when(r.finished_at, "not yet"));
      const dur = document.getElementById("f-duration");
      if (r.started_at && !r.finished_at) dur.setAttribute("data-since", r.started_at);
      else dur.removeAttribute("data-since");
      dur.textContent = r.started_at ? span(r.started_at, r.finished_at) : "–";
      document.getElementById("f-rolled-back-by-row").hidden = !r.rolled_back_by;
      if (r.rolled_back_by) {
        const by = document.getElementById("f-rolled-back-by");
        by.textContent = r.rolled_back_by;
        by.setAttribute("href", "/releases/" + encodeURIComponent(r.rolled_back_by));
      }
      document.getElementById("f-message-row").hidden = !r.message;
      document.getElementById("f-message").textContent = r.message || "";
      document.getElementById("act-continue").hidden = r.state !== "paused";
      document.getElementById("act-cancel").hidden = terminal;
      const rollbackPossible = r.state === "succeeded"
        ? root.getAttribute("data-rollback-after-success") === "1"
        : root.getAttribute("data-rollback-otherwise") === "1";
      document.getElementById("act-rollback").hidden = !(terminal && rollbackPossible);
      renderBatches(r);
    }

    function updateLog(l) {
      const key = l.instance_id + "/" + l.step;
      logs.set(key, l);
      const inst = root.querySelector('.inst[data-instance="' + CSS.escape(l.instance_id) + '"]');
      if (!inst) return;
      const block = inst.querySelector('.log[data-step="' + CSS.escape(l.step) + '"]');
      if (!block) return; // a new step: the release event that follows draws it
      const pre = block.querySelector("pre");
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      replaceChildren(block, logHead(l), pre);
      block.className = l.output === "" ? "log quiet" : "log";
      pre.hidden = l.output === "";
      pre.textContent = l.output;
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    }

    const source = new EventSource(root.getAttribute("data-live"));
    source.addEventListener("open", function () { setLive("live", "on"); });
    source.addEventListener("error", function () {
      if (source.readyState !== EventSource.CLOSED) setLive("reconnecting…", "off");
    });
    source.addEventListener("log", function (e) { updateLog(JSON.parse(e.data)); });
    source.addEventListener("release", function (e) { renderRelease(JSON.parse(e.data)); });
    source.addEventListener("end", function () {
      source.close();
      setLive("finished", "");
    });
    // A page the browser restores from its cache must not keep a dead stream.
    window.addEventListener("pagehide", function () { source.close(); });
  }

  function start() {
    refreshTimes();
    setInterval(refreshTimes, 10000);
    setInterval(tickDurations, 1000);
    deploymentForm();
    const release = document.getElementById("release");
    if (release && release.getAttribute("data-live") && "EventSource" in window) follow(release);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
