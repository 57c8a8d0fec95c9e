/*
 * The operator and supervisor console (docs/console.md): one page, its parts in this order,
 * each talking only to the next through plain calls:
 *
 *   - i18n.ts: every string a person reads (zh-CN by default, English remembered);
 *   - protocol.ts: the protocol client, the only owner of the WebSocket (token from the
 *     sign-in cookie, heartbeats, reconnect with resume, a new token on 4401);
 *   - store.ts: the state, fed by pushes and replies, and the commands;
 *   - views/: header, queue, roster, map, officer card, call, emergency; they redraw from
 *     the store at most every RENDER_MS when it changes, and once a second for the ages and
 *     waiting times, rebuilding only what changed (a rebuilt button would lose its click);
 *   - the test API on `window.ccConsole`, which tests/browser_console_scenario.py reads.
 */

import "./style.css";

import { Alarm } from "./alarm";
import { h, tick } from "./dom";
import { currentLang, setLang } from "./i18n";
import { DEFAULT_SETTINGS, Store, type ConsoleSettings } from "./store";
import { CallView } from "./views/call";
import { EmergencyView } from "./views/emergency";
import { HeaderView } from "./views/header";
import { InstructionsView } from "./views/instructions";
import { MapView } from "./views/map";
import { OfficerCard } from "./views/officer";
import { QueueView } from "./views/queue";
import { RosterView } from "./views/roster";
import { RecordsPanel } from "./records/panel";
import { InvitationsView } from "./views/supervision";
import { ModerationView } from "./views/moderation";
import { WallView } from "./views/wall";
import { OperatorsView } from "./views/transfers";

const TICK_MS = 1000;
const RENDER_MS = 50;

const store = new Store();
const alarm = new Alarm();
setLang(currentLang());

const queue = new QueueView(store);
const roster = new RosterView(store);
const map = new MapView(store);
const instructions = new InstructionsView(store);
const call = new CallView(store);
const emergency = new EmergencyView(store, (id) => map.focus(id));
const header = new HeaderView(store, alarm, render);
// The video wall: opened from the top bar, shown in the centre in place of the map; the
// officer card's "pull video" opens it on one officer, large.
const wall = new WallView(store);
const card = new OfficerCard(store, [instructions.officerComposer], (id) => wall.pull(id));
const invitations = new InvitationsView(store);
header.el.querySelector(".tools")?.prepend(wall.toggle);
const operators = new OperatorsView(store);
const moderation = new ModerationView(store);

map.el.append(card.el);
const root = document.getElementById("console") as HTMLElement;
root.replaceChildren(
  header.el,
  emergency.strip,
  h(
    "main",
    { class: "layout" },
    h("div", { class: "side" }, queue.el, invitations.el, operators.el, moderation.el, roster.el, instructions.el),
    h("div", { class: "centre" }, call.el, wall.el, map.el),
  ),
  header.notices,
  emergency.overlay,
);

// ---- records: evidence browser, calls' audit, statistics (records/panel.ts) -------------
const records = new RecordsPanel(store, () => root.querySelector<HTMLElement>("main.layout"));
header.el.insertBefore(records.nav, header.el.lastElementChild);
root.append(records.el);

let lastSelected: string | null = null;

function render(): void {
  records.relabel();
  header.render();
  queue.render();
  roster.render();
  map.render();
  card.render();
  call.render();
  emergency.render();
  instructions.render();
  wall.render();
  operators.render();
  invitations.render();
  moderation.render();
  tick();
  if (store.selected !== lastSelected) {
    lastSelected = store.selected;
    if (store.selected) map.focus(store.selected);
  }
  // The emergency alarm over everything; a ring while a call rings at us.
  if (store.unacknowledged().length > 0) alarm.play("alarm");
  else if ((store.ringing.size > 0 || store.conferencesRinging.size > 0) && !store.call) alarm.play("ring");
  else alarm.play("none");
}

