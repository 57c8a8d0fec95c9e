/*
 * The command center's web client: a field app for officers and a console for operators and
 * supervisors, in one page. It owns the browser's side of the two protocols:
 *
 *   - the hub WebSocket (docs/protocol.md): sign-in with the JWT, heartbeats, calls, pushes;
 *   - media (the media negotiation of the media issue): ONE RTCPeerConnection with the server
 *     per active call, which carries our camera and microphone up and every other member's
 *     tracks down. The server forwards media; nobody connects to anybody else.
 *
 * No build step and no dependencies: plain script, served as-is from /app/. The test API on
 * `window.cc` is what tests/browser_scenario.py drives; the buttons call the same functions.
 */
"use strict";

(() => {
  const PROTOCOL_VERSION = 1;
  const APP_VERSION = "web-0.1.0";
  // Kept short: the log is for a person glancing at the page and for tests asserting pushes.
  const MAX_EVENTS = 200;
  // WebSocket close codes after which reconnecting would only make things worse: a bad or
  // expired token (4401), a disabled account (4403) or a session taken over by another
  // device (4409, see protocol.md).
  const NO_RECONNECT = new Set([4400, 4401, 4403, 4409]);
  const RECONNECT_MAX_S = 15;
  // Roles that may monitor calls they are not a party to (see callChanged, localMedia).
  const MONITORS = new Set(["supervisor", "admin"]);

  // ---- the token ------------------------------------------------------------------------

  // The token comes in the URL fragment (#token=...): a fragment is never sent to a server,
  // so it stays out of access logs and proxies, unlike a query string.
  const fragment = new URLSearchParams(location.hash.slice(1));
  // Without one, the page signs in with its cookie (signin.html set it): POST
  // /api/session/token gives a fresh token, at start, after F5 and when one expires.
  let token = fragment.get("token") || "";
  let fromCookie = false;
  const device = fragment.get("device") || "";
  // Take it out of the address bar at once, so that it is not copied along with the link or
  // left on screen. (A reload then needs the link again; that is deliberate.)
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);

  // ---- state --------------------------------------------------------------------------------

  const state = {
    connected: false,
    user: null, // UserInfo from the welcome
    grace_s: null,
    resumeToken: null,
    closeCode: null, // of the last WebSocket close
    ringing: new Map(), // call_id -> CallInfo, calls ringing at us
    call: null, // CallInfo of the call we are in (active), or null
    roster: new Map(), // officer id -> RosterEntry (operators, supervisors)
    events: [], // pushes received, newest last
    // The officer's own call to the center until it is answered or ends:
    // {call_id, phase: "placed" | "ringing" | "queued", position}
    outgoing: null,
    lastEnd: null, // {call_id, reason} of the last call that ended
    emergency: false, // the officer raised an SOS that nobody has cleared yet
    emergencyClearedBy: null, // UserInfo of who cleared the last one
    muted: false,
    cameraOff: false,
    // Members of our call who said their camera is off (camera_changed), by user id.
    camerasOff: new Set(),
    // Instructions from the center not yet acknowledged here, by id (docs/protocol.md,
    // "Instructions"): the server sends each again after every sign-in until it is read.
    instructions: new Map(),
    hiddenSince: null, // when the page last went to the background (ms), while it is
    backgroundS: null, // how long the page was last in the background, seconds
  };
  const listeners = []; // pages that draw the state their own way (phone.js)
  let ws = null;
  let nextId = 1;
  const pending = new Map(); // message id -> {resolve, reject}
  let heartbeat = null;
  let rttMs = null;
  let reconnectDelay = 1;
  let media = null; // MediaSession of the current call
  // The video wall's watches of this officer (docs/protocol.md, *Watching an officer*):
  // watch id -> MediaSession publishing the camera, video only, while the center watches.
  const watches = new Map();
  let watchStream = null; // a camera opened for watches alone (no call had one)
  // The cap each watch's video is sent under (`video_policy`, sized to the walls watching):
  // watch id -> {max_height, max_fps, max_kbps}, each null for none.
  const watchPolicies = new Map();

  // ---- the WebSocket ------------------------------------------------------------------------

  // The session's resume token in this tab's sessionStorage: F5 resumes the session (and a
  // call) instead of signing in again, which would end the call. Per tab, dropped on sign-out
  // and when the session is taken elsewhere (docs/protocol.md, *Sessions, resume and
  // replacement*).
  const RESUME_KEY = "cc.client.resume";
  function storeResume(value) {
    try {
      if (value) sessionStorage.setItem(RESUME_KEY, value);
      else sessionStorage.removeItem(RESUME_KEY);
    } catch {
      // Storage refused: F5 signs in again, as before.
    }
  }
  try {
    state.resumeToken = sessionStorage.getItem(RESUME_KEY);
  } catch {
    state.resumeToken = null;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams({ token, v: String(PROTOCOL_VERSION), app: APP_VERSION });
    if (device) query.set("device", device);
    // A resume keeps the session (and the call) across a dropped connection.
    if (state.resumeToken) query.set("resume", state.resumeToken);
    ws = new WebSocket(`${scheme}://${location.host}/ws?${query}`);
    ws.onmessage = (e) => receive(JSON.parse(e.data));
    ws.onclose = (e) => closed(e.code, e.reason);
    render();
  }

  function closed(code, reason) {
    state.connected = false;
    state.closeCode = code;
    clearInterval(heartbeat);
    for (const { reject } of pending.values()) reject(new Error(`connection closed (${code})`));
    pending.clear();
    log({ type: "closed", code, reason });
    if (code === 4401 && fromCookie) {
      // Expired: a new token from the cookie, and the same session resumed with it.
      signInWithCookie();
      return;
    }
    if (code === 4409) storeResume(null);
    if (NO_RECONNECT.has(code) || !token) {
      render();
      return;
    }
    // Back off so that a server restart is not met by every client at once, every second.
    setTimeout(connect, reconnectDelay * 1000 * (0.5 + Math.random()));
    reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_S);
    render();
  }

  // Send a client message; resolves with its reply (ack, call_placed, answer, ...) or rejects
  // with the server's error, whose `code` is kept on the Error for callers to match on.
  function request(type, fields = {}) {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error("not connected"));
    }
    const id = `w-${nextId++}`;
    ws.send(JSON.stringify({ type, id, ...fields }));
    return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
  }

  function receive(msg) {
    if (msg.ref != null && pending.has(msg.ref)) {
      const { resolve, reject } = pending.get(msg.ref);
      pending.delete(msg.ref);
      if (msg.type === "error") {
        const err = new Error(`${msg.code}: ${msg.reason}`);
        err.code = msg.code;
        reject(err);
      } else {
        resolve(msg);
      }
      render();
      return;
    }
    switch (msg.type) {
      case "welcome":
        welcomed(msg);
        break;
      case "call_ringing":
        state.ringing.set(msg.call.call_id, msg.call);
        break;
      case "call_taken":
      case "ring_stopped":
        state.ringing.delete(msg.call_id);
        break;
      case "call_answered":
        if (state.outgoing && state.outgoing.call_id === msg.call.call_id) state.outgoing = null;
        callChanged(msg.call);
        break;
      case "call_transferred":
        callChanged(msg.call);
        break;
      case "call_requeued":
        // Sent back to the queue: the officer waits again, still in the call's media; the
        // operator who sent it back is out of it.
        state.ringing.delete(msg.call_id);
        if (state.call && state.call.call_id === msg.call_id && state.user) {
          if (state.call.officer.id === state.user.id) {
            state.call = Object.assign({}, state.call, { state: "queued", operator: null });
            state.outgoing = { call_id: msg.call_id, phase: "queued", position: null };
          } else if (state.call.operator && state.call.operator.id === state.user.id) {
            callOver(msg.call_id);
          }
        }
        break;
      case "call_ringing_center":
        if (state.outgoing && state.outgoing.call_id === msg.call_id) {
          state.outgoing = { call_id: msg.call_id, phase: "ringing", position: null };
        }
        break;
      case "call_queued":
        if (state.outgoing && state.outgoing.call_id === msg.call_id) {
          state.outgoing = { call_id: msg.call_id, phase: "queued", position: msg.position };
        }
        break;
      case "emergency_cleared":
        state.emergency = false;
        state.emergencyClearedBy = msg.by;
        state.emergencyOutcome = msg.outcome || "resolved";
        state.emergencyTakenBy = null;
        state.emergencyNote = null;
        break;
      case "emergency_acknowledged":
        if (state.user && msg.officer.id === state.user.id) state.emergencyTakenBy = msg.by;
        break;
      case "participant_left":
        if (state.user && msg.user.id === state.user.id) callOver(msg.call_id);
        break;
      case "call_ended":
        state.ringing.delete(msg.call_id);
        if (state.outgoing && state.outgoing.call_id === msg.call_id) state.outgoing = null;
        state.lastEnd = { call_id: msg.call_id, reason: msg.reason };
        callOver(msg.call_id);
        break;
      case "instruction":
        instructionReceived(msg);
        break;
      case "camera_changed":
        if (state.call && state.call.call_id === msg.call_id) {
          if (msg.on) state.camerasOff.delete(msg.user);
          else state.camerasOff.add(msg.user);
        }
        break;
      case "roster_update":
        if (msg.entry.status === "offline") state.roster.delete(msg.entry.officer.id);
        else state.roster.set(msg.entry.officer.id, msg.entry);
        break;
      case "offer":
        // The server renegotiates: someone started or stopped publishing.
        if (media && media.callId === msg.call_id) media.serverOffer(msg.sdp);
        else if (watches.has(msg.call_id)) watches.get(msg.call_id).serverOffer(msg.sdp);
        break;
      case "media_restart":
        // The media worker relaying this call died and the server moved the call: what this
        // peer connection had is gone, so offer again from a new one (as after "failed").
        if (media && media.callId === msg.call_id) restartMedia();
        else if (watches.get(msg.call_id)) watches.get(msg.call_id).onFailed();
        break;
      case "ice_candidate":
        if (media && media.callId === msg.call_id) media.remoteCandidate(msg);
        else if (watches.has(msg.call_id)) watches.get(msg.call_id).remoteCandidate(msg);
        break;
      case "watch_opened":
        startWatch(msg.watch_id).catch((err) => log({ type: "media_error", call_id: msg.watch_id, reason: String(err) }));
        break;
      case "watch_closed":
        stopWatch(msg.watch_id);
        break;
      case "video_policy":
        // Kept, so a watch whose camera is still starting (or that restarts) gets it too.
        watchPolicies.set(msg.watch_id, { max_height: msg.max_height, max_fps: msg.max_fps, max_kbps: msg.max_kbps });
        if (watches.get(msg.watch_id)) {
          applyVideoPolicy(watches.get(msg.watch_id)).catch((err) => log({ type: "media_error", call_id: msg.watch_id, reason: `setParameters: ${err}` }));
        }
        break;
      default:
        // Unknown pushes are ignored, as protocol.md asks of clients.
        break;
    }
    if (msg.ref == null && msg.type !== "roster_update") log(msg);
    render();
  }

  function welcomed(msg) {
    state.connected = true;
    state.user = msg.user;
    state.courtName = msg.court_name || null;
    state.grace_s = msg.grace_s;
    state.resumeToken = msg.resume_token;
    storeResume(msg.resume_token);
    reconnectDelay = 1;
    // A connection that went took its watches with it (the server ended them).
    for (const id of [...watches.keys()]) stopWatch(id);
    // welcome.calls is the whole truth: forget any call it does not list.
    state.ringing.clear();
    const active = msg.calls.find((c) => c.state === "active") || null;
    // An officer's own unanswered call carries over a reconnect.
    const mine = msg.calls.find(
      (c) => c.state !== "active" && c.direction === "officer_to_center" && c.officer.id === msg.user.id,
    );
    if (!mine) state.outgoing = null;
    else if (!state.outgoing || state.outgoing.call_id !== mine.call_id) {
      state.outgoing = {
        call_id: mine.call_id,
        phase: mine.state === "queued" ? "queued" : "ringing",
        position: null,
      };
    }
    for (const c of msg.calls) if (c.state === "ringing") state.ringing.set(c.call_id, c);
    if (state.call && (!active || state.call.call_id !== active.call_id)) {
      callOver(state.call.call_id);
    }
    // Our own camera as we last said it in this call (a reload keeps it off): the media
    // starting below opens the camera with it and says it again.
    if (active && (active.cameras_off || []).includes(msg.user.id)) state.cameraOff = true;
    if (active) callChanged(active);
    if (msg.user.role === "officer") {
      watchPosition();
      sendPosition(true);
    }
    sendHeartbeat();
    clearInterval(heartbeat);
    heartbeat = setInterval(sendHeartbeat, msg.heartbeat_interval_s * 1000);
    if (msg.user.role !== "officer" && msg.user.role !== "auditor") {
      // The reply carries our `ref`, so receive() hands it to this promise and never to the
      // switch below: the roster is taken here, or it is lost (issue 14).
      request("get_roster")
        .then((reply) => {
          state.roster = new Map(reply.officers.map((e) => [e.officer.id, e]));
          render();
        })
        .catch(() => {});
    }
  }

  // ---- instructions ---------------------------------------------------------------------------

  // Kept once per id (a resend after a reconnect replaces it); the server is told at once
  // that the page has it, and again after a reconnect (a repeat changes nothing there).
  function instructionReceived(msg) {
    if (msg.state === "read") {
      state.instructions.delete(msg.instruction_id);
      return;
    }
    const known = state.instructions.has(msg.instruction_id);
    state.instructions.set(msg.instruction_id, msg);
    if (!known && navigator.vibrate) navigator.vibrate([300, 150, 300]);
    if (msg.state === "sent") {
      request("instruction_receipt", { instruction_id: msg.instruction_id, state: "delivered" })
        .catch((err) => log({ type: "error", reason: err.message }));
    }
  }

  // The officer tapped 收到: the read receipt; kept on screen until the server has it.
  async function acknowledgeInstruction(instructionId) {
    try {
      await request("instruction_receipt", { instruction_id: instructionId, state: "read" });
    } catch (err) {
      // Expired meanwhile (not_found): nothing left to acknowledge. Otherwise it stays.
      if (err.code !== "not_found") throw err;
    }
    state.instructions.delete(instructionId);
    render();
  }

  function sendHeartbeat() {
    const sentAt = Date.now();
    const fields = { device_time: sentAt };
    // The previous heartbeat's round trip lets the server correct the clock offset for it.
    if (rttMs != null) fields.rtt_ms = Math.min(rttMs, 60000);
    request("heartbeat", fields)
      .then(() => {
        rttMs = Date.now() - sentAt;
      })
      .catch(() => {});
  }

  // ---- calls --------------------------------------------------------------------------------

  // A call we are in became active, or changed hands. Media runs while we are a member.
  function callChanged(call) {
    const me = state.user.id;
    const member =
      call.officer.id === me ||
      (call.operator && call.operator.id === me) ||
      call.supervisors.some((s) => s.id === me) ||
      // A covert monitor is not listed: the call_answered it received is its own view.
      MONITORS.has(state.user.role);
    if (!member) {
      // Transferred away from us.
      callOver(call.call_id);
      return;
    }
    state.ringing.delete(call.call_id);
    state.call = call;
    // The call says whose camera is off: true after a reload too, not only from the next
    // camera_changed, our own is not ours to show (state.cameraOff is).
    state.camerasOff = new Set((call.cameras_off || []).filter((id) => id !== me));
    if (call.state === "active" && (!media || media.callId !== call.call_id)) {
      startMedia(call.call_id);
    }
  }

  function callOver(callId) {
    if (!state.call || state.call.call_id !== callId) return;
    state.call = null;
    state.camerasOff.clear();
    stopMedia();
  }

  async function callCenter(caseNumber) {
    const fields = caseNumber ? { case_number: caseNumber } : {};
    const reply = await request("call_center", fields);
    // call_ringing_center or call_queued may have come first: keep what they said.
    if (!state.outgoing || state.outgoing.call_id !== reply.call_id) {
      state.outgoing = { call_id: reply.call_id, phase: "placed", position: null };
    }
    render();
    return reply.call_id;
  }

  // The officer's own call, while it rings or waits: given up.
  async function cancel() {
    if (!state.outgoing) return;
    await request("cancel", { call_id: state.outgoing.call_id });
  }

  // SOS, with the latest position first (the trace keeps the position the flag was raised at).
  async function emergency(note) {
    await sendPosition(true);
    const reply = await request("emergency", note ? { note } : {});
    state.emergency = true;
    state.emergencyClearedBy = null;
    state.emergencyTakenBy = null;
    state.emergencyNote = note || null;
    if (reply.call_id && (!state.call || state.call.call_id !== reply.call_id)) {
      state.outgoing = state.outgoing || { call_id: reply.call_id, phase: "placed", position: null };
    }
    render();
    return reply.call_id || null;
  }

  // A short note on the SOS already sent (it replaces an earlier one at the center).
  async function emergencyNote(note) {
    await request("emergency_note", { note });
    state.emergencyNote = note;
    render();
  }

  async function clearEmergency(officer) {
    await request("clear_emergency", { officer });
  }

  // ---- position --------------------------------------------------------------------------

  const POSITION_EVERY_MS = 10000;
  let lastFix = null;
  let sentFixAt = 0;
  let watching = null;

  function watchPosition() {
    if (watching !== null || !navigator.geolocation) return;
    watching = navigator.geolocation.watchPosition(
      (fix) => {
        lastFix = fix;
        sendPosition(false);
      },
      (err) => log({ type: "position_error", reason: err.message }),
      { enableHighAccuracy: true, maximumAge: 5000 },
    );
  }

  async function sendPosition(now) {
    if (!lastFix || !state.connected) return;
    if (!now && Date.now() - sentFixAt < POSITION_EVERY_MS) return;
    sentFixAt = Date.now();
    const c = lastFix.coords;
    const fields = { lat: c.latitude, lon: c.longitude, device_time: lastFix.timestamp };
    if (Number.isFinite(c.accuracy)) fields.accuracy_m = Math.min(c.accuracy, 100000);
    await request("position", fields).catch(() => {});
  }

  // ---- mute, camera ------------------------------------------------------------------------

  function localTracks(kind) {
    return media && media.localStream
      ? media.localStream.getTracks().filter((t) => t.kind === kind)
      : [];
  }

  function setMuted(muted) {
    state.muted = muted;
    for (const t of localTracks("audio")) t.enabled = !muted;
    render();
  }

  function setCameraOff(off) {
    state.cameraOff = off;
    for (const t of localTracks("video")) t.enabled = !off;
    for (const t of watchStream ? watchStream.getVideoTracks() : []) t.enabled = !off;
    tellCamera();
    render();
  }

  // The others in the call show "camera off" instead of the black frames a disabled track
  // sends (set_camera); said at each change and when a call's media starts with it off.
  function tellCamera() {
    const call = state.call;
    if (!call || call.state !== "active" || !state.user || !isParty(call)) return;
    request("set_camera", { call_id: call.call_id, on: !state.cameraOff }).catch(() => {});
  }

  function isParty(call) {
    const me = state.user.id;
    return call.officer.id === me || (call.operator && call.operator.id === me);
  }

  // Front <-> back: a new camera track replaces the old one on the same sender.
  let facing = "user";
  async function switchCamera() {
    if (!media || !media.localStream) return;
    facing = facing === "user" ? "environment" : "user";
    const fresh = await navigator.mediaDevices.getUserMedia({ video: { facingMode: facing } });
    const track = fresh.getVideoTracks()[0];
    const sender = media.pc.getSenders().find((x) => x.track && x.track.kind === "video");
    if (sender) await sender.replaceTrack(track);
    for (const old of media.localStream.getVideoTracks()) {
      media.localStream.removeTrack(old);
      old.stop();
    }
    media.localStream.addTrack(track);
    track.enabled = !state.cameraOff;
    showLocal(media.localStream);
  }

  // ---- the screen stays awake in a call; the background is noticed ---------------------

  let wakeLock = null;
  async function keepAwake(on) {
    if (!("wakeLock" in navigator)) return;
    if (on && !wakeLock && document.visibilityState === "visible") {
      wakeLock = await navigator.wakeLock.request("screen").catch(() => null);
      if (wakeLock) wakeLock.addEventListener("release", () => (wakeLock = null));
    } else if (!on && wakeLock) {
      await wakeLock.release().catch(() => {});
      wakeLock = null;
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") {
      state.hiddenSince = Date.now();
    } else {
      if (state.hiddenSince) state.backgroundS = Math.round((Date.now() - state.hiddenSince) / 1000);
      state.hiddenSince = null;
      // Released by the browser when hidden: taken again for the call.
      keepAwake(!!state.call);
      sendPosition(true);
    }
    render();
  });

  async function accept(callId) {
    await request("accept", { call_id: callId });
  }

  async function join(callId) {
    await request("join_call", { call_id: callId });
  }

  async function hangup() {
    const call = state.call || [...state.ringing.values()][0];
    if (!call) return;
    await request("hangup", { call_id: call.call_id });
  }

  // ---- media --------------------------------------------------------------------------------

  /*
   * One call's peer connection with the server. Every step of the negotiation runs on one
   * promise chain, so that a server offer is never applied while our own offer is still
   * waiting for its answer, and candidates go out in the order they were found.
   */
  class MediaSession {
    constructor(callId, localStream, onFailed = restartMedia) {
      this.callId = callId;
      this.localStream = localStream;
      this.onFailed = onFailed;
      this.chain = Promise.resolve();
      this.answered = false;
      this.heldCandidates = [];
      this.localCandidates = [];
      this.remote = new Map(); // stream id (the publisher's user id) -> {stream, tile}
      this.streamOfTrack = new Map(); // receiver track id -> stream id, for getStats
      this.error = null;
      this.closed = false;
      // max-bundle: one transport for everything, so one set of candidates to gather and
      // trickle instead of one per m-line. No ICE servers: the server puts its own candidates
      // in its answer, and it is the only peer.
      this.pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
      this.pc.onicecandidate = (e) => this.localCandidate(e.candidate);
      this.pc.ontrack = (e) => this.remoteTrack(e);
      this.pc.onconnectionstatechange = () => {
        render();
        // A phone that changed network: the protocol's way back is a new peer connection and
        // a new offer (the server drops the old session when the new offer comes).
        if (this.pc.connectionState === "failed" && !this.closed) onFailed();
      };
    }

    start() {
      const stream = this.localStream;
      if (stream && stream.getTracks().length > 0) {
        // sendonly: what we receive comes on the server's own m-lines, one per publisher.
        for (const track of stream.getTracks()) {
          this.pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
        }
      } else {
        // An offer needs at least one m-line; a member with nothing to send asks for audio.
        this.pc.addTransceiver("audio", { direction: "recvonly" });
      }
      return this.run(async () => {
        await this.pc.setLocalDescription();
        const reply = await request("offer", {
          call_id: this.callId,
          sdp: this.pc.localDescription.sdp,
        });
        await this.pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
        this.answered = true;
        // Held until now: before its answer the server has no session to add them to.
        for (const c of this.heldCandidates.splice(0)) this.sendCandidate(c);
      });
    }

    serverOffer(sdp) {
      return this.run(async () => {
        await this.pc.setRemoteDescription({ type: "offer", sdp });
        await this.pc.setLocalDescription();
        await request("answer", { call_id: this.callId, sdp: this.pc.localDescription.sdp });
      });
    }

    remoteCandidate(msg) {
      // The server does not trickle today (its candidates are in its SDP); accepted anyway.
      return this.run(() =>
        this.pc.addIceCandidate({
          candidate: msg.candidate,
          sdpMid: msg.sdp_mid,
          sdpMLineIndex: msg.sdp_mline_index,
        }),
      );
    }

    localCandidate(candidate) {
      // null: gathering is over; say so with the empty candidate, as the protocol allows.
      const c = candidate || { candidate: "", sdpMid: null, sdpMLineIndex: null };
      if (c.candidate) this.localCandidates.push(c.candidate);
      // The server ignores mDNS (.local) names; sending them would only cost messages.
      if (c.candidate.includes(".local ")) return;
      if (this.answered) this.sendCandidate(c);
      else this.heldCandidates.push(c);
    }

    sendCandidate(c) {
      const fields = { call_id: this.callId, candidate: c.candidate };
      if (c.sdpMid != null) fields.sdp_mid = c.sdpMid;
      if (c.sdpMLineIndex != null) fields.sdp_mline_index = c.sdpMLineIndex;
      request("ice_candidate", fields).catch((err) => this.failed(err));
    }

    remoteTrack(e) {
      // The server names each stream after the member who publishes it.
      const stream = e.streams[0] || new MediaStream([e.track]);
      const id = stream.id;
      this.streamOfTrack.set(e.track.id, id);
      let entry = this.remote.get(id);
      if (!entry) {
        entry = { stream, tile: remoteTile(id, stream) };
        this.remote.set(id, entry);
        stream.onremovetrack = () => {
          if (stream.getTracks().length === 0) this.dropRemote(id);
        };
      }
      render();
    }

    dropRemote(id) {
      const entry = this.remote.get(id);
      if (!entry) return;
      entry.tile.remove();
      this.remote.delete(id);
      render();
    }

    run(step) {
      this.chain = this.chain
        .then(() => (this.closed ? undefined : step()))
        .catch((err) => this.failed(err));
      return this.chain;
    }

    failed(err) {
      if (this.closed) return;
      // A refusal from the server reads "code: reason"; a browser error starts with its name.
      this.error = typeof err.code === "string" ? err.message : `${err.name}: ${err.message}`;
      log({ type: "media_error", call_id: this.callId, reason: this.error });
      render();
    }

    close() {
      this.closed = true;
      this.pc.close();
      for (const id of [...this.remote.keys()]) this.dropRemote(id);
    }

    async inboundStats() {
      const report = await this.pc.getStats();
      const out = [];
      report.forEach((s) => {
        if (s.type !== "inbound-rtp") return;
        out.push({
          kind: s.kind,
          mid: s.mid,
          stream: this.streamOfTrack.get(s.trackIdentifier) || null,
          trackIdentifier: s.trackIdentifier,
          packetsReceived: s.packetsReceived,
          bytesReceived: s.bytesReceived,
          framesDecoded: s.framesDecoded,
          frameWidth: s.frameWidth,
          frameHeight: s.frameHeight,
          totalAudioEnergy: s.totalAudioEnergy,
          audioLevel: s.audioLevel,
        });
      });
      return out;
    }

    summary() {
      return {
        call_id: this.callId,
        connectionState: this.pc.connectionState,
        iceConnectionState: this.pc.iceConnectionState,
        signalingState: this.pc.signalingState,
        localTracks: this.localStream ? this.localStream.getTracks().map((t) => t.kind) : [],
        remoteStreams: [...this.remote.keys()],
        localCandidates: this.localCandidates,
        error: this.error,
      };
    }
  }

  // The camera and microphone, asked for when a call starts and released when it ends, so
  // that the camera light is on only during calls. A device that is missing or refused does
  // not stop the call: we still receive. Only the two parties publish: a supervisor who
  // monitors listens in (one who answers an emergency is its operator, and talks).
  // A page that keeps the camera and microphone for the whole session (the phone page: asked
  // once, not at every call, so that a call starts at once and no prompt comes mid-incident).
  const KEEP_MEDIA = document.documentElement.dataset.keepMedia === "true";
  let sessionStream = null;

  async function localMedia(call) {
    const me = state.user.id;
    const party = call.officer.id === me || (call.operator && call.operator.id === me);
    if (!party) return null;
    if (sessionStream && sessionStream.getTracks().some((t) => t.readyState === "live")) {
      return sessionStream;
    }
    for (const constraints of [{ audio: true, video: true }, { audio: true }]) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia(constraints);
        for (const t of stream.getAudioTracks()) t.enabled = !state.muted;
        for (const t of stream.getVideoTracks()) t.enabled = !state.cameraOff;
        if (KEEP_MEDIA) sessionStream = stream;
        return stream;
      } catch (err) {
        state.mediaError = err.name;
        log({ type: "media_error", reason: `getUserMedia: ${err.name}` });
      }
    }
    return null;
  }

  let starting = null; // the call id whose media is being set up
  async function startMedia(callId) {
    if (starting === callId) return;
    starting = callId;
    try {
      const stream =
        media && media.callId === callId ? media.localStream : await localMedia(state.call);
      if (!state.call || state.call.call_id !== callId) {
        // The call ended while we waited for the camera.
        if (stream) for (const t of stream.getTracks()) t.stop();
        return;
      }
      if (media) media.close();
      media = new MediaSession(callId, stream);
      showLocal(stream);
      await media.start();
      // Said whichever it is: the server keeps what we said last, in this call, and a page
      // reloaded with its camera on must not leave the others showing it off.
      tellCamera();
    } finally {
      starting = null;
      render();
    }
  }

  // ---- the video wall: the center watches this officer's camera ------------------------

  // The camera for a watch: the call's, if one runs (one camera, two sessions), else one
  // opened for the watches alone. Video only: nobody is in a call with the officer.
  async function watchCamera() {
    const live = (stream) => stream && stream.getVideoTracks().some((t) => t.readyState === "live");
    if (media && live(media.localStream)) return new MediaStream(media.localStream.getVideoTracks());
    if (live(sessionStream)) return new MediaStream(sessionStream.getVideoTracks());
    if (!live(watchStream)) {
      try {
        watchStream = await navigator.mediaDevices.getUserMedia({ video: true });
      } catch (err) {
        state.mediaError = err.name;
        log({ type: "media_error", reason: `getUserMedia: ${err.name}` });
        return null;
      }
      for (const t of watchStream.getVideoTracks()) t.enabled = !state.cameraOff;
    }
    return new MediaStream(watchStream.getVideoTracks());
  }

  async function startWatch(watchId) {
    if (watches.has(watchId)) return;
    // Held at once, so that the page shows it is watched while the camera starts.
    watches.set(watchId, null);
    render();
    const stream = await watchCamera();
    if (!watches.has(watchId)) return; // closed while the camera started
    const session = new MediaSession(watchId, stream, () => {
      // A failed watch session is offered again on a new peer connection, as a call's is.
      if (watches.get(watchId) !== session) return;
      session.close();
      watches.delete(watchId);
      startWatch(watchId);
    });
    watches.set(watchId, session);
    await session.start();
    await applyVideoPolicy(session);
    render();
  }

  // The watch's video sender, sized to the walls watching (docs/protocol.md, `video_policy`):
  // scaled down to the height, its frame rate and bit rate capped; a call's sender, another
  // peer connection, is untouched though it may send the same camera.
  async function applyVideoPolicy(session) {
    const policy = watchPolicies.get(session.callId);
    if (!policy || session.closed) return;
    for (const sender of session.pc.getSenders()) {
      const track = sender.track;
      if (!track || track.kind !== "video") continue;
      const params = sender.getParameters();
      if (!params.encodings || params.encodings.length === 0) continue;
      const height = track.getSettings().height || 0;
      for (const encoding of params.encodings) {
        encoding.scaleResolutionDownBy = policy.max_height && height > policy.max_height ? height / policy.max_height : 1;
        if (policy.max_fps) encoding.maxFramerate = policy.max_fps;
        else delete encoding.maxFramerate;
        if (policy.max_kbps) encoding.maxBitrate = policy.max_kbps * 1000;
        else delete encoding.maxBitrate;
      }
      await sender.setParameters(params);
    }
    session.policy = policy;
  }

  function stopWatch(watchId) {
    const session = watches.get(watchId);
    watches.delete(watchId);
    watchPolicies.delete(watchId);
    if (session) session.close();
    if (watches.size === 0 && watchStream) {
      for (const t of watchStream.getTracks()) t.stop();
      watchStream = null;
    }
    render();
  }

  function restartMedia() {
    if (!media || !state.call) return;
    const callId = media.callId;
    log({ type: "media_restart", call_id: callId });
    startMedia(callId);
  }

  function stopMedia() {
    if (!media) return;
    media.close();
    if (media.localStream && media.localStream !== sessionStream) {
      for (const t of media.localStream.getTracks()) t.stop();
    }
    media = null;
    showLocal(null);
    render();
  }

  // ---- the page -----------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function remoteTile(id, stream) {
    const tile = document.createElement("figure");
    tile.className = "tile";
    tile.dataset.stream = id;
    // Video muted so that it may autoplay; the sound goes through its own unmuted <audio>.
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true;
    video.srcObject = stream;
    const audio = document.createElement("audio");
    audio.autoplay = true;
    audio.srcObject = stream;
    const caption = document.createElement("figcaption");
    caption.textContent = nameOf(id);
    tile.append(video, audio, caption);
    $("remote").append(tile);
    audio.play().catch(() => {
      // Autoplay with sound refused until the user touches the page: offer a button.
      $("unmute").hidden = false;
    });
    return tile;
  }

  // A person's name, not their id, under their video: from the call, else the roster.
  function nameOf(id) {
    const call = state.call;
    const people = call ? [call.officer, call.operator, ...call.supervisors] : [];
    const found = people.find((u) => u && u.id === id);
    if (found) return found.name;
    const entry = state.roster.get(id);
    return entry ? entry.officer.name : id;
  }

  function showLocal(stream) {
    $("local").srcObject = stream;
    $("local").hidden = !stream;
  }

  function log(msg) {
    const entry = { at: Date.now(), ...msg };
    delete entry.sdp; // long and of no use in the log
    delete entry.resume_token; // as good as the token while the session lives: not kept
    state.events.push(entry);
    if (state.events.length > MAX_EVENTS) state.events.shift();
    const li = document.createElement("li");
    const who = msg.user ? ` ${msg.user.id}` : msg.by ? ` by ${msg.by}` : "";
    const why = msg.reason ? ` (${msg.reason})` : "";
    li.textContent = `${new Date(entry.at).toLocaleTimeString()} ${msg.type}${who}${why}`;
    const list = $("log-list");
    if (!list) return;
    list.prepend(li);
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  }

  function button(label, onClick) {
    const b = document.createElement("button");
    b.textContent = label;
    b.onclick = () => onClick().catch((err) => log({ type: "error", reason: err.message }));
    return b;
  }

  function render() {
    keepAwake(!!state.call).catch(() => {});
    for (const fn of listeners) fn(snapshot());
    if (!$("ringing-list")) return; // a page of its own (phone.html) draws itself
    const u = state.user;
    let status = "connecting";
    if (state.connected) status = "connected";
    else if (state.closeCode) status = `disconnected (${state.closeCode})`;
    $("status").textContent = status;
    if (u) $("who").textContent = `${u.name} · ${u.role} · ${u.court}`;
    else $("who").textContent = "";
    const role = u ? u.role : "";
    $("call-center").hidden = role !== "officer";
    $("call-center").disabled = !state.connected || !!state.call;
    $("hangup").disabled = !state.call && state.ringing.size === 0;

    const ringing = $("ringing-list");
    ringing.replaceChildren();
    for (const call of state.ringing.values()) {
      const li = document.createElement("li");
      li.textContent = `${call.officer.name} (${call.court})${call.emergency ? " EMERGENCY" : ""} `;
      li.append(button("Accept", () => accept(call.call_id)));
      ringing.append(li);
    }
    $("ringing").hidden = state.ringing.size === 0;

    const roster = $("roster-list");
    roster.replaceChildren();
    for (const entry of state.roster.values()) {
      const li = document.createElement("li");
      const flag = entry.emergency ? " EMERGENCY" : "";
      li.textContent = `${entry.officer.name} (${entry.officer.court}) ${entry.status}${flag} `;
      const inIt = state.call && state.call.call_id === entry.call_id;
      if (entry.call_id && MONITORS.has(role) && !inIt) {
        li.append(button("Join call", () => join(entry.call_id)));
      }
      roster.append(li);
    }
    $("roster").hidden = state.roster.size === 0;

    $("call-info").textContent = state.call ? describeCall(state.call) : "No call";
  }

  function describeCall(call) {
    let text = `${call.officer.name} with ${call.operator ? call.operator.name : "…"}`;
    if (call.supervisors.length) {
      text += `, monitored by ${call.supervisors.map((s) => s.name).join(", ")}`;
    }
    if (media) {
      text += ` · media ${media.pc.connectionState}`;
      if (media.error) text += ` (${media.error})`;
    }
    return text;
  }

  // ---- signing in with the cookie ------------------------------------------------------

  function toSignIn() {
    location.replace(`/app/signin.html?next=${encodeURIComponent(location.pathname)}`);
  }

  async function signInWithCookie() {
    let resp;
    try {
      resp = await fetch("/api/session/token", { method: "POST", credentials: "same-origin" });
    } catch (err) {
      // The server is away (a restart): try again as a dropped socket would.
      setTimeout(signInWithCookie, reconnectDelay * 1000 * (0.5 + Math.random()));
      reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_S);
      return;
    }
    if (resp.status === 401) {
      toSignIn();
      return;
    }
    if (!resp.ok) {
      setTimeout(signInWithCookie, reconnectDelay * 1000 * (0.5 + Math.random()));
      reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_S);
      return;
    }
    token = (await resp.json()).token;
    fromCookie = true;
    if ($("signout")) $("signout").hidden = false;
    connect();
  }

  // A token for an HTTP request (an evidence upload): the current one, or after a 401 a new
  // one from the cookie (`fresh`).
  async function httpToken(fresh) {
    if (fresh && fromCookie) {
      const resp = await fetch("/api/session/token", { method: "POST", credentials: "same-origin" });
      if (resp.ok) token = (await resp.json()).token;
    }
    return token;
  }

  // Where the device was last: for evidence captured now.
  function lastPosition() {
    if (!lastFix) return null;
    const c = lastFix.coords;
    return { lat: c.latitude, lon: c.longitude, accuracy_m: c.accuracy };
  }

  async function signOut() {
    storeResume(null);
    await fetch("/api/session", { method: "DELETE", credentials: "same-origin" });
    if (ws) ws.close(1000, "signed out");
    toSignIn();
  }

  // ---- start --------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    const report = (err) => log({ type: "error", reason: err.message });
    if ($("call-center")) {
      $("call-center").onclick = () => callCenter().catch(report);
      $("hangup").onclick = () => hangup().catch(report);
      $("signout").onclick = () => signOut().catch(report);
    }
    $("unmute").onclick = () => {
      for (const a of document.querySelectorAll("#remote audio")) a.play().catch(() => {});
      $("unmute").hidden = true;
    };
    if (token) connect();
    else signInWithCookie();
    render();
  });

  // ---- the test API -------------------------------------------------------------------------

  function snapshot() {
    return {
      connected: state.connected,
      closeCode: state.closeCode,
      user: state.user,
      ringing: [...state.ringing.keys()],
      call: state.call,
      media: media ? media.summary() : null,
      events: state.events,
      outgoing: state.outgoing,
      roster: [...state.roster.values()],
      lastEnd: state.lastEnd,
      emergency: state.emergency,
      emergencyClearedBy: state.emergencyClearedBy,
      emergencyTakenBy: state.emergencyTakenBy || null,
      emergencyOutcome: state.emergencyOutcome || null,
      emergencyNote: state.emergencyNote || null,
      courtName: state.courtName || null,
      instructions: [...state.instructions.values()].sort((a, b) => a.sent_at - b.sent_at),
      muted: state.muted,
      cameraOff: state.cameraOff,
      camerasOff: [...state.camerasOff],
      backgroundS: state.backgroundS,
      mediaError: state.mediaError || null,
      // The center's watches of this officer's camera (the video wall).
      watches: [...watches.entries()].map(([id, session]) =>
        session ? { ...session.summary(), policy: session.policy || null } : { call_id: id },
      ),
      localTracks: media && media.localStream
        ? media.localStream.getTracks().map((t) => ({ kind: t.kind, enabled: t.enabled }))
        : [],
    };
  }

  window.cc = {
    callCenter,
    accept,
    join,
    hangup,
    cancel,
    emergency,
    emergencyNote,
    clearEmergency,
    acknowledgeEmergency: (officer) => request("acknowledge_emergency", { officer }),
    acknowledgeInstruction,
    // An officer's position fix, for tests that need an officer on the map.
    position: (lat, lon, accuracyM = 10) =>
      request("position", { lat, lon, accuracy_m: accuracyM, device_time: Date.now() }),
    setMuted,
    setCameraOff,
    switchCamera,
    signOut: () => signOut(),
    httpToken,
    lastPosition,
    // A page that draws the state itself: `fn(snapshot)` after every change.
    subscribe: (fn) => {
      listeners.push(fn);
      fn(snapshot());
    },
    // A plain, JSON-able snapshot for tests: no live objects.
    state: () => snapshot(),
    // Per inbound RTP stream: video framesDecoded/frameWidth, audio totalAudioEnergy/audioLevel,
    // with `stream` the publishing user's id.
    inboundStats: () => (media ? media.inboundStats() : Promise.resolve([])),
  };
})();
