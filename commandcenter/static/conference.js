/*
 * The conference page (视频会商): one page, two views, chosen by the role the server gives us in
 * `conference_joined`:
 *
 *   - moderator: the conferences, a form to host one (a meeting or an action), then every
 *     site with its state (joined or away, hand and place in the queue, the floor and its time
 *     left, heard or muted, speaking now, the spotlight), the invitations and their answers,
 *     and every moderator action (recording included);
 *   - site: the spotlight video, the voices in the audio slots, the own floor (raise and lower
 *     the hand, release the floor) and whether the own microphone is heard;
 *   - witness: what a site sees (an action's grid too), and nothing to press but leave.
 *
 * Everyone sees whether the conference is recorded and the live calls shown to it; the
 * moderators (and an operator, for the call they answer) share one and stop it. What is shown
 * is the server's state (ConferenceState and the changes conference_update brings,
 * conference_speaking), never our own guess.
 *
 * Its parts, in this order, each only talking to the next through plain calls:
 *
 *   - the translation table: every string a person reads (zh-CN by default; `#lang=en`);
 *   - `Hub`: the protocol client. It alone owns the WebSocket (sign-in with the token,
 *     heartbeats and the clock offset, reconnect with resume) and turns replies into promises;
 *   - the store: one object fed by the protocol's messages (docs/protocol.md, *Conferences*),
 *     read by the views;
 *   - `ConferenceMedia`: ONE RTCPeerConnection with the server per conference. We offer camera
 *     and microphone with call_id = the conference id; the server answers, then offers our
 *     slots, whose stream ids name them (`audio-<i>`, `spotlight`, `grid-<i>`). What a slot
 *     carries changes without renegotiation; `conference_media` says whose media it is;
 *   - the views (lobby, stage, site, moderator), which update their elements in place;
 *   - the test API on `window.conf`, which tests/browser_conference_scenario.py drives beside
 *     the buttons (which call the same functions).
 *
 * No build step and no dependencies: plain script, served as-is from /app/.
 */
"use strict";

