// Every string a person reads, in Simplified Chinese (the default) and English. The choice is
// remembered in localStorage under the key the sign-in page uses, so both pages agree.

export type Lang = "zh" | "en";

const zh = {
  "app.title": "指挥中心",
  "app.heading": "执行指挥中心 · 值班台",
  "status.connecting": "正在连接…",
  "status.connected": "已连接",
  "status.reconnecting": "连接中断，正在重连…",
  "status.replaced": "已在其他地方登录，本页面已断开",
  "status.refused": "连接被拒绝（{code}）",
  "status.wrong_role": "值班台供值班员、指挥长和管理员使用；此账号不能使用",
  "me.free": "空闲",
  "me.busy": "通话中",
  "me.away": "离线",
  "me.status": "我的状态：{status}",
  "role.operator": "值班员",
  "role.supervisor": "指挥长",
  "role.admin": "管理员",
  "role.officer": "执行干警",
  "role.auditor": "审计员",
  "role.witness": "监督员",
  "lang.other": "English",
  "signout": "退出登录",
  "sound.enable": "开启声音",
  "queue.title": "呼叫队列",
  "queue.empty": "暂无呼叫",
  "queue.ringing": "正在呼入",
  "queue.elsewhere": "排队中或由其他值班员处理",
  "queue.waiting": "已等待 {t}",
  "queue.accept": "接听",
  "queue.decline": "拒绝",
  "queue.emergency": "紧急",
  "queue.outgoing": "正在呼叫 {name}…",
  "queue.cancel": "取消呼叫",
  "roster.title": "在线干警",
  "roster.count": "{n} 人",
  "roster.search": "搜索姓名、编号或法院",
  "roster.filter": "筛选",
  "roster.filter.all": "全部",
  "roster.filter.online": "在线",
  "roster.filter.away": "信号中断",
  "roster.filter.in_call": "通话中",
  "roster.filter.emergency": "紧急求助",
  "roster.col.name": "姓名",
  "roster.col.court": "法院",
  "roster.col.status": "状态",
  "roster.col.position": "位置更新",
  "roster.empty": "没有符合条件的干警",
  "roster.none": "暂无在线干警",
  "status.online": "在线",
  "status.away": "信号中断",
  "status.offline": "已下线",
  "status.in_call": "通话中",
  "status.emergency": "紧急求助",
  "position.none": "未上报",
  "position.age": "{t}前",
  "map.title": "地图",
  "map.offline": "离线地图：未配置或无法连接地图服务，按经纬度显示相对位置",
  "map.court": "法院：{name}",
  "map.officer": "执行干警 {name}",
  "officer.call": "呼叫",
  "officer.video": "调取视频",
  "officer.watch": "监看通话",
  "officer.close": "关闭",
  "officer.track": "今日轨迹",
  "officer.trackHide": "隐藏轨迹",
  "map.trackEmpty": "今日无轨迹记录",
  "map.track": "{name} 今日轨迹：{count} 个位置",
  "officer.details": "{court} · {status} · 位置更新：{age}",
  "call.title": "通话",
  "call.with": "与 {name}（{court}）通话中",
  "call.connecting": "正在建立音视频…",
  "call.mute": "静音",
  "call.unmute": "取消静音",
  "call.talk": "对讲中",
  "call.muted": "麦克风已关闭",
  "call.hangup": "挂断",
  "call.case": "案号：{case}",
  "call.media": "媒体：{state}",
  "call.no_video": "等待对方视频…",
  "call.monitor": "监看中（仅收听）",
  "media.new": "准备中",
  "media.connecting": "连接中",
  "media.connected": "已接通",
  "media.disconnected": "中断",
  "media.failed": "失败",
  "media.closed": "已关闭",
  "call.snapshot": "截图取证",
  "call.snapshot_taken": "已存证 SHA-256 {hash}…",
  "call.snapshot_alt": "通话截图 {id}",
  "sos.title": "紧急求助",
  "sos.officer": "{name}（{court}）发出紧急求助",
  "sos.position": "最后位置：{lat}, {lon}（{age}前）",
  "sos.no_position": "没有位置信息",
  "sos.accept": "接听紧急呼叫",
  "sos.ack": "确认收到（停止警报）",
  "sos.clear": "解除警报",
  "sos.false_alarm": "误报",
  "sos.false_alarm_reason": "误报原因（将记入审计记录）：",
  "sos.acked": "已确认：{name} 的紧急求助",
  "sos.cleared": "{name} 的紧急求助已解除",
  "notice.call_ended": "通话结束：{reason}",
  "notice.taken": "{name} 已接听该呼叫",
  "notice.sos_taken": "{name} 已接警：{officer} 的紧急求助",
  "notice.error": "操作失败：{reason}",
  "reason.hangup": "已挂断",
  "reason.cancelled": "对方已取消",
  "reason.missed": "无人接听",
  "reason.queue_timeout": "排队超时",
  "reason.declined": "已拒绝",
  "reason.busy": "对方忙",
  "reason.unavailable": "对方不在线",
  "reason.queue_full": "队列已满",
  "reason.party_lost": "对方掉线",
  "reason.node_lost": "服务器节点故障",
  "reason.shutdown": "服务器已停止",
  "unit.s": "{n}秒",
  "unit.m": "{m}分{s}秒",
  "unit.h": "{h}小时{m}分",
};

