// Evidence from the phone: a photo, video or sound recording taken with the phone's own
// camera app (<input capture>), bound to a case number, hashed here (SHA-256, before it
// leaves the phone), kept in IndexedDB and uploaded with a progress bar. Nothing is lost to a
// dead network or a closed page: an item stays queued until the server has it, is retried
// when the network returns (and every RETRY_MS), and is shown with its state and hash.
// The server's answer is final for a refused upload (a bad case number): shown, not retried.
"use strict";

(() => {
  const DB = "cc-evidence";
  const STORE = "queue";
  const RETRY_MS = 15000;
  const DEVICE_KEY = "cc.device";
  const CASE_KEY = "cc.case";
  let db = null;
  let running = false;
  const progress = new Map(); // item id -> percent of the upload in flight
  const listeners = [];

  // One id per phone (kept), as the trace names a device.
  function deviceId() {
    let id = localStorage.getItem(DEVICE_KEY);
    if (!id) {
      id = `phone-${crypto.getRandomValues(new Uint32Array(2)).join("").slice(0, 12)}`;
      localStorage.setItem(DEVICE_KEY, id);
    }
    return id;
  }

  function open() {
    return new Promise((resolve, reject) => {
      const req = indexedDB.open(DB, 1);
      req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: "id" });
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  }

  function tx(mode, work) {
    return new Promise((resolve, reject) => {
      const t = db.transaction(STORE, mode);
      const result = work(t.objectStore(STORE));
      t.oncomplete = () => resolve(result && "result" in result ? result.result : undefined);
      t.onerror = () => reject(t.error);
    });
  }

  const all = () => tx("readonly", (s) => s.getAll());
  const put = (item) => tx("readwrite", (s) => s.put(item));

  async function sha256Hex(blob) {
    const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
    return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  function kindOf(file) {
    if (file.type.startsWith("image/")) return "photo";
    if (file.type.startsWith("video/")) return "video";
    if (file.type.startsWith("audio/")) return "audio";
    return "document";
  }

  // A captured file: hashed and queued at once (before any network), then uploaded.
  async function add(file, caseNumber) {
    const meta = {
      case: caseNumber,
      kind: kindOf(file),
      sha256: await sha256Hex(file),
      device: deviceId(),
      capture_time: String(Date.now()),
      file_name: file.name || `${kindOf(file)}-${Date.now()}`,
    };
    const where = window.cc.lastPosition();
    if (where) {
      meta.lat = String(where.lat);
      meta.lon = String(where.lon);
      if (Number.isFinite(where.accuracy_m)) meta.accuracy_m = String(Math.min(where.accuracy_m, 100000));
    }
    const item = {
      id: `${meta.sha256}-${meta.capture_time}`,
      blob: file,
      type: file.type || "application/octet-stream",
      meta,
      state: "queued", // queued | uploading | done | refused
      error: null,
      evidence_id: null,
      queued_at: Date.now(),
    };
    await put(item);
    changed();
    pump();
    return item.id;
  }

  function send(item, token) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/api/evidence?${new URLSearchParams(item.meta)}`);
      xhr.setRequestHeader("Authorization", `Bearer ${token}`);
      xhr.setRequestHeader("Content-Type", item.type);
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) {
          progress.set(item.id, Math.round((e.loaded / e.total) * 100));
          changed();
        }
      };
      xhr.onload = () => resolve({ status: xhr.status, body: safeJson(xhr.responseText) });
      xhr.onerror = () => resolve({ status: 0, body: null });
      xhr.ontimeout = () => resolve({ status: 0, body: null });
      xhr.send(item.blob);
    });
  }

  function safeJson(text) {
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }

  // Uploads what is queued, one at a time, oldest first; stops at the first network failure
  // (the rest would fail too) until the network returns or the retry timer fires.
  async function pump() {
    if (running || !db) return;
    running = true;
    try {
      const queued = (await all()).filter((i) => i.state === "queued" || i.state === "uploading");
      queued.sort((a, b) => a.queued_at - b.queued_at);
      // navigator.onLine is not asked: it says offline on networks without a default route
      // and online behind a dead Wi-Fi; trying is the only test.
      for (const item of queued) {
        item.state = "uploading";
        changed();
        let answer = await send(item, await window.cc.httpToken(false));
        if (answer.status === 401) answer = await send(item, await window.cc.httpToken(true));
        progress.delete(item.id);
        if (answer.status === 201 || answer.status === 200) {
          item.state = "done";
          item.evidence_id = answer.body ? answer.body.evidence_id : null;
          item.server_sha256 = answer.body ? answer.body.sha256 : null;
          item.blob = null; // the server has it: the phone keeps no copy
        } else if (answer.status === 0 || answer.status >= 500 || [401, 408, 429].includes(answer.status)) {
          item.state = "queued"; // the network or the server: try again later
          item.error = answer.status ? `HTTP ${answer.status}` : "offline";
          await put(item);
          break;
        } else {
          item.state = "refused";
          item.error = answer.body ? `${answer.body.error}: ${answer.body.reason}` : `HTTP ${answer.status}`;
        }
        await put(item);
        changed();
      }
    } finally {
      running = false;
      changed();
    }
  }

  async function changed() {
    if (!db) return;
    const items = (await all()).map((i) => ({
      id: i.id,
      kind: i.meta.kind,
      case: i.meta.case,
      sha256: i.meta.sha256,
      state: i.state,
      error: i.error,
      evidence_id: i.evidence_id,
      server_sha256: i.server_sha256 || null,
      progress: progress.get(i.id) ?? null,
      queued_at: i.queued_at,
    }));
    items.sort((a, b) => b.queued_at - a.queued_at);
    for (const fn of listeners) fn(items);
  }

  window.addEventListener("online", () => pump());
  setInterval(() => pump(), RETRY_MS);

  window.ccCapture = {
    add,
    pump,
    subscribe: (fn) => {
      listeners.push(fn);
      changed();
    },
    caseNumber: () => localStorage.getItem(CASE_KEY) || "",
    setCaseNumber: (v) => localStorage.setItem(CASE_KEY, v),
    ready: open().then((opened) => {
      db = opened;
      changed();
      pump();
    }),
  };
})();