// Redraws are batched: with hundreds of officers reporting positions, pushes come by the
// hundred a second, and one redraw per RENDER_MS shows them all. (Timers, not animation
// frames: a console in a background tab must still raise its alarm.)
let scheduled = false;
function scheduleRender(): void {
  if (scheduled) return;
  scheduled = true;
  window.setTimeout(() => {
    scheduled = false;
    render();
  }, RENDER_MS);
}

store.subscribe(scheduleRender);
alarm.onChange = scheduleRender;
window.setInterval(render, TICK_MS);
// Any touch of the page lets the browser start the alarm's audio.
document.addEventListener("pointerdown", () => alarm.unlock(), { capture: true });
document.addEventListener("keydown", () => alarm.unlock(), { capture: true });

async function loadSettings(): Promise<void> {
  try {
    const resp = await fetch("/api/console/settings", {
      headers: { Authorization: `Bearer ${store.hub.bearer()}` },
    });
    if (resp.ok) store.settings = (await resp.json()) as ConsoleSettings;
  } catch {
    store.settings = DEFAULT_SETTINGS;
  }
  map.configure();
  render();
}

let settingsAsked = false;
store.subscribe(() => {
  // The settings need the token, which the first connection brings.
  if (!settingsAsked && store.connection === "connected") {
    settingsAsked = true;
    void loadSettings();
  }
});

store.hub.start();
render();

// ---- the test API: plain, JSON-able snapshots, no live objects -----------------------------

declare global {
  interface Window {
    ccConsole: unknown;
  }
}

window.ccConsole = {
  state: () => ({
    connection: store.connection,
    user: store.user,
    sessionId: store.sessionId,
    resumed: store.resumed,
    tokensFetched: store.hub.tokensFetched,
    roster: [...store.roster.values()],
    rosterReplies: store.rosterReplies,
    ringing: [...store.ringing.keys()],
    call: store.call,
    myStatus: store.myStatus(),
    emergencies: store.emergencies().map((e) => e.officer.id),
    mapOffline: map.offline,
    mapOfficers: map.drawn(),
    mapClusters: map.clusters(),
    mapTrack: map.trackDrawn(),
    mapCentre: [map.map.getCenter().lat, map.map.getCenter().lng],
    sound: alarm.playing(),
    soundRunning: alarm.running(),
    instructions: store.instructions.all(),
    instructionLists: store.instructions.listReplies,
    operators: [...store.operators.values()],
    transferOffers: [...store.transferOffers.keys()],
    transferOut: store.transferOut?.callId ?? null,
    away: store.away,
    invitations: [...store.invitations.keys()],
    camerasOff: [...store.camerasOff],
    sharedTo: store.sharedTo,
    conferencesRinging: [...store.conferencesRinging.keys()],
    moderating: store.moderation.open
      ? {
          id: store.moderation.open.id,
          holders: store.moderation.open.holders.map((u) => u.id),
          sites: store.moderation.sites().map((s) => [s.user.id, s.floor.state]),
          spotlight: store.moderation.open.spotlight?.id ?? null,
          locked: store.moderation.open.locked,
          recording: store.moderation.open.recording,
          moderators: store.moderation.open.moderators,
          feeds: store.moderation.open.feeds.map((f) => f.call_id),
          witnesses: store.moderation.witnesses.map((w) => [w.witness_id, w.revoked_at !== null]),
          deltas: store.moderation.open.deltas,
        }
      : null,
    cameraOn: call.cameraOn(),
    media: call.media ? { connectionState: call.media.pc.connectionState, remote: [...call.media.remote.keys()], error: call.media.error } : null,
  }),
  inboundStats: () => (call.media ? call.media.inboundStats() : Promise.resolve([])),
  // The video wall: what each tile shows, and opening it as a click on the top bar would.
  wall: () => wall.state(),
  // The desk's conference media: its connection and the slots received.
  deskMedia: () => moderation.mediaState(),
  deskAudio: () => moderation.audioState(),
  wallStats: () => wall.feedStats(),
  // A dropped connection (and an unusable token) on demand; the way back is the real one.
  dropConnection: (spoilToken: boolean) => store.hub.dropForTest(spoilToken),
  resumeConnection: () => store.hub.resumeForTest(),
};
