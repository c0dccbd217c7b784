/* The admin's "Import products" page: upload a file in parts through /api/uploads with the
 * staff session (CSRF header), resume after a reload or a dropped connection, then follow
 * the import job. No inline script: everything it needs comes from data- attributes.
 *
 * Resume: the upload id is kept in localStorage under the file's name, size and date; picking
 * the same file again asks the server which parts it has and sends only the others. A part
 * that fails (network error, 5xx, 429) is retried with backoff.
 */
(function () {
  "use strict";

  // --- SHA-256, incremental (the whole file is hashed without holding it in memory;
  // WebCrypto has no streaming digest). Also the fallback when crypto.subtle is absent.
  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);

  function Sha256() {
    this.h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                              0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
    this.w = new Uint32Array(64);
    this.block = new Uint8Array(64);
    this.used = 0;
    this.total = 0;
  }

  Sha256.prototype.compress = function (bytes, at) {
    const w = this.w, h = this.h;
    for (let i = 0; i < 16; i++) {
      const j = at + i * 4;
      w[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15], b = w[i - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (k + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
  };

  Sha256.prototype.update = function (bytes) {
    let i = 0;
    this.total += bytes.length;
    if (this.used) {
      while (i < bytes.length && this.used < 64) { this.block[this.used++] = bytes[i++]; }
      if (this.used < 64) { return; }
      this.compress(this.block, 0);
      this.used = 0;
    }
    for (; i + 64 <= bytes.length; i += 64) { this.compress(bytes, i); }
    while (i < bytes.length) { this.block[this.used++] = bytes[i++]; }
  };

  Sha256.prototype.hex = function () {
    const bits = this.total * 8;
    const pad = new Uint8Array(((this.used < 56) ? 56 : 120) - this.used + 8);
    pad[0] = 0x80;
    const n = pad.length;
    const high = Math.floor(bits / 0x100000000), low = bits >>> 0;
    pad[n - 8] = high >>> 24; pad[n - 7] = high >>> 16; pad[n - 6] = high >>> 8; pad[n - 5] = high;
    pad[n - 4] = low >>> 24; pad[n - 3] = low >>> 16; pad[n - 2] = low >>> 8; pad[n - 1] = low;
    this.total -= n;  // padding is not message length
    this.update(pad);
    return Array.from(this.h, function (x) { return (x >>> 0).toString(16).padStart(8, "0"); }).join("");
  };

  function hex(buffer) {
    return Array.from(new Uint8Array(buffer), function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  async function partSha256(buffer) {
    if (window.crypto && window.crypto.subtle) {
      return hex(await window.crypto.subtle.digest("SHA-256", buffer));
    }
    const s = new Sha256();
    s.update(new Uint8Array(buffer));
    return s.hex();
  }

  async function fileSha256(file, onProgress) {
    const s = new Sha256();
    const step = 4 * 1024 * 1024;
    for (let at = 0; at < file.size; at += step) {
      s.update(new Uint8Array(await file.slice(at, at + step).arrayBuffer()));
      onProgress(Math.min(at + step, file.size));
    }
    return s.hex();
  }

  // --- the page ----------------------------------------------------------------------
  const app = document.getElementById("import-app");
  if (!app) { return; }
  const api = app.dataset.api;
  const csrf = app.dataset.csrf;
  const el = function (id) { return document.getElementById(id); };
  const STORE = "upload:" + location.host + ":";
  const TERMINAL = ["completed", "failed", "cancelled", "skipped"];

  function Fatal(message) { this.message = message; }

  function say(text, isError) {
    el("import-status").textContent = text;
    el("import-status").classList.toggle("error", !!isError);
  }

  function showBytes(done, total) {
    const percent = total ? Math.floor((100 * done) / total) : 100;
    el("import-progress").hidden = false;
    el("import-bar").value = percent;
    el("import-percent").textContent = percent + "%";
  }

  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  async function call(method, url, body, headers) {
    const response = await fetch(url, {
      method: method, body: body, credentials: "same-origin",
      headers: Object.assign({ "X-CSRFToken": csrf, "Accept": "application/json" }, headers || {}),
    });
    let data = null;
    try { data = await response.json(); } catch (err) { data = null; }
    return { response: response, data: data };
  }

  function problem(result, what) {
    const d = result.data || {};
    return what + ": " + (d.message || ("HTTP " + result.response.status)) +
      (d.request_id ? " (request " + d.request_id + ")" : "");
  }

  function storeKey(file) { return STORE + file.name + ":" + file.size + ":" + file.lastModified; }

  async function findOrCreate(file) {
    const key = storeKey(file);
    const saved = localStorage.getItem(key);
    if (saved) {
      const found = await call("GET", api + "/" + saved);
      if (found.response.ok && ["receiving", "completed"].includes(found.data.state)) {
        say("Resuming: the server has " + found.data.parts_received.length + " of " +
            found.data.parts + " parts.");
        return found.data;
      }
      localStorage.removeItem(key);
    }
    say("Computing the file's checksum…");
    const sum = await fileSha256(file, function (done) { showBytes(done, file.size); });
    const created = await call("POST", api, JSON.stringify({ filename: file.name, size: file.size, sha256: sum }),
                               { "Content-Type": "application/json" });
    if (!created.response.ok) { throw new Fatal(problem(created, "Could not start the upload")); }
    localStorage.setItem(key, created.data.upload_id);
    return created.data;
  }

  async function putPart(upload, n, blob) {
    const buffer = await blob.arrayBuffer();
    const sum = await partSha256(buffer);
    const url = api + "/" + upload.upload_id + "/parts/" + n;
    for (let attempt = 1; ; attempt++) {
      let result = null;
      try {
        result = await call("PUT", url, buffer, { "Content-Type": "application/octet-stream", "X-Part-SHA256": sum });
      } catch (err) {
        result = null;  // network error: the connection dropped
      }
      if (result && result.response.ok) { return; }
      if (result && result.response.status < 500 && result.response.status !== 429) {
        throw new Fatal(problem(result, "Part " + n + " was refused"));
      }
      if (attempt >= 8) { throw new Fatal("Part " + n + " failed " + attempt + " times; pick the file again to resume."); }
      say("Part " + n + " failed (" + (result ? "HTTP " + result.response.status : "connection lost") +
          "); retrying…", true);
      await sleep(Math.min(500 * Math.pow(2, attempt - 1), 8000));
    }
  }

  async function follow(uploadId) {
    for (;;) {
      const got = await call("GET", api + "/" + uploadId);
      if (got.response.ok && got.data.import_job_id) {
        const job = got.data.import_job_id;
        el("import-job").hidden = false;
        el("import-job-link").href = app.dataset.jobUrlZero.replace("/0/", "/" + job + "/");
        el("import-job-link").textContent = "job " + job;
        el("import-job-status").textContent = got.data.import_status;
        el("import-job-status").className = "live-badge status-" + got.data.import_status;
        if (TERMINAL.includes(got.data.import_status)) { return report(uploadId, got.data); }
      }
      await sleep(1000);
    }
  }

  async function report(uploadId, upload) {
    const got = await call("GET", api + "/" + uploadId + "/report");
    if (!got.response.ok) { say(problem(got, "No report"), true); return; }
    const r = got.data;
    el("import-report").hidden = false;
    el("report-read").textContent = r.rows_read === null ? "—" : r.rows_read;
    el("report-imported").textContent = (r.created === null) ? "—" :
      (r.created + r.updated + r.unchanged) + " (" + r.created + " / " + r.updated + " / " + r.unchanged + ")";
    el("report-rejected").textContent = r.rejected === null ? "—" : r.rejected;
    if (r.rejected) {
      el("import-report-link").hidden = false;
      el("import-report-link").href = app.dataset.reportUrlZero.replace("00000000-0000-0000-0000-000000000000", uploadId);
    }
    if (r.publish_batch_id) {
      el("import-batch-link").hidden = false;
      el("import-batch-link").href = app.dataset.jobUrlZero
        .replace("marketplacejob/0/", "batch/" + r.publish_batch_id + "/");
      el("import-batch-link").textContent = "Publish batch " + r.publish_batch_id + " (" + r.publish_jobs + " jobs)";
    }
    say(upload.import_status === "completed" ? "Import finished." :
        "Import " + upload.import_status + (r.import_error ? ": " + r.import_error : "."), upload.import_status !== "completed");
  }

  async function run(file, marketplaces) {
    const upload = await findOrCreate(file);
    const have = new Set(upload.parts_received);
    let done = 0;
    for (let n = 1; n <= upload.parts; n++) {
      if (have.has(n)) { done += Math.min(upload.part_size, file.size - (n - 1) * upload.part_size); }
    }
    showBytes(done, file.size);
    if (upload.state === "receiving") {
      for (let n = 1; n <= upload.parts; n++) {
        if (have.has(n)) { continue; }
        const start = (n - 1) * upload.part_size;
        const blob = file.slice(start, Math.min(start + upload.part_size, file.size));
        say("Sending part " + n + " of " + upload.parts + "…");
        await putPart(upload, n, blob);
        done += blob.size;
        showBytes(done, file.size);
      }
    }
    say("Verifying the file…");
    const completed = await call("POST", api + "/" + upload.upload_id + "/complete",
      JSON.stringify({ start_import: true, marketplaces: marketplaces }), { "Content-Type": "application/json" });
    if (!completed.response.ok) {
      if (completed.response.status === 422) { localStorage.removeItem(storeKey(file)); }
      throw new Fatal(problem(completed, "The upload could not be completed"));
    }
    localStorage.removeItem(storeKey(file));
    say("Uploaded. Importing…");
    await follow(upload.upload_id);
  }

  const pending = Object.keys(localStorage).filter(function (k) { return k.indexOf(STORE) === 0; });
  if (pending.length) {
    const name = pending[0].slice(STORE.length).split(":").slice(0, -2).join(":");
    el("import-resume").hidden = false;
    el("import-resume").textContent = "An upload of " + name +
      " was interrupted: pick the same file again to resume it.";
  }

  el("import-form").addEventListener("submit", function (event) {
    event.preventDefault();
    const file = el("import-file").files[0];
    if (!file) { say("Pick a file first.", true); return; }
    const marketplaces = Array.from(document.querySelectorAll("input[name=marketplace]:checked"),
                                    function (box) { return box.value; });
    el("import-start").disabled = true;
    run(file, marketplaces).catch(function (err) {
      say(err instanceof Fatal ? err.message : "Unexpected error: " + err, true);
    }).finally(function () { el("import-start").disabled = false; });
  });
  el("import-start").disabled = false;  // ready: the form is handled here from now on
})();