type Key = keyof typeof zh;

const en: Record<Key, string> = {
  "app.title": "Command center",
  "app.heading": "Enforcement command center · console",
  "status.connecting": "Connecting…",
  "status.connected": "Connected",
  "status.reconnecting": "Connection lost, reconnecting…",
  "status.replaced": "Signed in elsewhere; this page is disconnected",
  "status.refused": "Connection refused ({code})",
  "status.wrong_role": "The console is for operators, supervisors and administrators; this account cannot use it",
  "me.free": "free",
  "me.busy": "in a call",
  "me.away": "offline",
  "me.status": "My status: {status}",
  "role.operator": "Operator",
  "role.supervisor": "Supervisor",
  "role.admin": "Administrator",
  "role.officer": "Officer",
  "role.auditor": "Auditor",
  "role.witness": "Witness",
  "lang.other": "中文",
  signout: "Sign out",
  "sound.enable": "Turn sound on",
  "queue.title": "Calls",
  "queue.empty": "No calls",
  "queue.ringing": "Ringing",
  "queue.elsewhere": "Queued or with another operator",
  "queue.waiting": "waiting {t}",
  "queue.accept": "Accept",
  "queue.decline": "Decline",
  "queue.emergency": "EMERGENCY",
  "queue.outgoing": "Calling {name}…",
  "queue.cancel": "Cancel call",
  "roster.title": "Officers online",
  "roster.count": "{n}",
  "roster.search": "Search name, id or court",
  "roster.filter": "Filter",
  "roster.filter.all": "All",
  "roster.filter.online": "Online",
  "roster.filter.away": "Signal lost",
  "roster.filter.in_call": "In a call",
  "roster.filter.emergency": "Emergency",
  "roster.col.name": "Name",
  "roster.col.court": "Court",
  "roster.col.status": "Status",
  "roster.col.position": "Position",
  "roster.empty": "No officer matches",
  "roster.none": "No officer online",
  "status.online": "online",
  "status.away": "signal lost",
  "status.offline": "signed out",
  "status.in_call": "in a call",
  "status.emergency": "EMERGENCY",
  "position.none": "not reported",
  "position.age": "{t} ago",
  "map.title": "Map",
  "map.offline": "Offline map: no tile server configured or reachable; positions drawn by latitude and longitude",
  "map.court": "Court: {name}",
  "map.officer": "Officer {name}",
  "officer.call": "Call",
  "officer.video": "Pull video",
  "officer.watch": "Watch the call",
  "officer.close": "Close",
  "officer.track": "Today's track",
  "officer.trackHide": "Hide track",
  "map.trackEmpty": "No positions recorded today",
  "map.track": "{name}, today: {count} positions",
  "officer.details": "{court} · {status} · position: {age}",
  "call.title": "Call",
  "call.with": "In a call with {name} ({court})",
  "call.connecting": "Setting up audio and video…",
  "call.mute": "Mute",
  "call.unmute": "Unmute",
  "call.talk": "Talking",
  "call.muted": "Microphone off",
  "call.hangup": "Hang up",
  "call.case": "Case: {case}",
  "call.media": "media: {state}",
  "call.no_video": "Waiting for video…",
  "call.monitor": "Monitoring (listen only)",
  "media.new": "starting",
  "media.connecting": "connecting",
  "media.connected": "connected",
  "media.disconnected": "interrupted",
  "media.failed": "failed",
  "media.closed": "closed",
  "call.snapshot": "Snapshot",
  "call.snapshot_taken": "Kept as evidence, SHA-256 {hash}…",
  "call.snapshot_alt": "Snapshot {id}",
  "sos.title": "EMERGENCY",
  "sos.officer": "{name} ({court}) raised an emergency",
  "sos.position": "Last position: {lat}, {lon} ({age} ago)",
  "sos.no_position": "No position",
  "sos.accept": "Answer the emergency call",
  "sos.ack": "Acknowledge (silence the alarm)",
  "sos.clear": "Clear the emergency",
  "sos.false_alarm": "False alarm",
  "sos.false_alarm_reason": "Why was it a false alarm? (kept in the audit trace)",
  "sos.acked": "Acknowledged: {name}'s emergency",
  "sos.cleared": "{name}'s emergency was cleared",
  "notice.call_ended": "Call ended: {reason}",
  "notice.taken": "{name} answered that call",
  "notice.sos_taken": "{name} took {officer}'s emergency",
  "notice.error": "Failed: {reason}",
  "reason.hangup": "hung up",
  "reason.cancelled": "cancelled by the caller",
  "reason.missed": "not answered",
  "reason.queue_timeout": "waited too long in the queue",
  "reason.declined": "declined",
  "reason.busy": "busy",
  "reason.unavailable": "not signed in",
  "reason.queue_full": "the queue is full",
  "reason.party_lost": "the other side was lost",
  "reason.node_lost": "a server node failed",
  "reason.shutdown": "the server stopped",
  "unit.s": "{n} s",
  "unit.m": "{m} min {s} s",
  "unit.h": "{h} h {m} min",
};