(() => {
  const PROTOCOL_VERSION = 1;
  const APP_VERSION = "web-conference-0.1.0";
  // Close codes after which reconnecting would only make things worse (see protocol.md).
  const NO_RECONNECT = new Set([4400, 4401, 4403, 4409]);
  const RECONNECT_MAX_S = 15;
  const MAX_EVENTS = 200;
  // Who may host a conference (create_conference).
  const HOSTS = new Set(["operator", "supervisor", "admin"]);
  // Countdowns (the floor's time left) are redrawn this often.
  const TICK_MS = 250;
  // The one video codec of a conference's slots (media.conference_video_codec): a camera in
  // another codec would not be shown, so VP8 goes first in our offer.
  const CONFERENCE_VIDEO = "video/vp8";
  // A conference console's camera: enough for a tile on a wall of sites, light to encode.
  const CAMERA = { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 15 } };

  // ---- the translation table ----------------------------------------------------------------

  const STRINGS = {
    "zh-CN": {
      "page.title": "视频会商",
      "status.connecting": "正在连接…",
      "status.connected": "已连接",
      "status.disconnected": "连接已断开（{code}）",
      "status.no_token": "链接中没有登录凭证",
      who: "{name} · {role} · {court}",
      "role.officer": "执行干警",
      "role.operator": "指挥中心值班员",
      "role.supervisor": "指挥长",
      "role.admin": "管理员",
      "role.auditor": "审计员",
      "role.witness": "监督员",
      "lobby.title": "会商",
      "lobby.invitations": "会商邀请",
      "lobby.list": "可参加的会商",
      "lobby.refresh": "刷新列表",
      "lobby.none": "暂无会商",
      "lobby.join": "加入",
      "lobby.decline": "拒绝",
      "lobby.start": "提前开始",
      "lobby.cancel": "取消会商",
      "lobby.invitation": "{host}邀请您参加「{title}」",
      "lobby.conference": "「{title}」 · {kind} · 主办：{host} · {status} · {sites}个席位{locked}",
      "lobby.locked": " · 已锁定",
      "lobby.scheduled": "预定于 {time}",
      "lobby.running": "进行中",
      "create.title": "发起会商",
      "create.field.title": "会商标题",
      "create.field.kind": "会商类型",
      "kind.meeting": "会商",
      "kind.action": "集中执行行动",
      "create.field.invite_below": "邀请法院及其下级法院（法院代码，用逗号分隔）",
      "create.field.invite_courts": "邀请法院（法院代码，用逗号分隔）",
      "create.field.invite_users": "邀请人员（用户编号，用逗号分隔）",
      "create.field.starts_at": "开始时间（留空则立即开始）",
      "create.field.max_speakers": "最多同时发言席位",
      "create.field.max_talk_s": "每次发言时限（秒，留空则不限）",
      "create.submit": "发起会商",
      "create.scheduled": "会商「{title}」已预定",
      "conf.summary":
        "{kind} · 主持：{chair} · {audio} · {mode}，最多{speakers}席同时发言{talk}{locked} · 状态版本 {revision}",
      "conf.no_chair": "暂无主持",
      "conf.talk": "，每次限{seconds}秒",
      "conf.locked": " · 已锁定",
      "conf.leave": "退出会商",
      "conf.recording": "● 正在录制：会商的声音和画面正作为证据录制",
      "audio.floor": "仅发言席位可被听到",
      "audio.open": "全体开放发言",
      "mode.moderated": "主持人指定",
      "mode.open": "举手即发言",
      "stage.local": "本席画面",
      "stage.grid": "各席位画面",
      "stage.unmute": "开启声音",
      "stage.spotlight": "焦点画面：{name}",
      "stage.spotlight_none": "焦点画面：暂无",
      "stage.spotlight_self": "焦点画面：本席（其他席位正在看您）",
      "stage.audio_slot": "正在播出：{name}",
      "stage.audio_label": "正在播出的声音",
      "site.title": "发言",
      "site.raise": "举手发言",
      "site.lower": "放下手",
      "site.release": "结束发言",
      "site.mic_off": "关闭麦克风",
      "site.mic_on": "打开麦克风",
      "site.witness": "您以监督员身份旁听，不能发言",
      "site.witness_title": "旁听",
      "floor.not_permitted": "未申请发言",
      "floor.queued": "已举手，排第{position}位",
      "floor.permitted": "您有发言权",
      "floor.called": "主持人点名请您发言",
      "floor.pending_revoke": "主持人正在收回发言权",
      "floor.left": "，剩余{seconds}秒",
      "mic.moderator": "您是主持人，所有席位都能听到您的声音",
      "mic.open": "全体开放发言：所有席位都能听到您的声音",
      "mic.floor": "您有发言权：所有席位都能听到您的声音",
      "mic.muted": "主持人已静音：您的声音不会被听到，请举手申请发言",
      "mic.witness": "监督员不发言",
      "mic.off": "（您的麦克风已关闭）",
      "mic.none": "（没有可用的麦克风）",
      "mod.title": "主持",
      "mod.mute_all": "全体静音",
      "mod.unmute_all": "全体开放发言",
      "mod.spotlight_default": "恢复默认焦点",
      "mod.lock": "锁定会商",
      "mod.unlock": "解除锁定",
      "mod.end": "结束会商",
      "mod.record_start": "开始录制",
      "mod.record_stop": "停止录制",
      "mod.floor_rules": "发言规则",
      "mod.max_speakers": "最多同时发言席位",
      "mod.max_talk_s": "每次发言时限（秒，留空则不限）",
      "mod.mode": "发言方式",
      "mod.apply_rules": "应用发言规则",
      "mod.sites": "席位",
      "mod.invitations": "邀请与应答",
      "col.site": "席位",
      "col.role": "角色",
      "col.connection": "连接",
      "col.floor": "发言",
      "col.audio": "声音",
      "col.spotlight": "焦点",
      "col.actions": "操作",
      "site.role.moderator": "主持人",
      "site.role.chair": "主持人（主持）",
      "site.role.site": "席位",
      "site.role.witness": "监督员",
      "site.status.joined": "在线",
      "site.status.away": "连接中断",
      "site.self": "本席",
      "site.heard": "可被听到",
      "site.muted": "已静音",
      "site.speaking": "正在播出",
      "site.talking": "🎙正在讲话",
      "feeds.title": "接入的现场通话",
      "feeds.none": "暂无接入的通话",
      "feeds.share_title": "接入现场通话",
      "feeds.call_id": "通话编号",
      "feeds.share": "接入会商",
      "feeds.unshare": "停止接入",
      "feeds.item": "{officer}（{court}）的现场通话{emergency} · {by}接入",
      "feeds.emergency": " · 紧急求助",
      "site.is_spotlight": "焦点",
      "act.grant": "授予发言",
      "act.revoke": "收回发言",
      "act.spotlight": "设为焦点",
      "act.remove": "移出",
      "act.ban": "移出并禁止再加入",
      "act.name_moderator": "设为联席主持人",
      "act.remove_moderator": "取消联席主持人",
      "act.withdraw": "撤回邀请",
      "mod.invite_user": "邀请人员（用户编号）",
      "mod.invite": "邀请参会",
      "invitation.withdrawn": "已撤回（{by}）",
      "act.hand_over": "移交主持",
      "invitation.court": "法院 {invitee}",
      "invitation.user": "人员 {invitee}",
      "invitation.ringing": "正在呼叫",
      "invitation.joined": "已加入（{by}）",
      "invitation.declined": "已拒绝（{by}）",
      "invitation.no_answer": "未应答",
      "notice.conflict": "其他主持人刚刚改变了会商状态，已刷新为最新状态，请确认后重新操作",
      "notice.removed": "您已被{by}移出会商",
      "notice.feed.transferred": "{officer}的现场通话已停止接入：{by}已将通话转接给{to}",
      "notice.feed.sent_back": "{officer}的现场通话已停止接入：{by}已将通话转回队列",
      "notice.banned": "您已被{by}移出会商，且不能再加入",
      "notice.node_lost": "服务器切换后您未及时回到会商，席位已释放；可重新加入",
      "notice.ended.ended": "{by}已结束会商",
      "notice.ended.no_moderator": "会商无主持人，已自动结束",
      "notice.ended.shutdown": "服务器停止，会商已结束",
      "notice.ended.node_lost": "服务节点故障，会商已结束",
      "notice.stopped.answered": "{by}已代表本院加入「{title}」",
      "notice.stopped.expired": "「{title}」的邀请已过时，仍可从列表加入",
      "notice.waiting": "正在排队进入会商：第{place}位，约{seconds}秒",
      "notice.floor.moderator": "主持人收回了您的发言权",
      "notice.floor.talk_time": "发言时间已到",
      "notice.floor.preempted": "您的发言权让给了上级法院",
      "notice.floor.mute_all": "主持人已全体静音",
      "notice.floor.superseded": "发言席位已满，您的发言权已被替换",
      "notice.floor.promoted": "您已被设为联席主持人",
      "notice.floor.demoted": "主持人已取消您的联席主持人身份",
      "notice.failed": "操作未成功：{what}",
      "error.forbidden": "无权进行此操作",
      "error.not_found": "会商或席位不存在",
      "error.invalid_state": "当前状态下不能进行此操作",
      "error.conflict": "会商状态已变化",
      "error.rate_limited": "操作过于频繁，请稍后再试",
      "error.unavailable": "指挥中心暂不可用，请稍后再试",
      "error.invalid_message": "请求内容有误",
      "error.media_unavailable": "服务器未开启音视频",
      "error.negotiation_failed": "音视频协商失败",
      "error.internal_error": "服务器内部错误",
      "error.offline": "尚未连接到指挥中心",
      "error.client_error": "页面出错，请刷新后重试",
      "reason.conference is locked": "会商已锁定，不能加入",
      "reason.conference is full": "会商席位已满",
      "reason.conference is scheduled": "会商尚未开始",
      "reason.you were removed from this conference": "您已被移出本会商，不能再加入",
      "reason.you are not invited to this conference": "您未被邀请参加本会商",
      "reason.the site's connection is down": "该席位连接中断，暂不能授予发言",
      "reason.the floor is held already": "已有发言权",
      "reason.the floor is not held": "没有发言权",
      "reason.no hand is raised": "尚未举手",
      "reason.moderators are always heard": "主持人无需申请发言",
      "reason.too many hands are raised; try again later": "举手人数过多，请稍后再试",
      "reason.you are not in this conference": "您不在本会商中",
      "reason.a moderator cannot be removed": "不能移出主持人",
      "reason.this server does not record": "本服务器未开启录制，不能录制会商",
      "reason.already recording": "会商已在录制中",
      "reason.not recording": "会商未在录制",
      "reason.no such call": "没有这个通话",
      "reason.the call is not answered": "该通话尚未接通",
      "reason.that call is shared already": "该通话已接入会商",
      "reason.4 calls are shared already": "已接入4路通话，不能再接入",
      "reason.that call is outside your scope": "该通话不在您的管辖范围内",
      "reason.only a moderator, or the call's operator in the conference, may share it":
        "只有主持人或接听该通话的值班员可以接入",
      "reason.only a moderator, or who shared the call, may take it back": "只有主持人或接入人可以停止接入",
      "reason.that call is not shared with this conference": "该通话未接入本会商",
      "log.title": "事件记录",
    },
    en: {
      "page.title": "Video conference",
      "status.connecting": "connecting…",
      "status.connected": "connected",
      "status.disconnected": "disconnected ({code})",
      "status.no_token": "no token in the link",
      who: "{name} · {role} · {court}",
      "role.officer": "officer",
      "role.operator": "operator",
      "role.supervisor": "supervisor",
      "role.admin": "admin",
      "role.auditor": "auditor",
      "role.witness": "witness",
      "lobby.title": "Conferences",
      "lobby.invitations": "Invitations",
      "lobby.list": "Conferences you may join",
      "lobby.refresh": "Refresh",
      "lobby.none": "No conferences",
      "lobby.join": "Join",
      "lobby.decline": "Decline",
      "lobby.start": "Start now",
      "lobby.cancel": "Call off",
      "lobby.invitation": "{host} invites you to “{title}”",
      "lobby.conference": "“{title}” · {kind} · host: {host} · {status} · {sites} sites{locked}",
      "lobby.locked": " · locked",
      "lobby.scheduled": "scheduled for {time}",
      "lobby.running": "running",
      "create.title": "Host a conference",
      "create.field.title": "Title",
      "create.field.kind": "Kind",
      "kind.meeting": "meeting",
      "kind.action": "enforcement action",
      "create.field.invite_below": "Invite courts and every court below (codes, comma separated)",
      "create.field.invite_courts": "Invite courts (codes, comma separated)",
      "create.field.invite_users": "Invite users (ids, comma separated)",
      "create.field.starts_at": "Starts at (empty: now)",
      "create.field.max_speakers": "Speakers at once",
      "create.field.max_talk_s": "Talk time, seconds (empty: unlimited)",
      "create.submit": "Host",
      "create.scheduled": "“{title}” is scheduled",
      "conf.summary":
        "{kind} · Chair: {chair} · {audio} · {mode}, up to {speakers} speakers{talk}{locked} · revision {revision}",
      "conf.no_chair": "none",
      "conf.talk": ", {seconds} s each",
      "conf.locked": " · locked",
      "conf.leave": "Leave",
      "conf.recording": "● Recording: what the conference hears and sees is kept as evidence",
      "audio.floor": "only the floor is heard",
      "audio.open": "everyone is heard",
      "mode.moderated": "moderated",
      "mode.open": "open floor",
      "stage.local": "This site",
      "stage.grid": "Sites",
      "stage.unmute": "Turn sound on",
      "stage.spotlight": "Spotlight: {name}",
      "stage.spotlight_none": "Spotlight: nobody",
      "stage.spotlight_self": "Spotlight: you (the other sites see you)",
      "stage.audio_slot": "Heard: {name}",
      "stage.audio_label": "Voices heard",
      "site.title": "Floor",
      "site.raise": "Raise hand",
      "site.lower": "Lower hand",
      "site.release": "Release the floor",
      "site.mic_off": "Microphone off",
      "site.mic_on": "Microphone on",
      "site.witness": "You watch as a witness and do not speak",
      "site.witness_title": "Watching",
      "floor.not_permitted": "Not asked to speak",
      "floor.queued": "Hand raised, number {position} in the queue",
      "floor.permitted": "You have the floor",
      "floor.called": "The moderator calls on you",
      "floor.pending_revoke": "The moderator is taking the floor back",
      "floor.left": ", {seconds} s left",
      "mic.moderator": "You moderate: every site hears you",
      "mic.open": "Open discussion: every site hears you",
      "mic.floor": "You have the floor: every site hears you",
      "mic.muted": "Muted by the moderator: nobody hears you; raise your hand to speak",
      "mic.witness": "Witnesses do not speak",
      "mic.off": " (your microphone is off)",
      "mic.none": " (no microphone)",
      "mod.title": "Moderation",
      "mod.mute_all": "Mute all",
      "mod.unmute_all": "Unmute all",
      "mod.spotlight_default": "Default spotlight",
      "mod.lock": "Lock",
      "mod.unlock": "Unlock",
      "mod.end": "End the conference",
      "mod.record_start": "Start recording",
      "mod.record_stop": "Stop recording",
      "mod.floor_rules": "Floor rules",
      "mod.max_speakers": "Speakers at once",
      "mod.max_talk_s": "Talk time, seconds (empty: unlimited)",
      "mod.mode": "Mode",
      "mod.apply_rules": "Apply",
      "mod.sites": "Sites",
      "mod.invitations": "Invitations",
      "col.site": "Site",
      "col.role": "Role",
      "col.connection": "Connection",
      "col.floor": "Floor",
      "col.audio": "Audio",
      "col.spotlight": "Spotlight",
      "col.actions": "Actions",
      "site.role.moderator": "moderator",
      "site.role.chair": "moderator (chair)",
      "site.role.site": "site",
      "site.role.witness": "witness",
      "site.status.joined": "joined",
      "site.status.away": "away",
      "site.self": "you",
      "site.heard": "heard",
      "site.muted": "muted",
      "site.speaking": "on air",
      "site.talking": "🎙speaking",
      "feeds.title": "Live calls shown",
      "feeds.none": "No calls shown",
      "feeds.share_title": "Show a live call",
      "feeds.call_id": "Call id",
      "feeds.share": "Show",
      "feeds.unshare": "Stop showing",
      "feeds.item": "{officer} ({court}), live call{emergency} · shown by {by}",
      "feeds.emergency": " · emergency",
      "site.is_spotlight": "spotlight",
      "act.grant": "Grant floor",
      "act.revoke": "Revoke floor",
      "act.spotlight": "Spotlight",
      "act.remove": "Remove",
      "act.ban": "Remove and ban",
      "act.name_moderator": "Name co-moderator",
      "act.remove_moderator": "Take back co-moderator",
      "act.withdraw": "Withdraw",
      "mod.invite_user": "Invite a user (user id)",
      "mod.invite": "Invite",
      "invitation.withdrawn": "withdrawn ({by})",
      "act.hand_over": "Hand over the chair",
      "invitation.court": "court {invitee}",
      "invitation.user": "user {invitee}",
      "invitation.ringing": "ringing",
      "invitation.joined": "joined ({by})",
      "invitation.declined": "declined ({by})",
      "invitation.no_answer": "no answer",
      "notice.conflict": "Another moderator just changed the conference; it is refreshed, check and try again",
      "notice.removed": "{by} removed you from the conference",
      "notice.feed.transferred": "{officer}'s live call is no longer shown: {by} handed it on to {to}",
      "notice.feed.sent_back": "{officer}'s live call is no longer shown: {by} sent it back to the queue",
      "notice.banned": "{by} removed you from the conference; you may not join again",
      "notice.node_lost": "You did not come back in time after a server failover; your place was let go. You may join again",
      "notice.ended.ended": "{by} ended the conference",
      "notice.ended.no_moderator": "The conference ended: no moderator",
      "notice.ended.shutdown": "The conference ended: the server stopped",
      "notice.ended.node_lost": "The conference ended: a server node was lost",
      "notice.stopped.answered": "{by} joined “{title}” for your court",
      "notice.stopped.expired": "The invitation to “{title}” expired; you may still join from the list",
      "notice.waiting": "Waiting to join: place {place}, about {seconds} s",
      "notice.floor.moderator": "The moderator took the floor back",
      "notice.floor.talk_time": "Your talk time is over",
      "notice.floor.preempted": "Your floor went to a higher court",
      "notice.floor.mute_all": "The moderator muted everyone",
      "notice.floor.superseded": "The floor was full; your floor went to another site",
      "notice.floor.promoted": "You were named co-moderator",
      "notice.floor.demoted": "The chair took back your co-moderator part",
      "notice.failed": "Not done: {what}",
      "error.forbidden": "not allowed",
      "error.not_found": "no such conference or site",
      "error.invalid_state": "not possible now",
      "error.conflict": "the conference changed",
      "error.rate_limited": "too fast; try again in a moment",
      "error.unavailable": "the command center is unavailable; try again",
      "error.invalid_message": "invalid request",
      "error.media_unavailable": "media is off on this server",
      "error.negotiation_failed": "media negotiation failed",
      "error.internal_error": "server error",
      "error.offline": "not connected",
      "error.client_error": "the page failed; reload it and try again",
      "reason.conference is locked": "the conference is locked",
      "reason.conference is full": "the conference is full",
      "reason.conference is scheduled": "the conference has not started",
      "reason.you were removed from this conference": "you were removed from this conference",
      "reason.you are not invited to this conference": "you are not invited",
      "reason.the site's connection is down": "the site's connection is down",
      "reason.the floor is held already": "the floor is held already",
      "reason.the floor is not held": "the floor is not held",
      "reason.no hand is raised": "no hand is raised",
      "reason.moderators are always heard": "moderators are always heard",
      "reason.too many hands are raised; try again later": "too many hands; try again later",
      "reason.you are not in this conference": "you are not in this conference",
      "reason.a moderator cannot be removed": "a moderator cannot be removed",
      "reason.this server does not record": "this server does not record",
      "reason.already recording": "already recording",
      "reason.not recording": "not recording",
      "reason.no such call": "no such call",
      "reason.the call is not answered": "the call is not answered",
      "reason.that call is shared already": "that call is shown already",
      "reason.4 calls are shared already": "4 calls are shown already",
      "reason.that call is outside your scope": "that call is outside your scope",
      "reason.only a moderator, or the call's operator in the conference, may share it":
        "only a moderator, or the call's operator, may show it",
      "reason.only a moderator, or who shared the call, may take it back":
        "only a moderator, or who showed the call, may stop it",
      "reason.that call is not shared with this conference": "that call is not shown here",
      "log.title": "Events",
    },
  };

  // ---- the link -----------------------------------------------------------------------------

  // The token comes in the URL fragment (#token=...): a fragment is never sent to a server,
  // so it stays out of access logs and proxies. It is taken out of the address bar at once.
  const fragment = new URLSearchParams(location.hash.slice(1));
  // Without one, the sign-in cookie buys it (POST /api/session/token): the console links here,
  // and a moderator signed in there is signed in here too (a witness keeps their link).
  let token = fragment.get("token") || "";
  let fromCookie = false;
  const DEVICE = fragment.get("device") || "";
  const LANG = STRINGS[fragment.get("lang")] ? fragment.get("lang") : "zh-CN";
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);

  const RESUME_KEY = "cc.console.resume";
  function storedResume() {
    try {
      return sessionStorage.getItem(RESUME_KEY);
    } catch {
      return null;
    }
  }
  function storeResume(value) {
    try {
      if (value) sessionStorage.setItem(RESUME_KEY, value);
      else sessionStorage.removeItem(RESUME_KEY);
    } catch {
      // Storage refused: the next page signs in again.
    }
  }

  // A WebSocket token from the sign-in cookie; false (and off to the sign-in page) without one.
  async function tokenFromCookie() {
    fromCookie = true;
    for (let delay = 1; ; delay = Math.min(delay * 2, 30)) {
      let resp = null;
      try {
        resp = await fetch("/api/session/token", { method: "POST", credentials: "same-origin" });
      } catch {
        resp = null;
      }
      if (resp && resp.status === 401) {
        location.replace(`/app/signin.html?next=${encodeURIComponent(location.pathname)}`);
        return false;
      }
      if (resp && resp.ok) {
        token = (await resp.json()).token;
        return true;
      }
      await new Promise((r) => setTimeout(r, delay * 1000 * (0.5 + Math.random())));
    }
  }

  function t(key, params = {}) {
    const text = STRINGS[LANG][key] ?? STRINGS["zh-CN"][key] ?? key;
    return text.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ""));
  }

  // ---- the protocol client ------------------------------------------------------------------

  /*
   * The hub WebSocket: sign-in, heartbeats (which also give the server's clock), replies as
   * promises, pushes to `onPush`, and reconnecting with `resume` so that a dropped connection
   * keeps the session and its conference. Nothing else in this page touches the socket.
   */
  class Hub {
    constructor(handlers) {
      this.handlers = handlers; // {onWelcome(msg, again), onPush(msg), onStatus()}
      this.ws = null;
      this.nextId = 1;
      this.pending = new Map(); // message id -> {resolve, reject}
      this.connected = false;
      this.closeCode = null;
      // Signed in by the cookie, this page shares the console's session in this tab (the same
      // sessionStorage key): going from the console to here and back resumes it rather than
      // signing in again, which would end the operator's calls (one connection per user).
      this.resumeToken = null;
      this.welcomed = false;
      this.heartbeat = null;
      this.rttMs = null;
      this.reconnectDelay = 1;
      // Device clock minus server clock, ms (protocol.md, *Heartbeat and clock offset*).
      this.offsetMs = 0;
    }

    connect() {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      if (!this.resumeToken && fromCookie) this.resumeToken = storedResume();
      const query = new URLSearchParams({ token, v: String(PROTOCOL_VERSION), app: APP_VERSION });
      if (DEVICE) query.set("device", DEVICE);
      if (this.resumeToken) query.set("resume", this.resumeToken);
      this.ws = new WebSocket(`${scheme}://${location.host}/ws?${query}`);
      this.ws.onmessage = (e) => this.received(JSON.parse(e.data));
      this.ws.onclose = (e) => this.closed(e.code, e.reason);
      this.handlers.onStatus();
    }

    closed(code, reason) {
      this.connected = false;
      this.closeCode = code;
      clearInterval(this.heartbeat);
      for (const { reject } of this.pending.values()) reject(offline());
      this.pending.clear();
      this.handlers.onPush({ type: "closed", code, reason });
      if (code === 4401 && fromCookie) {
        // Expired: a new token from the cookie, and the same session resumed with it.
        void tokenFromCookie().then((ok) => ok && this.connect());
        return;
      }
      if (!NO_RECONNECT.has(code) && token) {
        // Backed off and spread, so that a restarted server is not met by everyone at once.
        setTimeout(() => this.connect(), this.reconnectDelay * 1000 * (0.5 + Math.random()));
        this.reconnectDelay = Math.min(this.reconnectDelay * 2, RECONNECT_MAX_S);
      }
      this.handlers.onStatus();
    }

    // The next reply quoting `ref` again (after a `conference_waiting`, the
    // `conference_joined` that follows in turn).
    again(ref) {
      return new Promise((resolve, reject) => this.pending.set(ref, { resolve, reject }));
    }

    // No reply will come for `ref`: whoever waits for it is given `err`.
    abandon(ref, err) {
      const pending = this.pending.get(ref);
      this.pending.delete(ref);
      if (pending) pending.reject(err);
    }

    // Resolves with the reply (ack, conference_joined, ...), or rejects with an Error whose
    // `code` and `reason` are the server's.
    request(type, fields = {}) {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN || !this.connected) {
        return Promise.reject(offline());
      }
      const id = `f-${this.nextId++}`;
      this.ws.send(JSON.stringify({ type, id, ...fields }));
      return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
    }

    received(msg) {
      if (msg.ref != null && this.pending.has(msg.ref)) {
        const { resolve, reject } = this.pending.get(msg.ref);
        this.pending.delete(msg.ref);
        if (msg.type === "error") reject(refused(msg));
        else resolve(msg);
        return;
      }
      if (msg.type === "welcome") {
        const again = this.welcomed;
        this.welcomed = true;
        this.connected = true;
        this.resumeToken = msg.resume_token;
        if (fromCookie) storeResume(msg.resume_token);
        this.reconnectDelay = 1;
        this.offsetMs = Date.now() - msg.server_time;
        clearInterval(this.heartbeat);
        this.heartbeat = setInterval(() => this.sendHeartbeat(), msg.heartbeat_interval_s * 1000);
        this.sendHeartbeat();
        this.handlers.onStatus();
        this.handlers.onWelcome(msg, again);
        return;
      }
      this.handlers.onPush(msg);
    }

    sendHeartbeat() {
      const sentAt = Date.now();
      const fields = { device_time: sentAt };
      if (this.rttMs != null) fields.rtt_ms = Math.min(this.rttMs, 60000);
      this.request("heartbeat", fields)
        .then((ack) => {
          this.rttMs = Date.now() - sentAt;
          this.offsetMs = ack.offset_ms;
        })
        .catch(() => {});
    }

    // The server's clock now, ms: what `FloorInfo.until` is measured on.
    serverNow() {
      return Date.now() - this.offsetMs;
    }
  }

  function refused(msg) {
    const err = new Error(`${msg.code}: ${msg.reason}`);
    err.code = msg.code;
    err.reason = msg.reason;
    err.field = msg.field;
    return err;
  }

  function offline() {
    const err = new Error("not connected");
    err.code = "offline";
    err.reason = "not connected";
    return err;
  }

  // ---- the store ----------------------------------------------------------------------------

  const EMPTY_LINEUP = { audio: [], spotlight: null, grid: [] };

  const store = {
    user: null, // UserInfo from the welcome
    conferences: [], // ConferenceInfo, from list_conferences
    ringing: new Map(), // conference id -> ConferenceInfo, invitations ringing at us
    conf: null, // the conference we are in: see enter()
    revision: null, // the latest revision seen; quoted by moderator messages
    notice: null, // {kind: "info"|"warning"|"error", text}
    lastError: null, // {action, code, reason}
    left: null, // our conference_left: {conference_id, reason, by}
    ended: null, // our conference_ended: {conference_id, reason, by}
    conflicts: 0, // conflicts met (each followed by a refresh)
    refreshes: 0, // join_conference sent again for the current state
    waiting: null, // our conference_waiting while the join is queued: {conference_id, place, wait_s}
    events: [], // pushes received, newest last (sdp left out)
  };
  // Every UserInfo seen, by id: names for ids (conference_media names only ids).
  const people = new Map();

  function remember(user) {
    if (user && user.id && (user.name !== user.id || !people.has(user.id))) people.set(user.id, user);
  }

  function nameOf(id) {
    if (id == null) return "";
    const user = people.get(id);
    return user ? user.name : id;
  }

  function rememberConference(info) {
    remember(info.host);
  }

  function rememberState(state) {
    remember(state.chair);
    remember(state.spotlight);
    for (const h of state.holders) remember(h);
    for (const f of state.feeds || []) {
      remember(f.officer);
      remember(f.by);
    }
  }

  // A `conference_joined`: the whole truth about the conference, for a new join or a refresh.
  function enter(msg) {
    const id = msg.conference.conference_id;
    const fresh = !store.conf || store.conf.id !== id;
    rememberConference(msg.conference);
    rememberState(msg.state);
    for (const s of msg.sites) remember(s.user);
    for (const i of msg.invitations) remember(i.by);
    store.conf = {
      id,
      info: msg.conference,
      state: msg.state,
      role: msg.role,
      floor: msg.floor,
      floorReason: fresh ? null : store.conf.floorReason,
      sites: new Map(msg.sites.map((s) => [s.user.id, s])),
      invitations: new Map(msg.invitations.map((i) => [`${i.kind}:${i.invitee}`, i])),
      lineup: fresh ? EMPTY_LINEUP : store.conf.lineup,
      // conference_speaking (moderators only): the user ids speaking now. Sent only when it
      // changes, so a refresh keeps what we were told.
      speaking: fresh ? [] : store.conf.speaking,
    };
    store.revision = msg.state.revision;
    store.ringing.delete(id);
    if (fresh) {
      store.left = null;
      store.ended = null;
    }
    return fresh;
  }

  function ours(msg) {
    return store.conf && msg.conference_id === store.conf.id;
  }

  // Pushes, as docs/protocol.md describes them; unknown ones are ignored, as it asks.
  function apply(msg) {
    const conf = store.conf;
    switch (msg.type) {
      case "conference_invitation":
        rememberConference(msg.conference);
        store.ringing.set(msg.conference.conference_id, msg.conference);
        listConferences();
        break;
      case "invitation_stopped": {
        const info = store.ringing.get(msg.conference_id);
        store.ringing.delete(msg.conference_id);
        remember(msg.by);
        if (info && msg.reason !== "ended") {
          const by = msg.by ? msg.by.name : "";
          notify("info", t(`notice.stopped.${msg.reason}`, { by, title: info.title }));
        }
        listConferences();
        break;
      }
      case "conference_update":
        // What changed since the last one: the fields present replace ours.
        if (ours(msg)) {
          conf.state = { ...conf.state, ...msg.changes, revision: msg.revision };
          rememberState(conf.state);
          conf.info = { ...conf.info, locked: conf.state.locked, chair: conf.state.chair?.id ?? null };
          store.revision = msg.revision;
        }
        break;
      case "floor_status":
        if (ours(msg)) {
          conf.floor = msg.floor;
          conf.floorReason = msg.reason;
          if (msg.reason && msg.floor.state === "not_permitted") {
            notify("warning", t(`notice.floor.${msg.reason}`));
          }
        }
        break;
      case "sites_changed":
        if (ours(msg)) {
          for (const s of msg.sites) {
            remember(s.user);
            conf.sites.set(s.user.id, s);
          }
          for (const id of msg.left) conf.sites.delete(id);
          for (const i of msg.invitations || []) {
            remember(i.by);
            conf.invitations.set(`${i.kind}:${i.invitee}`, i);
          }
          if (msg.queue) {
            // The raised hands moved up: a site's place is its index in the queue.
            msg.queue.forEach((id, i) => {
              const s = conf.sites.get(id);
              if (s && s.floor.state === "queued" && s.floor.position !== i + 1) {
                conf.sites.set(id, { ...s, floor: { ...s.floor, position: i + 1 } });
              }
            });
          }
          store.revision = msg.revision;
          // Named co-moderator: from now on we see what moderators see.
          const me = conf.sites.get(store.user.id);
          if (me && me.role === "moderator" && conf.role !== "moderator") {
            conf.role = "moderator";
            notify("info", t("notice.floor.promoted"));
          } else if (me && me.role === "site" && conf.role === "moderator") {
            // Our co-moderator part taken back: a site again, as any other.
            conf.role = "site";
            conf.invitations.clear();
            notify("info", t("notice.floor.demoted"));
          }
        }
        break;
      case "conference_media":
        if (ours(msg)) conf.lineup = { audio: msg.audio, spotlight: msg.spotlight, grid: msg.grid };
        break;
      case "conference_speaking":
        if (ours(msg)) conf.speaking = msg.speaking;
        break;
      case "conference_left":
        if (ours(msg)) {
          store.left = { conference_id: msg.conference_id, reason: msg.reason, by: msg.by };
          notify("warning", t(`notice.${msg.reason}`, { by: nameOf(msg.by) }));
          quit();
        }
        listConferences();
        break;
      case "feed_ended":
        // A call its operator showed went with them (handed on, sent back): the moderators
        // are told why it left the feeds, not just that it did.
        if (ours(msg)) {
          notify("info", t(`notice.feed.${msg.reason}`, {
            officer: msg.officer.name,
            by: msg.by.name,
            to: msg.to ? msg.to.name : "",
          }));
        }
        break;
      case "conference_ended":
        store.ringing.delete(msg.conference_id);
        if (store.waiting && store.waiting.conference_id === msg.conference_id) {
          // It ended while we waited to be let in: the join will not be answered.
          hub.abandon(store.waiting.ref, refused({ code: "invalid_state", reason: "conference is ended" }));
        }
        if (ours(msg)) {
          store.ended = { conference_id: msg.conference_id, reason: msg.reason, by: msg.by };
          notify("warning", t(`notice.ended.${msg.reason}`, { by: nameOf(msg.by) }));
          quit();
        }
        listConferences();
        break;
      case "offer":
        if (media && media.conferenceId === msg.call_id) media.serverOffer(msg.sdp);
        break;
      case "ice_candidate":
        if (media && media.conferenceId === msg.call_id) media.remoteCandidate(msg);
        break;
      case "media_restart":
        // The conference's media worker died and the server moved it: offer again from a new
        // peer connection, as after a failed one.
        if (media && media.conferenceId === msg.call_id) restartMedia();
        break;
      default:
        break;
    }
    log(msg);
  }

  // We are out of the conference (left, removed, ended): its media goes with it.
  function quit() {
    store.conf = null;
    store.revision = null;
    stopMedia();
  }

  function notify(kind, text) {
    store.notice = { kind, text, at: Date.now() };
  }

  function log(msg) {
    const entry = { at: Date.now(), ...msg };
    delete entry.sdp; // long and of no use here
    delete entry.resume_token; // as good as the token while the session lives
    store.events.push(entry);
    if (store.events.length > MAX_EVENTS) store.events.shift();
    const li = document.createElement("li");
    const why = msg.reason ? ` (${msg.reason})` : "";
    li.textContent = `${new Date(entry.at).toLocaleTimeString(LANG)} ${msg.type}${why}`;
    $("log-list").prepend(li);
    while ($("log-list").children.length > MAX_EVENTS) $("log-list").lastChild.remove();
  }

  // ---- actions ------------------------------------------------------------------------------

  /*
   * Every action the page offers, for the buttons and the test API alike. Each resolves to
   * {ok: true, reply} or {ok: false, code, reason}; a refusal is also shown on the page.
   */
  async function act(action, run) {
    try {
      const reply = await run();
      render();
      return { ok: true, reply: reply ?? null };
    } catch (err) {
      // The server's refusals carry its code; anything else went wrong in this page.
      const code = typeof err.code === "string" ? err.code : "client_error";
      const reason = err.reason || `${err.name}: ${err.message}`;
      if (code === "client_error") console.error(err);
      store.lastError = { action, code, reason, at: Date.now() };
      // A conflict has its own notice (see moderate); anything else is said here.
      if (code !== "conflict") notify("error", t("notice.failed", { what: describeError(code, reason) }));
      render();
      return { ok: false, code, reason };
    }
  }

  function describeError(code, reason) {
    const known = STRINGS["zh-CN"][`reason.${reason}`];
    return known ? t(`reason.${reason}`) : t(`error.${code}`);
  }

  async function listConferences() {
    try {
      const reply = await hub.request("list_conferences");
      for (const c of reply.conferences) rememberConference(c);
      store.conferences = reply.conferences;
    } catch {
      // Offline: the list is asked for again after the next welcome.
    }
    render();
  }

  const commaList = (text) =>
    String(text || "")
      .split(/[\s,，、;；]+/)
      .map((s) => s.trim())
      .filter(Boolean);

  // Host a conference; one that runs now is joined at once (creating does not join).
  function create(fields) {
    return act("create_conference", async () => {
      const msg = { title: fields.title };
      for (const list of ["invite_courts", "invite_below", "invite_users"]) {
        const items = Array.isArray(fields[list]) ? fields[list] : commaList(fields[list]);
        if (items.length) msg[list] = items;
      }
      if (fields.court) msg.court = fields.court;
      if (fields.starts_at) msg.starts_at = fields.starts_at - hub.offsetMs;
      if (fields.max_speakers) msg.max_speakers = Number(fields.max_speakers);
      if (fields.max_talk_s) msg.max_talk_s = Number(fields.max_talk_s);
      if (fields.kind) msg.kind = fields.kind;
      const reply = await hub.request("create_conference", msg);
      const info = reply.conference;
      rememberConference(info);
      if (info.status === "running") await joinNow(info.conference_id);
      else notify("info", t("create.scheduled", { title: info.title }));
      listConferences();
      return info;
    });
  }

  async function joinNow(id) {
    if (store.conf && store.conf.id !== id) {
      // One conference at a time on this page.
      await hub.request("leave_conference", { conference_id: store.conf.id }).catch(() => {});
      quit();
    }
    let reply = await hub.request("join_conference", { conference_id: id });
    // Sites are let in at a pace: we are told our place, and joined in turn. Told again
    // (the server that took over from a failed one queued us anew), we wait again.
    while (reply.type === "conference_waiting") {
      const { place, wait_s } = reply;
      store.waiting = { conference_id: id, place, wait_s, ref: reply.ref };
      notify("info", t("notice.waiting", { place, seconds: Math.max(1, Math.ceil(wait_s)) }));
      render();
      try {
        reply = await hub.again(reply.ref);
      } finally {
        store.waiting = null;
      }
    }
    const fresh = enter(reply);
    store.notice = null;
    if (fresh || !media) startMedia(id);
    render();
    return reply;
  }

  const join = (id) => act("join_conference", () => joinNow(id));

  // join_conference again, for the current state (after a conflict, or a resume).
  async function refresh() {
    if (!store.conf) return;
    store.refreshes += 1;
    const reply = await hub.request("join_conference", { conference_id: store.conf.id });
    enter(reply);
    render();
  }

  const decline = (id) =>
    act("decline_conference", async () => {
      await hub.request("decline_conference", { conference_id: id });
      store.ringing.delete(id);
    });

  const start = (id) =>
    act("start_conference", async () => {
      await hub.request("start_conference", { conference_id: id });
      await joinNow(id);
    });

  // A scheduled conference called off by its host (end_conference before it starts).
  const callOff = (id) =>
    act("end_conference", async () => {
      await hub.request("end_conference", { conference_id: id });
      listConferences();
    });

  const leave = () =>
    act("leave_conference", async () => {
      if (!store.conf) return;
      const id = store.conf.id;
      quit();
      await hub.request("leave_conference", { conference_id: id });
      listConferences();
    });

  function site(type) {
    return () =>
      act(type, async () => {
        if (!store.conf) throw offline();
        return hub.request(type, { conference_id: store.conf.id });
      });
  }

  /*
   * A moderator's message, quoting the latest revision seen (override with
   * `options.revision`; null leaves it out). On `conflict` another moderator changed the
   * conference first: say so, and ask for the state again (join_conference), so that the
   * moderator decides again on what now is.
   */
  async function moderate(type, fields = {}, options = {}) {
    if (!store.conf) throw offline();
    const msg = { conference_id: store.conf.id, ...fields };
    const revision = "revision" in options ? options.revision : store.revision;
    if (revision != null) msg.revision = revision;
    try {
      return await hub.request(type, msg);
    } catch (err) {
      if (err.code === "conflict") {
        store.conflicts += 1;
        notify("warning", t("notice.conflict"));
        await refresh().catch(() => {});
      }
      throw err;
    }
  }

  // mute_all and end_conference apply whatever else changed meanwhile (protocol.md,
  // *Revision and conflict*): a moderator silencing the room must not be refused.
  const UNCONDITIONAL = { revision: null };

  const moderator = {
    grant: (user, options) => act("grant_floor", () => moderate("grant_floor", { site: user }, options)),
    revoke: (user, options) => act("revoke_floor", () => moderate("revoke_floor", { site: user }, options)),
    muteAll: (options = UNCONDITIONAL) => act("mute_all", () => moderate("mute_all", {}, options)),
    unmuteAll: (options) => act("unmute_all", () => moderate("unmute_all", {}, options)),
    spotlight: (user, options) =>
      act("spotlight", () => moderate("spotlight", user ? { site: user } : {}, options)),
    remove: (user, ban = false, options) =>
      act("remove_site", () => moderate("remove_site", { site: user, ban }, options)),
    lock: (locked, options) => act("lock_conference", () => moderate("lock_conference", { locked }, options)),
    setFloor: (rules, options) =>
      act("set_floor", () => {
        const fields = { max_speakers: Number(rules.max_speakers), mode: rules.mode || "moderated" };
        if (rules.max_talk_s) fields.max_talk_s = Number(rules.max_talk_s);
        return moderate("set_floor", fields, options);
      }),
    nameModerator: (user, options) =>
      act("name_moderator", () => moderate("name_moderator", { user }, options)),
    // The chair takes a co-moderator's part back: they stay, as a site.
    removeModerator: (user, options) =>
      act("remove_moderator", () => moderate("remove_moderator", { user }, options)),
    // Ring a signed-in user (by id) into the conference, and withdraw a user's invitation
    // not answered by joining.
    invite: (user, options) =>
      act("invite_to_conference", () => moderate("invite_to_conference", { user: String(user || "").trim() }, options)),
    withdraw: (user, options) =>
      act("withdraw_invitation", () => moderate("withdraw_invitation", { user }, options)),
    handOver: (to, options) => act("hand_over", () => moderate("hand_over", { to }, options)),
    end: (options = UNCONDITIONAL) => act("end_conference", () => moderate("end_conference", {}, options)),
    record: (on, options) => act("record_conference", () => moderate("record_conference", { on }, options)),
  };

  // A live call shown to the conference: by a moderator, or by the call's operator who has
  // joined (the server decides; a refusal is shown like any other).
  const feeds = {
    shareCall: (callId, options) =>
      act("share_call", () => moderate("share_call", { call_id: String(callId || "").trim() }, options)),
    unshareCall: (callId, options) =>
      act("unshare_call", () => moderate("unshare_call", { call_id: callId }, options)),
  };

  // ---- media --------------------------------------------------------------------------------

  /*
   * The conference's peer connection with the server. Every step of the negotiation runs on
   * one promise chain, so that the server's offer (our slots) is never applied while our own
   * offer still waits for its answer, and candidates go out in the order they were found.
   */
  class ConferenceMedia {
    constructor(conferenceId, localStream) {
      this.conferenceId = conferenceId;
      this.localStream = localStream;
      this.chain = Promise.resolve();
      this.answered = false;
      this.heldCandidates = [];
      this.localCandidates = [];
      this.slots = new Map(); // slot name -> {stream, kind}
      this.slotOfTrack = new Map(); // receiver track id -> slot name, for getStats
      this.error = null;
      this.closed = false;
      // max-bundle: one transport, one set of candidates. No ICE servers: the server's
      // candidates are in its answer, and it is the only peer.
      this.pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
      this.pc.onicecandidate = (e) => this.localCandidate(e.candidate);
      this.pc.ontrack = (e) => this.remoteTrack(e);
      this.pc.onconnectionstatechange = () => {
        render();
        // The way back from a changed network is a new peer connection and a new offer.
        if (this.pc.connectionState === "failed" && !this.closed) restartMedia();
      };
    }

    start() {
      const stream = this.localStream;
      if (stream && stream.getTracks().length > 0) {
        // sendonly: what we receive comes on the server's own sections, our slots.
        for (const track of stream.getTracks()) {
          const init = { direction: "sendonly", streams: [stream] };
          // Three temporal layers (L1T3, in VP8, the conference's codec): to a site whose
          // link loses packets the server sends only half or a quarter of the frames, still
          // decodable (docs/media.md, *Temporal layers*).
          if (track.kind === "video") init.sendEncodings = [{ scalabilityMode: "L1T3" }];
          const tr = this.pc.addTransceiver(track, init);
          if (track.kind === "video") preferConferenceCodec(tr);
        }
      } else {
        // An offer needs a section; a member with nothing to send asks for audio.
        this.pc.addTransceiver("audio", { direction: "recvonly" });
      }
      return this.run(async () => {
        await this.pc.setLocalDescription();
        const reply = await hub.request("offer", {
          call_id: this.conferenceId,
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
        await hub.request("answer", { call_id: this.conferenceId, sdp: this.pc.localDescription.sdp });
      });
    }

    remoteCandidate(msg) {
      return this.run(() =>
        this.pc.addIceCandidate({
          candidate: msg.candidate,
          sdpMid: msg.sdp_mid,
          sdpMLineIndex: msg.sdp_mline_index,
        }),
      );
    }

    localCandidate(candidate) {
      // null: gathering is over; the empty candidate says so.
      const c = candidate || { candidate: "", sdpMid: null, sdpMLineIndex: null };
      if (c.candidate) this.localCandidates.push(c.candidate);
      // The server ignores mDNS (.local) names; sending them would only cost messages.
      if (c.candidate.includes(".local ")) return;
      if (this.answered) this.sendCandidate(c);
      else this.heldCandidates.push(c);
    }

    sendCandidate(c) {
      const fields = { call_id: this.conferenceId, candidate: c.candidate };
      if (c.sdpMid != null) fields.sdp_mid = c.sdpMid;
      if (c.sdpMLineIndex != null) fields.sdp_mline_index = c.sdpMLineIndex;
      hub.request("ice_candidate", fields).catch((err) => this.failed(err));
    }

    remoteTrack(e) {
      // The stream id is the slot's name: audio-<i>, spotlight, grid-<i>.
      const stream = e.streams[0] || new MediaStream([e.track]);
      const slot = stream.id;
      this.slotOfTrack.set(e.track.id, slot);
      this.slots.set(slot, { stream, kind: e.track.kind });
      stage.attach(slot, stream, e.track.kind);
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
      this.error = typeof err.code === "string" ? err.message : `${err.name}: ${err.message}`;
      log({ type: "media_error", reason: this.error });
      render();
    }

    close() {
      this.closed = true;
      this.pc.close();
      if (this.localStream) for (const track of this.localStream.getTracks()) track.stop();
    }

    // Per slot: inbound RTP packetsReceived / framesDecoded; and what we send, by kind.
    async stats() {
      const report = await this.pc.getStats();
      const slotOfMid = new Map();
      for (const tr of this.pc.getTransceivers()) {
        const slot = tr.receiver.track && this.slotOfTrack.get(tr.receiver.track.id);
        if (tr.mid != null && slot) slotOfMid.set(tr.mid, slot);
      }
      const slots = {};
      const outbound = {};
      report.forEach((s) => {
        if (s.type === "inbound-rtp") {
          const slot = this.slotOfTrack.get(s.trackIdentifier) || slotOfMid.get(s.mid);
          if (!slot) return;
          const before = slots[slot];
          if (before && before.packetsReceived >= (s.packetsReceived || 0)) return;
          slots[slot] = {
            kind: s.kind,
            packetsReceived: s.packetsReceived || 0,
            bytesReceived: s.bytesReceived || 0,
            framesDecoded: s.framesDecoded || 0,
            frameWidth: s.frameWidth || 0,
            totalAudioEnergy: s.totalAudioEnergy || 0,
            // Whether what arrives decodes: frames that arrived and were dropped, and our
            // requests for packets (NACK) and pictures (PLI) again.
            framesReceived: s.framesReceived || 0,
            framesDropped: s.framesDropped || 0,
            nackCount: s.nackCount || 0,
            pliCount: s.pliCount || 0,
          };
        } else if (s.type === "outbound-rtp") {
          const out = outbound[s.kind] || { packetsSent: 0, bytesSent: 0, framesEncoded: 0 };
          out.packetsSent += s.packetsSent || 0;
          out.bytesSent += s.bytesSent || 0;
          out.framesEncoded += s.framesEncoded || 0;
          // What the encoder does, e.g. "L1T3" (the browser may not honour what was asked).
          if (s.scalabilityMode) out.scalabilityMode = s.scalabilityMode;
          outbound[s.kind] = out;
        }
      });
      return { conference_id: this.conferenceId, connectionState: this.pc.connectionState, slots, outbound };
    }

    summary() {
      return {
        conference_id: this.conferenceId,
        connectionState: this.pc.connectionState,
        signalingState: this.pc.signalingState,
        localTracks: this.localStream ? this.localStream.getTracks().map((tr) => tr.kind) : [],
        slots: [...this.slots.keys()],
        localCandidates: this.localCandidates,
        error: this.error,
      };
    }
  }

  function preferConferenceCodec(transceiver) {
    if (!transceiver.setCodecPreferences || !window.RTCRtpReceiver?.getCapabilities) return;
    const codecs = RTCRtpReceiver.getCapabilities("video")?.codecs || [];
    const first = codecs.filter((c) => c.mimeType.toLowerCase() === CONFERENCE_VIDEO);
    if (!first.length) return;
    transceiver.setCodecPreferences([...first, ...codecs.filter((c) => !first.includes(c))]);
  }

  let media = null; // ConferenceMedia of the conference we are in
  let starting = null; // the conference id whose media is being set up

  // Camera and microphone, asked for when we join and released when we are out, so that the
  // camera light is on only in a conference. A missing device does not keep us out: we
  // still receive. A witness sends nothing (the server would not forward it anyway).
  async function localMedia(role) {
    if (role === "witness") return null;
    for (const constraints of [{ audio: true, video: CAMERA }, { audio: true }]) {
      try {
        return await navigator.mediaDevices.getUserMedia(constraints);
      } catch (err) {
        log({ type: "media_error", reason: `getUserMedia: ${err.name}` });
      }
    }
    return null;
  }

  async function startMedia(conferenceId) {
    if (starting === conferenceId) return;
    starting = conferenceId;
    try {
      const reuse = media && media.conferenceId === conferenceId ? media.localStream : null;
      if (media) {
        media.localStream = reuse ? null : media.localStream; // keep the camera we reuse
        media.close();
        media = null;
      }
      const stream = reuse || (await localMedia(store.conf?.role));
      if (!store.conf || store.conf.id !== conferenceId) {
        // Out of the conference while the camera was being asked for.
        if (stream) for (const track of stream.getTracks()) track.stop();
        return;
      }
      media = new ConferenceMedia(conferenceId, stream);
      stage.showLocal(stream);
      await media.start();
    } finally {
      starting = null;
      render();
    }
  }

  function restartMedia() {
    if (!media || !store.conf) return;
    log({ type: "media_restart" });
    startMedia(store.conf.id);
  }

  function stopMedia() {
    if (media) media.close();
    media = null;
    stage.clear();
  }

  function toggleMic() {
    const track = media?.localStream?.getAudioTracks()[0];
    if (track) track.enabled = !track.enabled;
    render();
    return { ok: !!track, enabled: !!track && track.enabled };
  }

  function micState() {
    const track = media?.localStream?.getAudioTracks()[0];
    if (!track) return "none";
    return track.enabled ? "on" : "off";
  }

  // ---- the page -----------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function show(el, visible) {
    if (el.hidden === visible) el.hidden = !visible;
  }

  function button(label, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.onclick = onClick;
    return b;
  }

  /*
   * Keeps one child of `parent` per key, in the order of `keys`, making the missing ones with
   * `make(key)`; returns key -> element. Elements are updated in place, not rebuilt, so that a
   * button is never swapped under a pointer (or a test) about to press it.
   */
  function keyed(parent, keys, make) {
    const existing = new Map([...parent.children].map((el) => [el.dataset.key, el]));
    const result = new Map();
    keys.forEach((key, i) => {
      let el = existing.get(key);
      if (!el) {
        el = make(key);
        el.dataset.key = key;
      }
      existing.delete(key);
      if (parent.children[i] !== el) parent.insertBefore(el, parent.children[i] || null);
      result.set(key, el);
    });
    for (const el of existing.values()) el.remove();
    return result;
  }

  // Time left until a server time, to the nearest second, never negative. (Rounded, not
  // up: a clock offset a few ms off would otherwise show a 30 s talk time as 31 s.)
  function secondsUntil(until) {
    return Math.max(0, Math.round((until - hub.serverNow()) / 1000));
  }

  function floorText(floor, forSelf) {
    let text;
    switch (floor.state) {
      case "queued":
        return t("floor.queued", { position: floor.position });
      case "permitted":
        text = forSelf && floor.called ? t("floor.called") : t("floor.permitted");
        break;
      case "pending_revoke":
        text = t("floor.pending_revoke");
        break;
      default:
        return t("floor.not_permitted");
    }
    if (floor.until != null) text += t("floor.left", { seconds: secondsUntil(floor.until) });
    return text;
  }

  const holds = (floor) => floor.state === "permitted" || floor.state === "pending_revoke";

  // ---- the stage: the spotlight, the grid, the voices ------------------------------------

  const stage = {
    audio: new Map(), // slot -> <audio>
    grid: new Map(), // slot -> <figure>
    spotlight: null, // the spotlight slot's stream

    attach(slot, stream, kind) {
      if (slot === "spotlight") {
        this.spotlight = stream;
      } else if (slot.startsWith("grid-")) {
        this.gridTile(slot).querySelector("video").srcObject = stream;
      } else if (kind === "audio") {
        let audio = this.audio.get(slot);
        if (!audio) {
          audio = document.createElement("audio");
          audio.autoplay = true;
          audio.dataset.slot = slot;
          this.audio.set(slot, audio);
          document.body.append(audio);
        }
        audio.srcObject = stream;
        audio.play().catch(() => show($("unmute-audio"), true));
      }
    },

    gridTile(slot) {
      let tile = this.grid.get(slot);
      if (!tile) {
        tile = document.createElement("figure");
        tile.className = "tile";
        tile.dataset.slot = slot;
        const video = document.createElement("video");
        video.autoplay = true;
        video.playsInline = true;
        video.muted = true;
        const caption = document.createElement("figcaption");
        tile.append(video, caption);
        tile.hidden = true;
        this.grid.set(slot, tile);
        // In slot order, whatever order the tracks came in.
        const tiles = [...this.grid.entries()].sort((a, b) => slotIndex(a[0]) - slotIndex(b[0]));
        for (const [, el] of tiles) $("grid").append(el);
      }
      return tile;
    },

    showLocal(stream) {
      $("local-video").srcObject = stream;
      show($("local-tile"), !!stream && stream.getVideoTracks().length > 0);
    },

    clear() {
      this.spotlight = null;
      $("spotlight-video").srcObject = null;
      for (const audio of this.audio.values()) audio.remove();
      this.audio.clear();
      for (const tile of this.grid.values()) tile.remove();
      this.grid.clear();
      this.showLocal(null);
    },

    render(conf) {
      const lineup = conf.lineup;
      const me = store.user.id;
      // Whom the sites see: the spotlight of the state, else (the media's default) the chair.
      const seen = conf.state.spotlight || conf.state.chair;
      let label;
      let shown = null;
      if (lineup.spotlight) {
        label = t("stage.spotlight", { name: nameOf(lineup.spotlight) });
        shown = this.spotlight;
      } else if (seen && seen.id === me) {
        // Our own media is never in our slots: show our camera, which is what they see.
        label = t("stage.spotlight_self");
        shown = media && media.localStream;
      } else {
        // An idle slot would show its last frame, frozen: show nothing instead.
        label = t("stage.spotlight_none");
      }
      setText($("spotlight-label"), label);
      if ($("spotlight-video").srcObject !== shown) $("spotlight-video").srcObject = shown;
      $("spotlight-tile").dataset.source = lineup.spotlight || "";

      // The grid: a moderator's (and an action's witness's: the server sends the grid to
      // those alone), each tile labelled with the site conference_media names.
      show($("grid-section"), lineup.grid.some((u) => u));
      lineup.grid.forEach((user, i) => {
        const slot = `grid-${i}`;
        if (!user && !this.grid.has(slot)) return;
        const tile = this.gridTile(slot);
        tile.dataset.source = user || "";
        setText(tile.querySelector("figcaption"), user ? nameOf(user) : "");
        show(tile, !!user);
      });

      // The voices: who each audio slot carries now.
      const heard = lineup.audio.map((user, i) => [`audio-${i}`, user]).filter(([, u]) => u);
      const items = keyed($("audio-slots"), heard.map(([slot]) => slot), () => document.createElement("li"));
      for (const [slot, user] of heard) {
        const li = items.get(slot);
        li.dataset.source = user;
        setText(li, t("stage.audio_slot", { name: nameOf(user) }));
      }
    },
  };

  function slotIndex(slot) {
    return Number(slot.split("-")[1]);
  }

  // ---- the lobby ----------------------------------------------------------------------------

  function renderLobby() {
    renderInvitations();
    const inConference = !!store.conf;
    show($("lobby"), !inConference);
    if (inConference) return;
    const role = store.user ? store.user.role : "";
    show($("create-form"), HOSTS.has(role));
    renderConferenceList();
  }

  // Conferences ringing at us: join (leaving the one we are in, if any) or decline.
  function renderInvitations() {
    show($("invitations"), store.ringing.size > 0);
    const invitations = keyed($("invitation-list"), [...store.ringing.keys()], (id) => {
      const li = document.createElement("li");
      const text = document.createElement("span");
      li.append(
        text,
        button(t("lobby.join"), () => join(id)),
        button(t("lobby.decline"), () => decline(id)),
      );
      return li;
    });
    for (const [id, li] of invitations) {
      const info = store.ringing.get(id);
      setText(li.firstChild, t("lobby.invitation", { host: info.host.name, title: info.title }) + " ");
    }
  }

  function renderConferenceList() {
    show($("no-conferences"), store.conferences.length === 0);
    const ids = store.conferences.map((c) => c.conference_id);
    const rows = keyed($("conference-list"), ids, (id) => {
      const li = document.createElement("li");
      li.append(
        document.createElement("span"),
        button(t("lobby.join"), () => join(id)),
        button(t("lobby.start"), () => start(id)),
        button(t("lobby.cancel"), () => callOff(id)),
      );
      return li;
    });
    for (const info of store.conferences) {
      const li = rows.get(info.conference_id);
      const [text, joinButton, startButton, cancelButton] = li.children;
      const status =
        info.status === "scheduled"
          ? t("lobby.scheduled", { time: new Date(info.starts_at + hub.offsetMs).toLocaleString(LANG) })
          : t("lobby.running");
      setText(
        text,
        t("lobby.conference", {
          title: info.title,
          kind: t(`kind.${info.kind || "meeting"}`),
          host: info.host.name,
          status,
          sites: info.sites,
          locked: info.locked ? t("lobby.locked") : "",
        }) + " ",
      );
      const moderates = store.user && info.moderators.includes(store.user.id);
      show(joinButton, info.status === "running");
      show(startButton, info.status === "scheduled" && moderates);
      show(cancelButton, info.status === "scheduled" && moderates);
    }
  }

  // ---- the conference -----------------------------------------------------------------------

  function renderConference() {
    const conf = store.conf;
    show($("conference"), !!conf);
    if (!conf) return;
    const state = conf.state;
    setText($("conf-title"), conf.info.title);
    setText(
      $("conf-summary"),
      t("conf.summary", {
        kind: t(`kind.${conf.info.kind || "meeting"}`),
        chair: state.chair ? state.chair.name : t("conf.no_chair"),
        audio: t(`audio.${state.audio}`),
        mode: t(`mode.${state.mode}`),
        speakers: state.max_speakers,
        talk: state.max_talk_s ? t("conf.talk", { seconds: state.max_talk_s }) : "",
        locked: state.locked ? t("conf.locked") : "",
        revision: state.revision,
      }),
    );
    show($("recording-indicator"), !!state.recording);
    stage.render(conf);
    renderFeeds(conf);
    const moderatorView = conf.role === "moderator";
    show($("site-view"), !moderatorView);
    show($("moderator-view"), moderatorView);
    if (moderatorView) renderModerator(conf);
    else renderSite(conf);
  }

  // The calls shown (every member sees them); who may share one and stop one.
  function renderFeeds(conf) {
    const list = conf.state.feeds || [];
    const me = store.user.id;
    const moderates = conf.role === "moderator";
    show($("no-feeds"), list.length === 0);
    const items = keyed($("feed-list"), list.map((f) => f.call_id), (callId) => {
      const li = document.createElement("li");
      li.append(document.createElement("span"), button(t("feeds.unshare"), () => feeds.unshareCall(callId)));
      return li;
    });
    for (const f of list) {
      const li = items.get(f.call_id);
      li.dataset.emergency = String(f.emergency);
      const text = t("feeds.item", {
        officer: f.officer.name,
        court: f.officer.court,
        emergency: f.emergency ? t("feeds.emergency") : "",
        by: f.by.name,
      });
      setText(li.firstChild, `${text} `);
      show(li.lastChild, moderates || f.by.id === me);
    }
    // Moderators, and operators for the call they answer; never a witness.
    show($("share-form"), moderates || (conf.role === "site" && store.user.role === "operator"));
  }

  function micText(conf) {
    let text;
    if (conf.role === "witness") return t("mic.witness");
    if (conf.role === "moderator") text = t("mic.moderator");
    else if (conf.state.audio === "open") text = t("mic.open");
    else if (holds(conf.floor)) text = t("mic.floor");
    else text = t("mic.muted");
    const mic = micState();
    if (mic === "off") text += t("mic.off");
    if (mic === "none" && media && !starting) text += t("mic.none");
    return text;
  }

  function renderSite(conf) {
    const witness = conf.role === "witness";
    const floor = conf.floor;
    $("site-view").dataset.floor = floor.state;
    setText($("site-title"), witness ? t("site.witness_title") : t("site.title"));
    setText($("floor-text"), witness ? t("site.witness") : floorText(floor, true));
    setText($("mic-text"), micText(conf));
    $("mic-text").dataset.heard = String(!witness && (conf.state.audio === "open" || holds(floor)));
    show($("raise-hand"), !witness && floor.state === "not_permitted");
    show($("lower-hand"), !witness && floor.state === "queued");
    show($("release-floor"), !witness && holds(floor));
    const mic = micState();
    show($("toggle-mic"), !witness && mic !== "none");
    setText($("toggle-mic"), mic === "off" ? t("site.mic_on") : t("site.mic_off"));
  }

  function renderModerator(conf) {
    const state = conf.state;
    const me = store.user.id;
    const chair = state.chair ? state.chair.id : null;
    const isChair = chair === me;
    setText($("mod-mic-text"), micText(conf));
    setText($("toggle-lock"), state.locked ? t("mod.unlock") : t("mod.lock"));
    // From the server's state, not from our click: the button says what pressing it does now.
    setText($("toggle-record"), state.recording ? t("mod.record_stop") : t("mod.record_start"));
    $("toggle-record").dataset.recording = String(!!state.recording);
    fillFloorForm(state);

    const holders = new Set(state.holders.map((h) => h.id));
    const onAir = new Set(conf.lineup.audio.filter(Boolean));
    const speaking = new Set(conf.speaking);
    const spotlight = state.spotlight ? state.spotlight.id : null;
    const rows = keyed($("site-rows"), [...conf.sites.keys()], siteRow);
    for (const [id, tr] of rows) {
      const s = conf.sites.get(id);
      const cells = tr.children;
      const self = id === me;
      tr.dataset.floor = s.floor.state;
      tr.dataset.status = s.status;
      setText(cells[0], `${s.user.name}${self ? `（${t("site.self")}）` : ""} · ${s.user.court}`);
      setText(cells[1], s.role === "moderator" && id === chair ? t("site.role.chair") : t(`site.role.${s.role}`));
      setText(cells[2], t(`site.status.${s.status}`));
      setText(cells[3], s.role === "site" ? floorText(s.floor, false) : "");
      const audible =
        s.role === "moderator" || (s.role === "site" && (state.audio === "open" || holders.has(id)));
      let audio = audible ? t("site.heard") : t("site.muted");
      if (onAir.has(id)) audio += ` · ${t("site.speaking")}`;
      // Who talks now, heard or not: a muted site trying to speak, a roll call answered.
      if (speaking.has(id)) audio += ` · ${t("site.talking")}`;
      tr.dataset.speaking = String(speaking.has(id));
      setText(cells[4], s.role === "witness" ? "" : audio);
      setText(cells[5], spotlight === id ? t("site.is_spotlight") : "");
      const b = tr.buttons;
      show(b.grant, s.role === "site" && !holders.has(id));
      b.grant.disabled = s.status !== "joined";
      show(b.revoke, s.role === "site" && s.floor.state === "permitted");
      show(b.spotlight, s.role !== "witness" && spotlight !== id);
      show(b.remove, s.role !== "moderator");
      show(b.ban, s.role !== "moderator");
      show(b.name, isChair && s.role === "site");
      show(b.unname, isChair && s.role === "moderator" && !self);
      show(b.handOver, isChair && s.role === "moderator" && !self && s.status === "joined");
    }

    const keys = [...conf.invitations.keys()];
    const answers = keyed($("invitation-answers"), keys, invitationItem);
    for (const key of keys) {
      const inv = conf.invitations.get(key);
      const li = answers.get(key);
      li.dataset.state = inv.state;
      const who = t(`invitation.${inv.kind}`, { invitee: inv.kind === "user" ? nameOf(inv.invitee) : inv.invitee });
      setText(li.text, `${who}：${t(`invitation.${inv.state}`, { by: inv.by ? inv.by.name : "" })}`);
      setText(li.withdraw, t("act.withdraw"));
      show(li.withdraw, inv.kind === "user" && inv.state !== "joined" && inv.state !== "withdrawn");
    }
  }

  // One invitation's answer; a user's invitation not answered by joining can be withdrawn.
  function invitationItem(key) {
    const li = document.createElement("li");
    li.text = document.createElement("span");
    const [kind, invitee] = [key.slice(0, key.indexOf(":")), key.slice(key.indexOf(":") + 1)];
    li.withdraw = button(t("act.withdraw"), () => moderator.withdraw(invitee));
    li.withdraw.hidden = kind !== "user";
    li.append(li.text, " ", li.withdraw);
    return li;
  }

  function siteRow(id) {
    const tr = document.createElement("tr");
    for (let i = 0; i < 6; i++) tr.append(document.createElement("td"));
    const actions = document.createElement("td");
    tr.buttons = {
      grant: button(t("act.grant"), () => moderator.grant(id)),
      revoke: button(t("act.revoke"), () => moderator.revoke(id)),
      spotlight: button(t("act.spotlight"), () => moderator.spotlight(id)),
      remove: button(t("act.remove"), () => moderator.remove(id, false)),
      ban: button(t("act.ban"), () => moderator.remove(id, true)),
      name: button(t("act.name_moderator"), () => moderator.nameModerator(id)),
      unname: button(t("act.remove_moderator"), () => moderator.removeModerator(id)),
      handOver: button(t("act.hand_over"), () => moderator.handOver(id)),
    };
    actions.append(...Object.values(tr.buttons));
    tr.append(actions);
    return tr;
  }

  // The floor form shows the rules in force until someone edits it.
  let floorFormRevision = null;
  function fillFloorForm(state) {
    const form = $("floor-form");
    if (floorFormRevision === state.revision || form.contains(document.activeElement)) return;
    floorFormRevision = state.revision;
    form.elements.max_speakers.value = String(state.max_speakers);
    form.elements.max_talk_s.value = state.max_talk_s ? String(state.max_talk_s) : "";
    form.elements.mode.value = state.mode;
  }

  function renderHeader() {
    let status = t("status.connecting");
    if (!token) status = fromCookie ? t("status.connecting") : t("status.no_token");
    else if (hub.connected) status = t("status.connected");
    else if (hub.closeCode) status = t("status.disconnected", { code: hub.closeCode });
    setText($("status"), status);
    const u = store.user;
    if (u) setText($("who"), t("who", { name: u.name, role: t(`role.${u.role}`), court: u.court }));
    const notice = $("notice");
    show(notice, !!store.notice);
    if (store.notice) {
      setText(notice, store.notice.text);
      notice.dataset.kind = store.notice.kind;
    }
  }

  function render() {
    renderHeader();
    renderLobby();
    renderConference();
  }

  function translatePage() {
    document.title = t("page.title");
    for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
    $("audio-slots").setAttribute("aria-label", t("stage.audio_label"));
    document.documentElement.lang = LANG;
  }

  // ---- start --------------------------------------------------------------------------------

  const hub = new Hub({
    onStatus: () => render(),
    onWelcome: (msg, again) => {
      store.user = msg.user;
      remember(msg.user);
      listConferences();
      // The welcome lists no conferences, and what was pushed while we were away is lost:
      // ask for the state again, and offer media anew (the server dropped ours).
      if (again && store.conf) {
        const id = store.conf.id;
        act("join_conference", () => refresh().then(() => startMedia(id))).then((done) => {
          if (!done.ok && store.conf && store.conf.id === id) quit();
          render();
        });
      }
      render();
    },
    onPush: (msg) => {
      if (msg.type === "closed") log(msg);
      else apply(msg);
      render();
    },
  });

  document.addEventListener("DOMContentLoaded", () => {
    translatePage();
    $("refresh-list").onclick = () => listConferences();
    $("create-form").onsubmit = (e) => {
      e.preventDefault();
      const f = e.target.elements;
      const startsAt = f.starts_at.value ? new Date(f.starts_at.value).getTime() : null;
      create({
        title: f.title.value.trim(),
        invite_below: f.invite_below.value,
        invite_courts: f.invite_courts.value,
        invite_users: f.invite_users.value,
        starts_at: startsAt,
        max_speakers: f.max_speakers.value,
        max_talk_s: f.max_talk_s.value,
        kind: f.kind.value,
      });
    };
    $("raise-hand").onclick = site("raise_hand");
    $("lower-hand").onclick = site("lower_hand");
    $("release-floor").onclick = site("release_floor");
    $("toggle-mic").onclick = toggleMic;
    $("leave").onclick = leave;
    $("mute-all").onclick = () => moderator.muteAll();
    $("unmute-all").onclick = () => moderator.unmuteAll();
    $("spotlight-default").onclick = () => moderator.spotlight(null);
    $("toggle-lock").onclick = () => moderator.lock(!store.conf.state.locked);
    $("end-conference").onclick = () => moderator.end();
    $("toggle-record").onclick = () => moderator.record(!store.conf.state.recording);
    $("share-form").onsubmit = (e) => {
      e.preventDefault();
      feeds.shareCall(e.target.elements.call_id.value).then((done) => {
        if (done.ok) e.target.reset();
      });
    };
    $("invite-form").onsubmit = (e) => {
      e.preventDefault();
      const input = e.target.elements.user;
      const user = input.value.trim();
      if (user) moderator.invite(user).then((r) => r.ok && (input.value = ""));
    };
    $("floor-form").onsubmit = (e) => {
      e.preventDefault();
      const f = e.target.elements;
      floorFormRevision = null;
      moderator.setFloor({ max_speakers: f.max_speakers.value, max_talk_s: f.max_talk_s.value, mode: f.mode.value });
    };
    $("unmute-audio").onclick = () => {
      for (const audio of stage.audio.values()) audio.play().catch(() => {});
      show($("unmute-audio"), false);
    };
    // Countdowns: the floor's time left, the revoke's grace.
    setInterval(() => {
      if (store.conf) renderConference();
    }, TICK_MS);
    if (token) hub.connect();
    else void tokenFromCookie().then((ok) => ok && hub.connect());
    render();
  });

  // ---- the test API -------------------------------------------------------------------------

  window.conf = {
    // A plain, JSON-able snapshot: no live objects.
    state: () => {
      const conf = store.conf;
      return {
        connected: hub.connected,
        closeCode: hub.closeCode,
        user: store.user,
        conferences: store.conferences,
        ringing: [...store.ringing.keys()],
        conference: conf
          ? {
              id: conf.id,
              info: conf.info,
              state: conf.state,
              role: conf.role,
              floor: conf.floor,
              floorReason: conf.floorReason,
              sites: [...conf.sites.values()],
              invitations: [...conf.invitations.values()],
              lineup: conf.lineup,
              speaking: conf.speaking,
            }
          : null,
        revision: store.revision,
        mic: micState(),
        media: media ? media.summary() : null,
        notice: store.notice,
        lastError: store.lastError,
        left: store.left,
        ended: store.ended,
        conflicts: store.conflicts,
        refreshes: store.refreshes,
        waiting: store.waiting,
        events: store.events,
      };
    },
    // Per slot (`audio-0`, `spotlight`, `grid-0`, ...): inbound packetsReceived,
    // framesDecoded; `outbound.audio.packetsSent`: what our microphone sends.
    stats: () =>
      media ? media.stats() : Promise.resolve({ conference_id: null, connectionState: null, slots: {}, outbound: {} }),
    serverNow: () => hub.serverNow(),
    list: () => act("list_conferences", listConferences),
    create,
    join,
    decline,
    start,
    leave,
    raiseHand: site("raise_hand"),
    lowerHand: site("lower_hand"),
    releaseFloor: site("release_floor"),
    toggleMic,
    ...moderator,
    ...feeds,
  };
})();
