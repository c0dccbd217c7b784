/* Live updates for the admin and the dashboard over /ws/live/ (docs/live.md): the socket,
 * its subscriptions and reconnection, and which page updater a message goes to (the updaters
 * are live_page.js, loaded before this file).
 *
 * The page declares what it watches: elements with data-live-subscribe (a JSON list
 * of subscriptions), data-live-jobs-on-page (watch every [data-live-job] row shown),
 * data-live-job-detail + data-live-timeline-url (re-fetch a job's timeline when it
 * moves), data-live-refresh-url (re-fetch a panel on failures) and data-live-region
 * (a server-rendered part re-fetched when a message says what it shows moved; see
 * regionWants). Times are <time data-when> elements shown relative, in the reader's
 * zone, with the absolute time on hover. Messages are
 * snapshots: the page applies the newest per entity and ignores older ones. On every
 * (re)connection the subscriptions are sent again and the server answers each with a
 * fresh snapshot, so a page that lost its socket resynchronises by itself.
 */
(function () {
  "use strict";

  const page = window.orchestrationLivePage;
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
      // Rows show statuses: their jobs' step and run messages would only cost frames.
      out.push({ subscribe: "jobs", ids: fresh.slice(i, i + 200), statuses_only: true });
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

  // A snapshot that moves a job (its message was left out before the server knew this page
  // watched it, or lost with a connection) re-renders the parts that show it, as that
  // message would have.
  function noteIfMoved(j) {
    const shown = document.querySelector('[data-live-job="' + j.job_id + '"]');
    if (shown && shown.textContent !== j.status) {
      page.noteRegions({ type: "job_status", job_id: j.job_id, status: j.status,
                         data: { from: shown.textContent } });
    }
  }

  function dispatch(m) {
    page.noteRegions(m);
    switch (m.type) {
      case "snapshot":
        if (m.of === "overview") { m.batches.forEach(page.applyBatch); }
        if (m.of === "batch") { state.lastSeen.delete("batch_progress" + m.batch_id); page.applyBatch(m); }
        if (m.of === "job") { state.lastSeen.delete("j" + m.job_id); noteIfMoved(m); page.applyJob(m); m.tasks.forEach(page.applyTask); }
        if (m.of === "jobs") { m.jobs.forEach(function (j) { state.lastSeen.delete("j" + j.job_id); noteIfMoved(j); page.applyJob(j); }); }
        break;
      case "batch_progress":
      case "complete":
        if (!isStale(m.type + m.batch_id, m.timestamp)) { page.applyBatch(m); }
        break;
      case "job_status":
        if (!isStale("j" + m.job_id, m.timestamp)) { page.applyJob(m); }
        // A new failure re-renders failure lists; a retried row stays and its badge moves.
        if (m.status === "failed") { page.refreshPanels(); }
        break;
      case "task_progress":
        if (!isStale("t" + m.task_id, m.timestamp)) { page.applyTask(m); }
        break;
      case "run_failed":
        page.refreshPanels();
        break;
      default:
        break;
    }
    if (m.job_id) { page.refreshTimeline(m.job_id); }
  }

  // Re-rendered parts may show jobs not watched yet.
  document.addEventListener("live:rendered", watchNewJobs);

  function start() {
    connect();
    page.start();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