const TABLES: Record<Lang, Record<Key, string>> = { zh, en };
const STORAGE_KEY = "cc.lang";

function initialLang(): Lang {
  const asked = new URLSearchParams(location.search).get("lang");
  if (asked === "zh" || asked === "en") {
    localStorage.setItem(STORAGE_KEY, asked);
    return asked;
  }
  return localStorage.getItem(STORAGE_KEY) === "en" ? "en" : "zh";
}

let lang: Lang = initialLang();

export function currentLang(): Lang {
  return lang;
}

export function setLang(next: Lang): void {
  lang = next;
  localStorage.setItem(STORAGE_KEY, next);
  document.documentElement.lang = next === "zh" ? "zh-CN" : "en";
  document.title = t("app.title");
}

export type { Key as TextKey };

export function t(key: Key, vars: Record<string, string | number> = {}): string {
  let text = TABLES[lang][key];
  for (const [name, value] of Object.entries(vars)) text = text.replaceAll(`{${name}}`, String(value));
  return text;
}

/** A known wire reason in words; an unknown one as the server sent it. */
export function reasonText(reason: string): string {
  const key = `reason.${reason}`;
  return key in zh ? t(key as Key) : reason;
}

/** A duration in seconds, as a person reads it ("1分05秒"). */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return t("unit.s", { n: s });
  if (s < 3600) return t("unit.m", { m: Math.floor(s / 60), s: String(s % 60).padStart(2, "0") });
  return t("unit.h", { h: Math.floor(s / 3600), m: String(Math.floor((s % 3600) / 60)).padStart(2, "0") });
}
