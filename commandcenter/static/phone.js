// The officer's phone page: draws window.cc's state (client.js owns the connection, the call,
// media and positions) and turns touches into its commands. Chinese by default; ?lang=en
// (remembered) for English. The SOS button must be held for SOS_HOLD_MS, so that a pocket or
// a stray tap does not raise an alarm; releasing early does nothing.
"use strict";

(() => {
  const SOS_HOLD_MS = 2000;
  const TEXT = {
    zh: {
      connecting: "正在连接",
      connected: "已连接",
      disconnected: "连接中断，正在重连",
      idle: "空闲",
      placed: "正在呼叫指挥中心…",
      ringing: "指挥中心响铃中…",
      queued: "排队等候，第 {n} 位",
      active: "通话中：{name}",
      ended: "通话已结束（{reason}）",
      call: "呼叫指挥中心",
      cancel: "取消呼叫",
      hangup: "挂断",
      mute: "静音",
      unmute_mic: "取消静音",
      camera_off: "关闭摄像头",
      camera_on: "打开摄像头",
      flip: "切换摄像头",
      sound: "打开声音",
      sos: "长按 2 秒紧急求助",
      sos_hold: "继续按住…",
      sos_active: "已发出紧急求助",
      sos_active_taken: "已发出紧急求助 · {name} 已接警",
      sos_raised: "紧急求助已发出，等待指挥中心处理",
      sos_cleared: "紧急状态已由 {name} 解除",
      sos_false: "已由 {name} 作为误报解除",
      sos_taken: "{name} 已接警，正在处理",
      sos_note: "补充说明（可选）",
      sos_note_send: "发送说明",
      sos_note_sent: "已发送说明：{note}",
      background: "页面曾在后台 {s} 秒：期间位置上报和视频暂停。",
      media_denied: "无法使用摄像头或麦克风（{name}）：请在浏览器设置中允许。",
      insecure: "此页面不安全（非 HTTPS），手机浏览器不允许使用摄像头和定位。",
      signout: "退出登录",
      other: "English",
      evidence: "取证",
      case: "案号",
      photo: "拍照",
      video: "录像",
      audio: "录音",
      need_case: "请先填写案号",
      kinds: { photo: "照片", video: "视频", audio: "录音", document: "文件" },
      states: { queued: "等待上传", uploading: "上传中", done: "已上传", refused: "被拒绝" },
      waiting_network: "等待网络",
      instructions: "指挥中心指令",
      instruction_ack: "收到",
      instruction_from: "{name} · {time}",
      instruction_court: "（全院）",
      watched: "指挥中心正在查看您的视频",
      their_camera_off: "{name} 已关闭摄像头",
      reasons: {
        hangup: "挂断",
        cancelled: "已取消",
        missed: "无人接听",
        declined: "被拒绝",
        queue_timeout: "排队超时",
        queue_full: "队列已满",
        unavailable: "无法接通",
        busy: "忙",
        party_lost: "对方掉线",
      },
    },
    en: {
      connecting: "Connecting",
      connected: "Connected",
      disconnected: "Disconnected, reconnecting",
      idle: "Idle",
      placed: "Calling the center…",
      ringing: "Ringing at the center…",
      queued: "Waiting: number {n} in the queue",
      active: "In a call with {name}",
      ended: "Call ended ({reason})",
      call: "Call the center",
      cancel: "Cancel the call",
      hangup: "Hang up",
      mute: "Mute",
      unmute_mic: "Unmute",
      camera_off: "Camera off",
      camera_on: "Camera on",
      flip: "Switch camera",
      sound: "Turn sound on",
      sos: "Hold 2 s for SOS",
      sos_hold: "Keep holding…",
      sos_active: "SOS raised",
      sos_active_taken: "SOS raised · taken by {name}",
      sos_raised: "SOS sent; waiting for the center",
      sos_cleared: "Emergency cleared by {name}",
      sos_false: "Cleared as a false alarm by {name}",
      sos_taken: "{name} has taken your emergency",
      sos_note: "Add a note (optional)",
      sos_note_send: "Send note",
      sos_note_sent: "Note sent: {note}",
      background: "The page was in the background for {s} s: position and video were paused.",
      media_denied: "Camera or microphone not available ({name}): allow them in the browser settings.",
      insecure: "This page is not secure (no HTTPS): phones allow no camera or position.",
      signout: "Sign out",
      other: "中文",
      evidence: "Evidence",
      case: "Case number",
      photo: "Photo",
      video: "Video",
      audio: "Audio",
      need_case: "Enter the case number first",
      kinds: { photo: "Photo", video: "Video", audio: "Audio", document: "File" },
      states: { queued: "Waiting to upload", uploading: "Uploading", done: "Uploaded", refused: "Refused" },
      waiting_network: "waiting for the network",
      instructions: "Instructions from the center",
      instruction_ack: "Got it",
      instruction_from: "{name} · {time}",
      instruction_court: " (whole court)",
      watched: "The command center is viewing your video",
      their_camera_off: "{name} turned the camera off",
      reasons: {},
    },
  };
  const params = new URLSearchParams(location.search);
  const lang = params.get("lang") || localStorage.getItem("cc.lang") || "zh";
  if (params.get("lang")) localStorage.setItem("cc.lang", lang);
  const t = TEXT[lang] || TEXT.zh;
  const $ = (id) => document.getElementById(id);
  const fill = (text, vars) => Object.entries(vars).reduce((s, [k, v]) => s.replace(`{${k}}`, v), text);
  const report = (err) => console.warn(err);

  function callLine(s) {
    if (s.call && s.call.state === "active") {
      const other = s.call.operator ? s.call.operator.name : "";
      return fill(t.active, { name: other });
    }
    if (s.outgoing) {
      if (s.outgoing.phase === "queued") return fill(t.queued, { n: s.outgoing.position || "?" });
      return s.outgoing.phase === "ringing" ? t.ringing : t.placed;
    }
    if (s.lastEnd) return fill(t.ended, { reason: t.reasons[s.lastEnd.reason] || s.lastEnd.reason });
    return t.idle;
  }

  function draw(s) {
    $("status").textContent = s.connected ? t.connected : s.closeCode ? t.disconnected : t.connecting;
    $("who").textContent = s.user ? `${s.user.name} · ${s.courtName || s.user.court}` : "";
    $("call-state").textContent = callLine(s);
    const inCall = !!(s.call && s.call.state === "active");
    const waiting = !!s.outgoing;
    $("call").hidden = inCall || waiting;
    $("call").disabled = !s.connected;
    $("cancel").hidden = !waiting;
    $("hangup").hidden = !inCall;
    $("in-call").hidden = !inCall;
    $("mute").textContent = s.muted ? t.unmute_mic : t.mute;
    $("mute").setAttribute("aria-pressed", String(s.muted));
    $("camera").textContent = s.cameraOff ? t.camera_on : t.camera_off;
    $("camera").setAttribute("aria-pressed", String(s.cameraOff));
    $("sos").classList.toggle("raised", s.emergency);
    // While the SOS is out the button says so (holding it again sends nothing more; the note
    // below is what the officer can add), and asks to be held again once it is cleared.
    sosRaised = s.emergency;
    sosTakenBy = s.emergency && s.emergencyTakenBy ? s.emergencyTakenBy.name : null;
    $("sos").setAttribute("aria-disabled", String(sosRaised));
    if (!sosHolding) $("sos-label").textContent = sosLabel();
    if (s.emergency && s.emergencyTakenBy) {
      $("sos-state").textContent = fill(t.sos_taken, { name: s.emergencyTakenBy.name });
    } else if (s.emergency) $("sos-state").textContent = t.sos_raised;
    else if (s.emergencyClearedBy) {
      const text = s.emergencyOutcome === "false_alarm" ? t.sos_false : t.sos_cleared;
      $("sos-state").textContent = fill(text, { name: s.emergencyClearedBy.name });
    } else $("sos-state").textContent = "";
    // The note is offered once the SOS is out (typing never holds the alarm back).
    $("sos-note-form").hidden = !s.emergency;
    $("sos-note-sent").textContent = s.emergency && s.emergencyNote ? fill(t.sos_note_sent, { note: s.emergencyNote }) : "";
    const notices = [];
    if (!window.isSecureContext) notices.push(t.insecure);
    if (s.mediaError) notices.push(fill(t.media_denied, { name: s.mediaError }));
    if (s.backgroundS) notices.push(fill(t.background, { s: s.backgroundS }));
    // Plain to see while the center watches the camera (the video wall): no call rings.
    const watched = (s.watches || []).length > 0;
    $("watched").hidden = !watched;
    $("watched").textContent = watched ? t.watched : "";
    $("notice").textContent = notices.join(" ");
    $("notice").hidden = notices.length === 0;
    drawInstructions(s.instructions || []);
    drawCameras(s);
  }

  // A member who turned their camera off (the operator's is off until they turn it on) is
  // said so on their tile, over the black picture.
  function drawCameras(s) {
    const off = new Set(s.camerasOff || []);
    const people = s.call ? [s.call.officer, s.call.operator, ...s.call.supervisors] : [];
    for (const tile of document.querySelectorAll("#remote figure.tile")) {
      const id = tile.dataset.stream;
      tile.classList.toggle("camera-off", off.has(id));
      let label = tile.querySelector(".camera-off-label");
      if (!off.has(id)) {
        if (label) label.remove();
        continue;
      }
      if (!label) {
        label = document.createElement("p");
        label.className = "camera-off-label";
        label.setAttribute("role", "status");
        tile.append(label);
      }
      const who = people.find((u) => u && u.id === id);
      label.textContent = fill(t.their_camera_off, { name: who ? who.name : id });
    }
  }

  // Instructions stay at the top, in strong colours, until the officer taps 收到: the
  // server's read receipt is that tap. Redrawn only when the set changes, so a tap is not
  // lost to a redraw in between.
  function drawInstructions(items) {
    $("instructions").hidden = items.length === 0;
    const list = $("instruction-list");
    const key = JSON.stringify(items.map((i) => i.instruction_id));
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    list.replaceChildren();
    for (const item of items) {
      const li = document.createElement("li");
      li.className = "instruction";
      li.dataset.instructionId = item.instruction_id;
      const text = document.createElement("p");
      text.className = "instruction-text";
      text.textContent = item.text;
      const from = document.createElement("p");
      from.className = "instruction-from";
      const time = new Date(item.sent_at).toLocaleTimeString(lang === "en" ? "en" : "zh-CN", {
        hour: "2-digit", minute: "2-digit",
      });
      from.textContent = fill(t.instruction_from, { name: item.by.name, time })
        + (item.court_wide ? t.instruction_court : "");
      const ack = document.createElement("button");
      ack.className = "big go";
      ack.textContent = t.instruction_ack;
      ack.onclick = () => {
        ack.disabled = true;
        window.cc.acknowledgeInstruction(item.instruction_id).catch((err) => {
          ack.disabled = false;
          report(err);
        });
      };
      li.append(text, from, ack);
      list.append(li);
    }
    if (items.length) $("instructions").scrollIntoView({ block: "start" });
  }

  function drawUploads(items) {
    const list = $("uploads");
    list.replaceChildren();
    for (const item of items) {
      const li = document.createElement("li");
      li.dataset.state = item.state;
      li.dataset.sha256 = item.sha256;
      if (item.evidence_id) li.dataset.evidenceId = item.evidence_id;
      const what = document.createElement("span");
      what.textContent = `${t.kinds[item.kind] || item.kind} · ${item.case}`;
      const state = document.createElement("span");
      state.className = item.state;
      let text = t.states[item.state] || item.state;
      if (item.state === "uploading" && item.progress != null) text += ` ${item.progress}%`;
      if (item.state === "queued" && item.error) text += `（${t.waiting_network}）`;
      if (item.state === "refused" && item.error) text += `：${item.error}`;
      state.textContent = text;
      const hash = document.createElement("span");
      hash.className = "hash";
      hash.textContent = `SHA-256 ${item.sha256.slice(0, 16)}…`;
      li.append(what, state, hash);
      if (item.state === "uploading") {
        const bar = document.createElement("progress");
        bar.max = 100;
        bar.value = item.progress || 0;
        li.append(bar);
      }
      list.append(li);
    }
  }

  function captured(input) {
    const file = input.files && input.files[0];
    input.value = "";
    if (!file) return;
    const caseNumber = $("case").value.trim();
    if (!caseNumber) {
      $("evidence-message").textContent = t.need_case;
      return;
    }
    $("evidence-message").textContent = "";
    window.ccCapture.setCaseNumber(caseNumber);
    window.ccCapture.add(file, caseNumber).catch(report);
  }

  // What the SOS button says: hold it, or that the alarm is out (and who took it).
  let sosRaised = false;
  let sosTakenBy = null;
  let sosHolding = false;
  function sosLabel() {
    if (!sosRaised) return t.sos;
    return sosTakenBy ? fill(t.sos_active_taken, { name: sosTakenBy }) : t.sos_active;
  }

  // Press and hold: a bar fills for SOS_HOLD_MS; let go early and nothing is sent.
  function holdToRaise(button) {
    let timer = null;
    let started = 0;
    let frame = null;
    const grow = () => {
      const share = Math.min((Date.now() - started) / SOS_HOLD_MS, 1);
      $("sos-fill").style.width = `${share * 100}%`;
      if (share < 1) frame = requestAnimationFrame(grow);
    };
    const stop = () => {
      clearTimeout(timer);
      cancelAnimationFrame(frame);
      timer = null;
      sosHolding = false;
      $("sos-fill").style.width = "0";
      $("sos-label").textContent = sosLabel();
    };
    button.addEventListener("pointerdown", (e) => {
      e.preventDefault();
      if (timer || sosRaised) return;
      started = Date.now();
      sosHolding = true;
      $("sos-label").textContent = t.sos_hold;
      frame = requestAnimationFrame(grow);
      timer = setTimeout(() => {
        stop();
        if (navigator.vibrate) navigator.vibrate([200, 100, 200]);
        window.cc.emergency().catch(report);
      }, SOS_HOLD_MS);
    });
    for (const ev of ["pointerup", "pointerleave", "pointercancel"]) button.addEventListener(ev, stop);
    button.addEventListener("contextmenu", (e) => e.preventDefault());
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.documentElement.lang = lang === "en" ? "en" : "zh-CN";
    for (const [id, key] of [["call", "call"], ["cancel", "cancel"], ["hangup", "hangup"],
      ["flip", "flip"], ["unmute", "sound"], ["sos-label", "sos"], ["signout", "signout"],
      ["instructions-title", "instructions"], ["sos-note-label", "sos_note"],
      ["sos-note-send", "sos_note_send"]]) {
      $(id).textContent = t[key];
    }
    $("lang").textContent = t.other;
    $("lang").href = `?lang=${lang === "en" ? "zh" : "en"}`;
    const cc = window.cc;
    $("call").onclick = () => cc.callCenter().catch(report);
    $("cancel").onclick = () => cc.cancel().catch(report);
    $("hangup").onclick = () => cc.hangup().catch(report);
    $("mute").onclick = () => cc.setMuted(!cc.state().muted);
    $("camera").onclick = () => cc.setCameraOff(!cc.state().cameraOff);
    $("flip").onclick = () => cc.switchCamera().catch(report);
    $("signout").onclick = () => cc.signOut().catch(report);
    holdToRaise($("sos"));
    $("sos-note-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const note = $("sos-note").value.trim().slice(0, 200);
      if (!note) return;
      cc.emergencyNote(note).then(() => { $("sos-note").value = ""; }).catch(report);
    });
    for (const [id, key] of [["evidence-title", "evidence"], ["case-label", "case"],
      ["photo-label", "photo"], ["video-label", "video"], ["audio-label", "audio"]]) {
      $(id).textContent = t[key];
    }
    $("case").value = window.ccCapture.caseNumber();
    for (const id of ["photo-input", "video-input", "audio-input"]) {
      $(id).addEventListener("change", () => captured($(id)));
    }
    window.ccCapture.subscribe(drawUploads);
    cc.subscribe(draw);
  });
})();
