/* Page updaters for the live pages (docs/live.md); live.js owns the socket and calls these.
 *
 * What a message changes on the page: badges, bars and counters (applyBatch, applyJob,
 * applyTask); server-rendered parts re-fetched when what they show moved (data-live-region,
 * see regionWants; data-live-refresh-url; a job's timeline); <time data-when> elements shown
 * relative in the reader's zone with the absolute time on hover; "your cancel came too
 * late"; forms marked data-live-post; panels polled on a timer (data-live-poll-url).
 * After new HTML lands, "live:rendered" is dispatched on document (live.js then watches the
 * jobs it shows).
 */
(function () {
  "use strict";

  function rendered() { document.dispatchEvent(new Event("live:rendered")); }

  // A cell a message changed here is replaced at the next re-render even when the server
  // renders it as it did before (that message may have been superseded by one lost since).
  const served = new WeakMap();  // a list cell -> the server's HTML it was given
  function changedHere(el, moved) {
    const cell = moved && el.closest("td, th");
    if (cell) { served.delete(cell); }
  }

  function setBadge(el, status) {
    changedHere(el, el.textContent !== status);
    el.textContent = status;
    el.className = "live-badge status-" + status;
  }

  function applyBatch(m) {
    const progress = m.progress || {};
    document.querySelectorAll('[data-live-batch="' + m.batch_id + '"]').forEach(function (el) {
      const bar = el.querySelector(".live-bar");
      const label = el.querySelector(".live-label");
      const text = (progress.percent || 0) + "% (" + (progress.done || 0) + "/" + (progress.total || 0) + ")";
      changedHere(el, el.dataset.status !== m.status || (label && label.textContent !== text));
      if (bar) { bar.style.width = (progress.percent || 0) + "%"; }
      const retrying = el.querySelector(".live-bar-retrying");
      if (retrying) { retrying.style.left = (progress.percent || 0) + "%"; }
      if (label) { label.textContent = text; }
      el.dataset.status = m.status;
      el.dataset.percent = progress.percent || 0;
    });
    document.querySelectorAll('[data-live-batch-status="' + m.batch_id + '"]').forEach(function (el) {
      setBadge(el, m.status);
    });
    document.querySelectorAll('[data-live-batch-counts="' + m.batch_id + '"] [data-count]').forEach(function (el) {
      const value = progress[el.dataset.count];
      if (value !== undefined) { changedHere(el, el.textContent !== String(value)); el.textContent = value; }
    });
  }

  function applyJob(m) {
    document.querySelectorAll('[data-live-job="' + m.job_id + '"]').forEach(function (el) {
      setBadge(el, m.status);
      // A retried failure that has now completed (or was cancelled) leaves "Recent failures".
      const panel = el.closest("[data-live-drop-resolved]");
      if (panel && (m.status === "completed" || m.status === "cancelled")) {
        window.setTimeout(function () { refetch(panel, panel.dataset.liveRefreshUrl); }, 2500);
      }
    });
    lateCancel(m.job_id, m.status);
    document.querySelectorAll('[data-live-job-error="' + m.job_id + '"]').forEach(function (el) {
      el.textContent = m.error || "";
    });
  }

  function applyTask(m) {
    document.querySelectorAll('[data-live-task="' + m.task_id + '"]').forEach(function (el) {
      setBadge(el, m.status);
    });
  }

  // Re-fetch server-rendered fragments: at most one request in flight per target, the next
  // at least `gap` ms after the previous one started, and one more after a request that was
  // already under way when something moved (its answer may predate the move). A re-render
  // that cost more (the server's render, the transfer, this page's parse and patch) spaces
  // the next one out to COST_SHARE times its cost: re-rendering then takes at most about
  // 1/COST_SHARE of the time, and a busy server or page is asked less, not more (up to
  // MAX_SPACING apart).
  const COST_SHARE = 8;
  const MAX_SPACING = 15000;  // one slow answer delays the next re-render by this at most
  const fetches = new Map();
  function later(key, gap, run) {
    let f = fetches.get(key);
    if (!f) { f = { timer: null, busy: false, dirty: false, last: 0, cost: 0 }; fetches.set(key, f); }
    if (f.busy) { f.dirty = true; return; }
    if (f.timer) { return; }
    const spaced = Math.min(Math.max(gap, COST_SHARE * f.cost), MAX_SPACING);
    const wait = Math.max(150, f.last + spaced - Date.now());
    f.timer = window.setTimeout(function () {
      f.timer = null; f.busy = true; f.last = Date.now();
      const started = performance.now();
      run().finally(function () {
        f.busy = false;
        // (A page in the background, or a computer asleep, says nothing of the cost.)
        if (!document.hidden) { f.cost = performance.now() - started; }
        if (f.dirty) { f.dirty = false; later(key, gap, run); }
      });
    }, wait);
  }

  function getText(url) {
    return fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .catch(function () { return null; });
  }

  // A part re-rendered while a button in it is pressed would replace the button under the
  // pointer: the browser then fires no click and the action is lost. Such a swap waits
  // until the press ends (after the click it completes).
  let pressed = null;
  const held = new Map();  // key -> the re-render to run once the press ends
  document.addEventListener("pointerdown", function (event) { pressed = event.target; }, true);
  function release() {
    pressed = null;
    const runs = Array.from(held.values());
    held.clear();
    runs.forEach(function (run) { run(); });
  }
  function unlessPressed(key, roots, run) {
    if (pressed && roots.some(function (root) { return root.contains(pressed); })) {
      held.set(key, run);  // a newer re-render of the same part replaces an older one
      return;
    }
    run();
  }
  ["pointerup", "pointercancel"].forEach(function (type) {
    document.addEventListener(type, function () { window.setTimeout(release, 0); }, true);
  });
  window.addEventListener("blur", release);  // a press that ends outside the window

  function swap(el, html) {
    unlessPressed(el, [el], function () { el.innerHTML = html; rendered(); showTimes(); });
  }

  function refetch(el, url) {
    if (!url) { return; }
    later(el, 300, function () {
      return getText(url).then(function (html) {
        if (html !== null) { swap(el, html); }
      });
    });
  }

  // --- regions: parts of a page re-rendered by the server when what they show moved ---
  //
  // data-live-region="<name>" data-live-region-url="<url>" (default: this page, the part
  // with the same name is taken from it) data-live-region-on="<what>…":
  //   batch:<id>    any message about that batch or one of its jobs
  //   new-batch     a batch the region does not show yet
  //   batch-status  a batch's status or counters moved
  //   retrying      a job started or stopped backing off
  //   direct        a "run now" reservation was made
  //   jobs          a job the region shows moved
  function regionWants(el, m) {
    const tokens = (el.dataset.liveRegionOn || "").split(/\s+/);
    const isBatch = m.type === "batch_progress" || m.type === "complete";
    const isJob = m.type === "job_status";
    for (let i = 0; i < tokens.length; i += 1) {
      const t = tokens[i];
      if (t.indexOf("batch:") === 0 && String(m.batch_id) === t.slice(6) && m.type !== "snapshot") { return true; }
      if (t === "new-batch" && isBatch && !el.querySelector('[data-live-batch="' + m.batch_id + '"]')) { return true; }
      if (t === "batch-status" && isBatch) { return true; }
      if (t === "retrying" && isJob && (m.status === "retrying" || (m.data && m.data.from === "retrying"))) { return true; }
      if (t === "direct" && isJob && m.data && m.data.direct) { return true; }
      if (t === "jobs" && isJob && el.querySelector('[data-live-job="' + m.job_id + '"]')) { return true; }
    }
    return false;
  }

  function noteRegions(m) {
    document.querySelectorAll("[data-live-region]").forEach(function (el) {
      if (regionWants(el, m)) { refreshRegion(el); }
    });
  }

  function refreshRegion(el) {
    const url = el.dataset.liveRegionUrl || window.location.href;
    later("region " + url, 1000, function () {
      return getText(url).then(function (html) {
        if (html === null) { return; }
        const roots = Array.from(document.querySelectorAll("[data-live-region]"));
        unlessPressed("region " + url, roots, function () { applyRegion(url, el, html); });
      });
    });
  }

  function applyRegion(url, el, html) {
    const own = !el.dataset.liveRegionUrl;
    const doc = own ? new DOMParser().parseFromString(html, "text/html") : null;
    document.querySelectorAll("[data-live-region]").forEach(function (target) {
      if ((target.dataset.liveRegionUrl || window.location.href) !== url) { return; }
      if (!own) { target.innerHTML = html; return; }
      const fresh = doc.querySelector('[data-live-region="' + target.dataset.liveRegion + '"]');
      if (fresh) { patchRegion(target, fresh); }
    });
    if (own) {
      const pager = doc.querySelector(".paginator");
      const mine = document.querySelector(".paginator");
      if (pager && mine) { mine.innerHTML = pager.innerHTML; }
    }
    rendered();
    showTimes();
    syncRetryingSegments();
  }

  // A batch page's bar (kept across re-renders) takes its backing-off share from the summary.
  function syncRetryingSegments() {
    document.querySelectorAll(".batch-summary[data-retry-width]").forEach(function (summary) {
      document.querySelectorAll('[data-live-batch="' + summary.dataset.batch + '"] .live-bar-retrying').forEach(function (seg) {
        seg.style.width = summary.dataset.retryWidth + "%";
      });
    });
  }

  // An admin list: rows are matched by their checkbox (or first link) and their cells
  // replaced, so selections and Django's action handlers survive; new rows are added.
  function rowKey(row) {
    const box = row.querySelector("input.action-select");
    if (box) { return "id:" + box.value; }
    const link = row.querySelector("a");
    return link ? "href:" + link.getAttribute("href") : null;
  }

  function patchRegion(target, fresh) {
    const oldTable = target.querySelector("table#result_list");
    const newTable = fresh.querySelector("table#result_list");
    if (!oldTable || !newTable) { target.innerHTML = fresh.innerHTML; return; }
    const body = oldTable.tBodies[0];
    const existing = new Map();
    Array.from(body.rows).forEach(function (row) { existing.set(rowKey(row), row); });
    const order = [];
    Array.from(newTable.tBodies[0].rows).forEach(function (row) {
      const key = rowKey(row);
      const old = existing.get(key);
      if (old) {
        existing.delete(key);
        Array.from(row.cells).forEach(function (cell, i) {
          const mine = old.cells[i];
          // Only what the server now renders differently: every replaced cell is laid out and
          // painted again.
          if (!mine || mine.querySelector("input.action-select")) { return; }
          if (served.get(mine) !== cell.innerHTML) { mine.innerHTML = cell.innerHTML; }
          served.set(mine, cell.innerHTML);
        });
        order.push(old);
      } else {
        const added = document.importNode(row, true);
        Array.from(added.cells).forEach(function (cell, i) { served.set(cell, row.cells[i].innerHTML); });
        added.classList.add("live-new-row");
        order.push(added);
      }
    });
    existing.forEach(function (row) { row.remove(); });
    order.forEach(function (row, i) {
      if (body.rows[i] !== row) { body.insertBefore(row, body.rows[i] || null); }
    });
  }

  // --- times: one format, relative, in the reader's zone, absolute on hover ---
  const zone = (function () {
    try {
      return new Intl.DateTimeFormat(undefined, { timeZoneName: "short" })
        .formatToParts(new Date()).filter(function (p) { return p.type === "timeZoneName"; })[0].value;
    } catch (err) { return ""; }
  })();
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function clock(d) { return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()); }
  function absoluteTime(d) {
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + clock(d) + (zone ? " " + zone : "");
  }
  function span(seconds) {
    const s = Math.abs(Math.round(seconds));
    if (s < 60) { return s + " s"; }
    if (s < 3600) { return Math.floor(s / 60) + " min " + (s % 60 ? (s % 60) + " s" : ""); }
    if (s < 86400) { return Math.floor(s / 3600) + " h " + (Math.floor(s / 60) % 60 ? (Math.floor(s / 60) % 60) + " min" : ""); }
    return null;
  }
  function showTimes() {
    const now = Date.now();
    document.querySelectorAll("time[data-when]").forEach(function (el) {
      const d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) { return; }
      const abs = absoluteTime(d);
      const seconds = (d.getTime() - now) / 1000;
      const rel = span(seconds);
      let text = abs;
      if (el.dataset.when === "countdown") {
        text = seconds > 0.5 ? "in " + span(seconds).trim() + " (" + clock(d) + ")" : "due now (" + clock(d) + ")";
      } else if (el.dataset.when === "rel" && rel !== null) {
        text = Math.round(seconds) >= 0 && Math.round(seconds) < 1 ? "just now" : (seconds > 0 ? "in " + rel.trim() : rel.trim() + " ago");
      }
      if (el.textContent !== text) { el.textContent = text; }
      if (el.title !== abs) { el.title = abs; }
    });
  }

  // --- a cancel that came too late (the job finished its last step first) ---
  function lateCancel(jobId, status) {
    let key = "lateCancel:" + jobId;
    let asked = false;
    try { asked = window.sessionStorage.getItem(key) === "asked"; } catch (err) { return; }
    if (!asked || !status || status === "running" || status === "queued") { return; }
    if (status === "cancelled") { window.sessionStorage.removeItem(key); return; }
    document.querySelectorAll('[data-live-late-cancel="' + jobId + '"]').forEach(function (el) {
      el.textContent = "Your cancel came too late: the job had started its last step and " + status + " before it could stop.";
      el.hidden = false;
    });
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
      // Forms inside a re-rendered part answer in a place that stays.
      document.querySelectorAll("[data-live-answer]").forEach(function (el) {
        el.textContent = answer.message || "";
        el.hidden = !answer.message;
      });
      if (answer.ok && form.dataset.liveCancel && answer.status === "running") {
        try { window.sessionStorage.setItem("lateCancel:" + answer.job_id, "asked"); } catch (err) { /* private mode */ }
      }
      if (answer.ok && answer.job_id) { applyJob({ job_id: answer.job_id, status: answer.status }); }
      if (answer.job_id) { refreshTimeline(answer.job_id); }
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

  // Once the page is parsed (live.js calls it right after starting its socket).
  function start() {
    startPolling();
    // What the server rendered, before times are shown in the reader's zone: a re-render
    // then replaces only the cells the server renders differently.
    document.querySelectorAll("[data-live-region] table#result_list tbody tr").forEach(function (row) {
      Array.from(row.cells).forEach(function (cell) { served.set(cell, cell.innerHTML); });
    });
    showTimes();
    window.setInterval(showTimes, 1000);
    document.querySelectorAll("[data-live-late-cancel]").forEach(function (el) {
      const status = document.querySelector('[data-live-job="' + el.dataset.liveLateCancel + '"]');
      if (status) { lateCancel(el.dataset.liveLateCancel, status.textContent.trim()); }
    });
  }

  window.orchestrationLivePage = {
    applyBatch: applyBatch,
    applyJob: applyJob,
    applyTask: applyTask,
    noteRegions: noteRegions,
    refreshPanels: refreshPanels,
    refreshTimeline: refreshTimeline,
    start: start,
  };
})();
