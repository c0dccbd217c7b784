/* Live updates for the admin and the dashboard over /ws/live/ (docs/live.md).
 *
 * The page declares what it watches: elements with data-live-subscribe (a JSON list
 * of subscriptions), data-live-jobs-on-page (watch every [data-live-job] row shown),
 * data-live-job-detail + data-live-timeline-url (re-fetch a job's timeline when it
 * moves) and data-live-refresh-url (re-fetch a panel on failures). Messages are
 * snapshots: the page applies the newest per entity and ignores older ones. On every
 * (re)connection the subscriptions are sent again and the server answers each with a
 * fresh snapshot, so a page that lost its socket resynchronises by itself.
 */
(function () {
  "use strict";

  const CLOSE_FORBIDDEN = 4403;
  const state = { socket: null, retryMs: 500, stopped: false, lastSeen: new Map(), jobs: new Set() };
  const stats = { connections: 0, messages: 0, byType: {}, last: null };
  window.orchestrationLive = stats;

  function subscriptions() {
    const wanted = [];
    document.querySelectorAll("[data-live-subscribe]").forEach(function (el) {
      try {
        JSON.parse(el.dataset.liveSubscribe || "[]").forEach(function (s) { wanted.push(s); });
      } catch (err) { console.warn("bad data-live-subscribe", err); }
    });
    state.jobs = new Set();
    return wanted.concat(jobSubscriptions());
  }

  // The jobs shown on the page that are not watched yet (rows, panels re-fetched since).
  function jobSubscriptions() {
    if (!document.querySelector("[data-live-jobs-on-page]")) { return []; }
    const fresh = [];
    document.querySelectorAll("[data-live-job]").forEach(function (el) {
      const id = parseInt(el.dataset.liveJob, 10);
      if (id > 0 && !state.jobs.has(id)) { state.jobs.add(id); fresh.push(id); }
    });
    const out = [];
    for (let i = 0; i < fresh.length; i += 200) {
      out.push({ subscribe: "jobs", ids: fresh.slice(i, i + 200) });
    }
    return out;
  }

  function watchNewJobs() {
    const socket = state.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) { return; }
    jobSubscriptions().forEach(function (s) { socket.send(JSON.stringify(s)); });
  }

  function setStatus(text, cls) {
    document.querySelectorAll("[data-live-status]").forEach(function (el) {
      el.textContent = text;
      el.className = "live-status " + (cls || "");
    });
  }

  function connect() {
    const wanted = subscriptions();
    if (!wanted.length || state.stopped) { return; }
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + window.location.host + "/ws/live/");
    state.socket = socket;
    socket.onopen = function () {
      stats.connections += 1;
      state.retryMs = 500;
      setStatus("● live", "live-on");
      subscriptions().forEach(function (s) { socket.send(JSON.stringify(s)); });
    };
    socket.onmessage = function (event) {
      let message;
      try { message = JSON.parse(event.data); } catch (err) { return; }
      stats.messages += 1;
      stats.byType[message.type] = (stats.byType[message.type] || 0) + 1;
      stats.last = message;
      dispatch(message);
    };
    socket.onclose = function (event) {
      state.socket = null;
      if (event.code === CLOSE_FORBIDDEN) {
        state.stopped = true;
        setStatus("live updates not allowed for this user", "live-off");
        return;
      }
      setStatus("reconnecting…", "live-off");
      window.setTimeout(connect, state.retryMs);
      state.retryMs = Math.min(state.retryMs * 2, 10000);
    };
  }

  // Older than what this page already applied for the same entity? (Snapshots reset it.)
  function isStale(key, timestamp) {
    if (!key || !timestamp) { return false; }
    const seen = state.lastSeen.get(key);
    if (seen && timestamp <= seen) { return true; }
    state.lastSeen.set(key, timestamp);
    return false;
  }

  function dispatch(m) {
    switch (m.type) {
      case "snapshot":
        if (m.of === "overview") { m.batches.forEach(applyBatch); }
        if (m.of === "batch") { state.lastSeen.delete("batch_progress" + m.batch_id); applyBatch(m); }
        if (m.of === "job") { state.lastSeen.delete("j" + m.job_id); applyJob(m); m.tasks.forEach(applyTask); }
        if (m.of === "jobs") { m.jobs.forEach(function (j) { state.lastSeen.delete("j" + j.job_id); applyJob(j); }); }
        break;
      case "batch_progress":
      case "complete":
        if (!isStale(m.type + m.batch_id, m.timestamp)) { applyBatch(m); }
        break;
      case "job_status":
        if (!isStale("j" + m.job_id, m.timestamp)) { applyJob(m); }
        // A new failure re-renders failure lists; a retried row stays and its badge moves.
        if (m.status === "failed") { refreshPanels(); }
        break;
      case "task_progress":
        if (!isStale("t" + m.task_id, m.timestamp)) { applyTask(m); }
        break;
      case "run_failed":
        refreshPanels();
        break;
      default:
        break;
    }
    if (m.job_id) { refreshTimeline(m.job_id); }
  }

  function applyBatch(m) {
    const progress = m.progress || {};
    document.querySelectorAll('[data-live-batch="' + m.batch_id + '"]').forEach(function (el) {
      const bar = el.querySelector(".live-bar");
      const label = el.querySelector(".live-label");
      if (bar) { bar.style.width = (progress.percent || 0) + "%"; }
      if (label) {
        label.textContent = (progress.percent || 0) + "% (" + (progress.done || 0) + "/" + (progress.total || 0) + ")";
      }
      el.dataset.status = m.status;
      el.dataset.percent = progress.percent || 0;
    });
    document.querySelectorAll('[data-live-batch-status="' + m.batch_id + '"]').forEach(function (el) {
      el.textContent = m.status;
      el.className = "live-badge status-" + m.status;
    });
    document.querySelectorAll('[data-live-batch-counts="' + m.batch_id + '"] [data-count]').forEach(function (el) {
      const value = progress[el.dataset.count];
      if (value !== undefined) { el.textContent = value; }
    });
  }

  function applyJob(m) {
    document.querySelectorAll('[data-live-job="' + m.job_id + '"]').forEach(function (el) {
      el.textContent = m.status;
      el.className = "live-badge status-" + m.status;
    });
    document.querySelectorAll('[data-live-job-error="' + m.job_id + '"]').forEach(function (el) {
      el.textContent = m.error || "";
    });
  }

  function applyTask(m) {
    document.querySelectorAll('[data-live-task="' + m.task_id + '"]').forEach(function (el) {
      el.textContent = m.status;
      el.className = "live-badge status-" + m.status;
    });
  }

  // Re-fetch server-rendered fragments, at most every 300 ms each.
  const pending = new Map();
  function refetch(el, url) {
    if (!url || pending.has(el)) { return; }
    pending.set(el, window.setTimeout(function () {
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) { el.innerHTML = html; watchNewJobs(); } })
        .finally(function () { pending.delete(el); });
    }, 300));
  }

  function refreshTimeline(jobId) {
    document.querySelectorAll('[data-live-job-detail="' + jobId + '"]').forEach(function (root) {
      const target = root.querySelector("[data-live-timeline]");
      if (target) { refetch(target, root.dataset.liveTimelineUrl); }
    });
  }

  function refreshPanels() {
    document.querySelectorAll("[data-live-refresh-url]").forEach(function (el) {
      refetch(el, el.dataset.liveRefreshUrl);
    });
  }

  // Buttons marked data-live-post submit without leaving the page; the badge then moves live.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!form.matches || !form.matches("form[data-live-post]")) { return; }
    event.preventDefault();
    const button = form.querySelector("button");
    if (button) { button.disabled = true; }
    fetch(form.action, {
      method: "POST", body: new FormData(form), credentials: "same-origin",
      headers: { "X-Requested-With": "fetch" },
    }).then(function (r) { return r.json(); }).then(function (answer) {
      const note = form.querySelector("[data-live-note]");
      if (note) { note.textContent = answer.message || ""; }
      if (answer.ok && answer.job_id) { applyJob({ job_id: answer.job_id, status: answer.status }); }
    }).catch(function () {
      if (button) { button.disabled = false; }
    });
  });

  // Panels that are not driven by messages (queue depth, charts) are re-fetched periodically.
  function startPolling() {
    document.querySelectorAll("[data-live-poll-url]").forEach(function (el) {
      const seconds = parseFloat(el.dataset.livePollSeconds || "10");
      window.setInterval(function () { refetch(el, el.dataset.livePollUrl); }, seconds * 1000);
    });
  }

  function start() { connect(); startPolling(); }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
