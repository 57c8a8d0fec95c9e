/*
 * The console's state, in one place: fed by the protocol client's pushes and replies, read by
 * the views, which subscribe and redraw. Commands (accept, call an officer, clear an
 * emergency, ...) go through here to the Hub, so that views never touch the socket.
 */

import { duration, reasonText, t, type TextKey } from "./i18n";
import { courtsBelow, invitable, type Candidate } from "./invitable";
import { ModeratorDesk, WitnessApiError } from "./moderation";

/** What a moderator does from the desk (views/moderation.ts). */
export type ModeratorAction = "grant" | "revoke" | "mute_all" | "leave" | "end" | "spotlight" | "remove" | "lock" | "record" | "name_moderator" | "remove_moderator" | "invite" | "withdraw";
import { InstructionBook, type InstructionTarget } from "./instructions";
import {
  Hub,
  ProtocolError,
  type CallInfo,
  type CallflowPush,
  type ConferenceInfo,
  type Connection,
  type OperatorEntry,
  type Push,
  type QueueEntry,
  type RosterEntry,
  type UserInfo,
  type Welcome,
} from "./protocol";

export interface CourtPlace {
  code: string;
  name: string;
  parent: string | null;
  position: { lat: number; lon: number } | null;
}

export interface ConsoleSettings {
  tile_url: string;
  tile_attribution: string;
  queue_amber_s: number;
  queue_red_s: number;
  // The video wall (views/wall.ts).
  wall_max_feeds: number;
  wall_rotate_s: number;
  /** The map and the roster: a position older than this is shown as stale (旧位). */
  position_stale_s: number;
  /** How supervisors join calls here (calls.supervisor_join). */
  supervisor_join: "visible" | "silent" | "either";
  /** Whether calls here are recorded (the call view shows 录像中). */
  recording: boolean;
  courts: CourtPlace[];
}

export const DEFAULT_SETTINGS: ConsoleSettings = {
  tile_url: "",
  tile_attribution: "",
  queue_amber_s: 30,
  queue_red_s: 90,
  wall_max_feeds: 16,
  wall_rotate_s: 20,
  position_stale_s: 300,
  supervisor_join: "visible",
  recording: false,
  courts: [],
};

export interface Notice {
  at: number;
  text: string;
}

export interface Snapshot {
  callId: string;
  evidenceId: string;
  sha256: string;
  /** A blob: URL of the JPEG as the evidence API returns it, or null until fetched. */
  url: string | null;
}

export type Listener = () => void;

// Roles the console is for (get_roster, call_officer, accept ...).
export const CONSOLE_ROLES = new Set(["operator", "supervisor", "admin"]);
// The picker's questions of the operators of each court below ours: 5 a second, a quarter of
// the connection's sustained message rate (limits.messages_per_s, 20), the rest for the user.
const SCOPE_ASK_GAP_MS = 200;
// Roles that may monitor a call they are not a party to (join_call).
const MONITORS = new Set(["supervisor", "admin"]);

export class Store {
  readonly hub: Hub;
  connection: Connection = "connecting";
  closeCode: number | null = null;
  user: UserInfo | null = null;
  sessionId: string | null = null;
  resumed = false;
  settings: ConsoleSettings = DEFAULT_SETTINGS;
  /** Officer id -> entry, from `roster` and `roster_update`. */
  roster = new Map<string, RosterEntry>();
  /** Officer id -> when (our clock) we first saw their current call, for its waiting time. */
  callSeen = new Map<string, { callId: string; at: number }>();
  /** Calls ringing at us, by id. */
  ringing = new Map<string, CallInfo>();
  /** Each court's calls not answered yet (ringing anywhere, or queued), from `get_queue`
   * and `queue_update`, in the order they will be answered. */
  waiting = new Map<string, QueueEntry[]>();
  /** The call we are in (active), or null. */
  call: CallInfo | null = null;
  /** A call we placed to an officer (call_officer), until it is answered or ends. */
  outgoing: { callId: string; officer: UserInfo } | null = null;
  /** Officers whose emergency this console acknowledged (the alarm stops for them). */
  acknowledged = new Set<string>();
  selected: string | null = null;
  /** The server's clock minus ours, ms. */
  serverOffsetMs = 0;
  notices: Notice[] = [];
  /** Stills taken of the call's video, kept as evidence, newest last. */
  snapshots: Snapshot[] = [];
  /** How many roster replies arrived (a test can tell a fresh one from the last). */
  rosterReplies = 0;
  /** Instructions to officers and their receipts (instructions.ts). */
  readonly instructions: InstructionBook;
  readonly moderation: ModeratorDesk;
  // ---- the call flow: transfers and the operators' availability --------------------------
  /** The operators of our court, by id, from `get_operators` and `operator_status`. */
  operators = new Map<string, OperatorEntry>();
  /** Calls other operators offer us (transfer_offered), by id, with when the offer lapses. */
  transferOffers = new Map<string, { call: CallInfo; from: UserInfo; expiresAt: number }>();
  /** The transfer we offered and wait on: the call and to whom. */
  transferOut: { callId: string; to: UserInfo } | null = null;
  /** We said we are away (set_availability): no calls ring here but emergencies. */
  away = false;
  /** Calls operators asked us (a supervisor) into, by id, until we join or they end. */
  invitations = new Map<string, { call: CallInfo; by: UserInfo }>();
  /** Members of our call whose camera is off (camera_changed), by user id. */
  camerasOff = new Set<string>();
  /** The conference our call is shown in (share_call), while it is. */
  sharedTo: { callId: string; conferenceId: string; title: string } | null = null;
  /** The conference our call was shown in, once it ended (the call view says so). */
  sharedEnded: { callId: string; title: string } | null = null;
  /** Set by the call view: the server's media messages for our call. */
  onMediaPush: ((msg: Push) => void) | null = null;
  /** Set by the video wall: media messages and ends of its watches. */
  onWallPush: ((msg: Push) => void) | null = null;
  /** Conferences ringing at this console (conference_invitation), by id, until they stop
   * ringing (invitation_stopped, conference_ended, our own join or decline). */
  conferencesRinging = new Map<string, ConferenceInfo>();
  /** The conference whose picker asked for the operators of every court of our scope. */
  private operatorsAskedFor: string | null = null;
  /** Set by the desk: media messages for the conference open there. */
  onDeskPush: ((msg: Push) => void) | null = null;
  private listeners = new Set<Listener>();

  constructor() {
    this.hub = new Hub({
      push: (msg) => this.pushed(msg),
      connection: (state, code) => {
        this.connection = state;
        this.closeCode = code;
        this.changed();
      },
      clock: (offset) => {
        this.serverOffsetMs = offset;
      },
    });
    this.instructions = new InstructionBook(this.hub);
    this.moderation = new ModeratorDesk(this.hub, () => this.user?.id);
  }

  subscribe(listener: Listener): void {
    this.listeners.add(listener);
  }

  changed(): void {
    for (const listener of this.listeners) listener();
  }

  serverNow(): number {
    return Date.now() + this.serverOffsetMs;
  }

  notice(text: string): void {
    this.notices.push({ at: Date.now(), text });
    if (this.notices.length > 5) this.notices.shift();
    this.changed();
  }

  /** The operator's own status: away while disconnected, busy in a call, else free. */
  myStatus(): "free" | "busy" | "away" {
    if (this.connection !== "connected") return "away";
    if (this.away && !this.call && !this.outgoing) return "away";
    return this.call || this.outgoing ? "busy" : "free";
  }

  isMonitor(): boolean {
    return this.user !== null && MONITORS.has(this.user.role);
  }

  /** Officers with an emergency no one has cleared, the unacknowledged first. */
  emergencies(): RosterEntry[] {
    const all = [...this.roster.values()].filter((e) => e.emergency && e.status !== "offline");
    return all.sort((a, b) => Number(this.acknowledged.has(a.officer.id)) - Number(this.acknowledged.has(b.officer.id)));
  }

  unacknowledged(): RosterEntry[] {
    return this.emergencies().filter((e) => !this.acknowledged.has(e.officer.id));
  }

  // ---- pushes --------------------------------------------------------------------------

  private pushed(msg: Push): void {
    switch (msg.type) {
      case "welcome":
        this.welcomed(msg);
        this.onWallPush?.(msg);
        break;
      case "roster_update":
        this.rosterEntry(msg.entry);
        break;
      case "call_ringing":
        this.ringing.set(msg.call.call_id, msg.call);
        break;
      case "call_taken":
        this.ringing.delete(msg.call_id);
        this.notice(t("notice.taken", { name: msg.by.name }));
        break;
      case "ring_stopped":
        this.ringing.delete(msg.call_id);
        break;
      case "call_answered":
      case "call_transferred":
        if (msg.type === "call_transferred" && this.transferOut?.callId === msg.call.call_id) this.transferOut = null;
        this.callChanged(msg.call);
        break;
      case "participant_left":
        if (this.user && msg.user.id === this.user.id && this.call?.call_id === msg.call_id) this.call = null;
        else if (this.call?.call_id === msg.call_id) {
          this.call = { ...this.call, supervisors: this.call.supervisors.filter((s) => s.id !== msg.user.id) };
        }
        break;
      case "call_ended":
        this.ringing.delete(msg.call_id);
        this.invitations.delete(msg.call_id);
        if (this.sharedTo?.callId === msg.call_id) this.stopSharing(false);
        if (this.outgoing?.callId === msg.call_id) this.outgoing = null;
        if (this.call?.call_id === msg.call_id) this.call = null;
        if (msg.reason !== "hangup" || msg.by !== this.user?.id) {
          this.notice(t("notice.call_ended", { reason: reasonText(msg.reason) }));
        }
        break;
      case "emergency_acknowledged":
        // Someone took it on (maybe this console): the alarm stops here too, and says who.
        this.acknowledged.add(msg.officer.id);
        this.emergencyChanged(msg.officer.id, { emergency_taken_by: msg.by });
        if (msg.by.id !== this.user?.id) {
          this.notice(t("notice.sos_taken", { name: msg.by.name, officer: msg.officer.name }));
        }
        break;
      case "emergency_noted":
        this.emergencyChanged(msg.officer.id, { emergency_note: msg.note });
        break;
      case "instruction_update":
        this.instructions.updated(msg.instruction);
        break;
      case "receipt_update":
        this.instructions.receipt(msg.instruction_id, msg.recipient);
        break;
      case "offer":
      case "ice_candidate":
      case "media_restart":
        this.onMediaPush?.(msg);
        this.onWallPush?.(msg);
        this.onDeskPush?.(msg);
        return;
      case "watch_ended":
        this.onWallPush?.(msg);
        break;
      case "transfer_offered":
      case "transfer_ended":
      case "operator_status":
      case "call_requeued":
      case "emergency_alarm":
      case "participant_joined":
      case "supervisor_invited":
      case "camera_changed":
      case "feed_ended":
        this.callflowPushed(msg);
        break;
      case "conference_invitation":
        this.conferencesRinging.set(msg.conference.conference_id, msg.conference);
        break;
      case "invitation_stopped":
        this.conferencesRinging.delete(msg.conference_id);
        break;
      case "conference_update":
      case "sites_changed":
      case "conference_ended":
      case "conference_left": {
        if (msg.type === "conference_ended") this.conferencesRinging.delete(msg.conference_id);
        const shared = this.sharedTo;
        if (msg.type === "conference_ended" && shared?.conferenceId === msg.conference_id) {
          // The conference our call was shown in ended: the push with it.
          this.sharedTo = null;
          this.sharedEnded = { callId: shared.callId, title: shared.title };
          this.notice(t("share.conference_ended", { title: shared.title }));
        }
        const wasOpen = this.moderation.open?.id === msg.conference_id;
        this.moderation.pushed(msg);
        if (wasOpen && !this.moderation.open) this.notice(t("mod.closed", { reason: t(msg.type === "conference_ended" ? "mod.ended" : "mod.removed") }));
        break;
      }
      case "queue_update":
        if (msg.calls.length > 0) this.waiting.set(msg.court, msg.calls);
        else this.waiting.delete(msg.court);
        break;
      default:
        break;
    }
    this.changed();
  }

  private welcomed(msg: Welcome): void {
    this.user = msg.user;
    this.sessionId = msg.session_id;
    this.resumed = msg.resumed;
    // welcome.calls is the whole truth: forget every call it does not list.
    this.ringing.clear();
    let active: CallInfo | null = null;
    for (const call of msg.calls) {
      if (call.state === "ringing" && call.officer.id !== msg.user.id) {
        if (call.operator?.id === msg.user.id) this.outgoing = { callId: call.call_id, officer: call.officer };
        else this.ringing.set(call.call_id, call);
      }
      if (call.state === "active") active = call;
    }
    if (this.outgoing && !msg.calls.some((c) => c.call_id === this.outgoing?.callId)) this.outgoing = null;
    this.call = active;
    // The call says whose camera is off, so that a reload shows it, not "on" until the next
    // camera_changed.
    if (active) this.camerasOff = othersOff(active, msg.user.id);
    // Updates sent while we were away are not replayed: ask for the whole roster again,
    // after every welcome, and take its reply as the truth.
    if (CONSOLE_ROLES.has(msg.user.role)) void this.refreshRoster();
    // Likewise the instructions: receipts that came while we were away are in the list.
    if (CONSOLE_ROLES.has(msg.user.role)) void this.refreshInstructions();
    if (CONSOLE_ROLES.has(msg.user.role)) void this.refreshModeration();
    // Offers are not replayed either: one made while we were away has lapsed or will. A new
    // session (not resumed) starts available.
    this.transferOffers.clear();
    // Nor invitations into calls; and a call that is gone takes its camera states and its
    // sharing with it (the server dropped the feed when the call ended).
    this.invitations.clear();
    // A conference's invitation is not sent again either (list_conferences finds it).
    this.conferencesRinging.clear();
    this.operatorsAskedFor = null;
    if (this.sharedTo && this.call?.call_id !== this.sharedTo.callId) this.stopSharing(false);
    if (!this.call) this.camerasOff.clear();
    if (!msg.resumed) this.away = false;
    if (this.transferOut && this.call?.call_id !== this.transferOut.callId) this.transferOut = null;
    if (CONSOLE_ROLES.has(msg.user.role)) void this.refreshOperators();
  }

  /** Our court's waiting calls, and those of every court we see officers of (a supervisor's
   * scope): the pushes keep them current from then on. */
  async refreshQueue(): Promise<void> {
    const own = this.user?.court;
    if (!own) return;
    const courts = new Set([own, ...[...this.roster.values()].map((e) => e.officer.court)]);
    this.waiting.clear();
    for (const court of courts) {
      try {
        const reply = await this.hub.request("get_queue", { court });
        const calls = reply.calls as QueueEntry[];
        if (calls.length > 0) this.waiting.set(court, calls);
      } catch {
        // A court outside our scope (an escalated officer's): its calls ring here if ours.
      }
    }
    this.changed();
  }

  /** Every waiting call we are told of, emergencies first, then oldest first. */
  waitingCalls(): QueueEntry[] {
    return [...this.waiting.values()]
      .flat()
      .sort((a, b) => Number(b.call.emergency) - Number(a.call.emergency) || a.call.created_at - b.call.created_at);
  }

  // ---- the moderator's desk (moderation.ts) ----------------------------------------------

  isConsoleUser(): boolean {
    return this.user !== null && CONSOLE_ROLES.has(this.user.role);
  }

  /** Ask again for the conferences we moderate; one open here is asked for again too (its
   * state after a resume: nothing sent while we were away is replayed). */
  async refreshModeration(): Promise<void> {
    const desk = this.moderation;
    try {
      if (desk.open) await desk.openConference(desk.open.id);
      await desk.refresh();
    } catch (err) {
      // The one open ended while we were away: say so and show the list.
      if (err instanceof ProtocolError && err.code === "not_found" && desk.open) {
        desk.open = null;
        this.notice(t("mod.closed", { reason: t("mod.ended") }));
      } else this.failed(err);
    }
    this.changed();
  }

  async hostConference(title: string): Promise<void> {
    try {
      await this.moderation.host(title, this.user?.court ?? "");
    } catch (err) {
      this.failed(err);
    }
    this.changed();
  }

  async openConference(id: string): Promise<void> {
    try {
      await this.moderation.openConference(id);
    } catch (err) {
      this.failed(err);
    }
    this.changed();
  }

  /** Decline a conference ringing here (decline_conference): it stops ringing. */
  async declineConference(id: string): Promise<void> {
    this.conferencesRinging.delete(id);
    try {
      await this.hub.request("decline_conference", { conference_id: id });
    } catch (err) {
      this.failed(err);
    }
    this.changed();
  }

  /** The courts at or below ours: whom a moderator here may invite. */
  scopeCourts(): Set<string> {
    const own = this.user?.court;
    if (!own) return new Set();
    return this.isMonitor() ? courtsBelow(own, this.settings.courts) : new Set([own]);
  }

  /** Whom the desk's picker offers for the conference open here (invitable.ts). */
  invitable(): Candidate[] {
    const open = this.moderation.open;
    if (!open) return [];
    return invitable({
      me: this.user?.id,
      scope: this.scopeCourts(),
      roster: this.roster.values(),
      operators: this.operators.values(),
      sites: new Set(open.sites.keys()),
      invitations: open.invitations.values(),
    });
  }

  /** Whether the console knows `id` as a user (so that the picker does not offer it as typed). */
  knowsUser(id: string): boolean {
    const open = this.moderation.open;
    return id === this.user?.id || this.roster.has(id) || this.operators.has(id) || !!open?.sites.has(id) || !!open?.invitations.has(`user:${id}`);
  }

  /** For the picker of a supervisor or administrator: the operators of every court below
   * theirs, once per conference opened (get_operators answers one court; `operator_status`
   * keeps them current after). An operator's scope is their court, asked after `welcome`.
   * Paced: a province has a hundred courts, and a connection's messages are rate-limited
   * (docs/protocol.md, *Limits*: over the rate, frames are refused, then the connection
   * closed); the nearer courts come first, each shown as it arrives. */
  async operatorsOfScope(conferenceId: string): Promise<void> {
    if (this.operatorsAskedFor === conferenceId || !this.isMonitor()) return;
    this.operatorsAskedFor = conferenceId;
    const own = this.user?.court;
    let first = true;
    for (const court of this.scopeCourts()) {
      if (court === own) continue;
      if (!first) await new Promise((done) => setTimeout(done, SCOPE_ASK_GAP_MS));
      first = false;
      // Given up when the conference closed or a new session began (welcome asks again).
      if (this.operatorsAskedFor !== conferenceId) return;
      if (this.moderation.open?.id !== conferenceId) {
        this.operatorsAskedFor = null;
        return;
      }
      try {
        const reply = await this.hub.request("get_operators", { court });
        for (const e of reply.operators as OperatorEntry[]) this.operators.set(e.user.id, e);
      } catch (err) {
        // A court the settings list but the server does not count in our scope: nobody to add.
        if (!(err instanceof ProtocolError && (err.code === "not_found" || err.code === "forbidden"))) this.failed(err);
      }
      this.changed();
    }
  }

  /** A moderator's action on the conference open here. */
  async moderate(action: ModeratorAction, site = ""): Promise<void> {
    const desk = this.moderation;
    const open = desk.open;
    try {
      if (action === "grant") await desk.grant(site);
      else if (action === "revoke") await desk.revoke(site);
      else if (action === "mute_all") await desk.muteAll();
      else if (action === "spotlight") await desk.spotlight(site || null);
      else if (action === "remove") await desk.remove(site);
      else if (action === "lock") await desk.lock(!open?.locked);
      else if (action === "record") await desk.record(!open?.recording);
      else if (action === "name_moderator") await desk.nameModerator(site);
      else if (action === "remove_moderator") await desk.removeModerator(site);
      else if (action === "invite") await desk.invite(site);
      else if (action === "withdraw") await desk.withdraw(site);
      else if (action === "end") await desk.end();
      else await desk.close();
      if (action === "leave" || action === "end") await desk.refresh();
    } catch (err) {
      this.failed(err);
    }
    this.changed();
  }

  /** The witnesses of the conference open here (邀请列席): list, invite, revoke. */
  async witnesses(action: "list" | "invite" | "revoke", arg: { id?: string; name?: string; label?: string; expiresInS?: number } = {}): Promise<void> {
    const desk = this.moderation;
    try {
      if (action === "list") await desk.loadWitnesses();
      else if (action === "invite") await desk.inviteWitness(arg.name ?? "", arg.label ?? "", arg.expiresInS ?? 3600);
      else await desk.revokeWitness(arg.id ?? "");
    } catch (err) {
      if (err instanceof WitnessApiError) this.notice(t("notice.error", { reason: err.field ? `${err.code} (${err.field})` : err.code }));
      else this.failed(err);
    }
    this.changed();
  }

  async refreshInstructions(): Promise<void> {
    try {
      await this.instructions.refresh();
      this.changed();
    } catch (err) {
      this.failed(err);
    }
  }

  /** A page of older instructions; one that expired meanwhile (not_found) lists afresh. */
  async olderInstructions(): Promise<void> {
    try {
      await this.instructions.older();
    } catch (err) {
      if (err instanceof ProtocolError && err.code === "not_found") await this.instructions.refresh();
      else this.failed(err);
    }
    this.changed();
  }

  /** Send an instruction; true once the server took it (it then shows in the list). */
  async sendInstruction(target: InstructionTarget, text: string): Promise<boolean> {
    try {
      await this.instructions.send(target, text);
      this.notice(t("notice.instruction_sent"));
      return true;
    } catch (err) {
      this.failed(err);
      return false;
    }
  }

  async refreshRoster(): Promise<void> {
    try {
      const reply = await this.hub.request("get_roster");
      const officers = reply.officers as RosterEntry[];
      this.roster = new Map(officers.map((e) => [e.officer.id, e]));
      for (const e of officers) {
        this.noteCall(e);
        this.noteTaken(e);
      }
      this.rosterReplies += 1;
      this.changed();
      // Queue updates sent while we were away are not replayed either; asked once the
      // roster says which courts we see officers of.
      void this.refreshQueue();
    } catch (err) {
      this.failed(err);
    }
  }

  private rosterEntry(entry: RosterEntry): void {
    const id = entry.officer.id;
    if (entry.status === "offline") {
      this.roster.delete(id);
      this.callSeen.delete(id);
      this.acknowledged.delete(id);
      return;
    }
    const before = this.roster.get(id);
    if (before?.emergency && !entry.emergency) this.acknowledged.delete(id);
    // An officer of another court is shown to an operator only while an emergency escalated
    // to our court lasts.
    if (this.user?.role === "operator" && entry.officer.court !== this.user.court && !entry.emergency) {
      this.roster.delete(id);
      this.callSeen.delete(id);
      return;
    }
    this.roster.set(id, entry);
    this.noteCall(entry);
    this.noteTaken(entry);
  }

  /** An emergency someone already took on (a console that opens or reloads learns it from
   * the roster) does not alarm here as a fresh one: the strip says who took it. */
  private noteTaken(entry: RosterEntry): void {
    if (entry.emergency && entry.emergency_taken_by) this.acknowledged.add(entry.officer.id);
  }

  /** What a push says about an officer's emergency, kept on their roster entry. */
  private emergencyChanged(officerId: string, change: Partial<RosterEntry>): void {
    const entry = this.roster.get(officerId);
    if (entry?.emergency) this.roster.set(officerId, { ...entry, ...change });
  }

  private noteCall(entry: RosterEntry): void {
    const id = entry.officer.id;
    if (!entry.call_id) this.callSeen.delete(id);
    else if (this.callSeen.get(id)?.callId !== entry.call_id) {
      this.callSeen.set(id, { callId: entry.call_id, at: Date.now() });
    }
  }

  private callChanged(call: CallInfo): void {
    const me = this.user?.id;
    const member =
      call.officer.id === me ||
      call.operator?.id === me ||
      call.supervisors.some((s) => s.id === me) ||
      this.isMonitor();
    this.ringing.delete(call.call_id);
    if (this.outgoing?.callId === call.call_id) this.outgoing = null;
    if (!member) {
      if (this.call?.call_id === call.call_id) this.call = null;
      return;
    }
    this.camerasOff = othersOff(call, me);
    this.invitations.delete(call.call_id);
    this.call = call;
    // Answering an officer's emergency call is acknowledging their emergency.
    if (call.emergency && call.operator?.id === me) this.acknowledged.add(call.officer.id);
  }

  // ---- commands ---------------------------------------------------------------------------

  failed(err: unknown): void {
    const reason = err instanceof ProtocolError ? err.code : err instanceof Error ? err.message : String(err);
    this.notice(t("notice.error", { reason }));
  }

  private async send(type: string, fields: Record<string, unknown>): Promise<void> {
    try {
      await this.hub.request(type, fields);
    } catch (err) {
      this.failed(err);
    }
  }

  accept(callId: string): Promise<void> {
    return this.send("accept", { call_id: callId });
  }

  decline(callId: string): Promise<void> {
    return this.send("decline", { call_id: callId }).then(() => {
      this.ringing.delete(callId);
      this.changed();
    });
  }

  async callOfficer(officer: UserInfo): Promise<void> {
    try {
      const reply = await this.hub.request("call_officer", { officer: officer.id });
      const callId = String(reply.call_id);
      // A call_ended (unavailable, busy) may already have come with the reply.
      if (!this.call || this.call.call_id !== callId) this.outgoing = { callId, officer };
      this.changed();
    } catch (err) {
      this.failed(err);
    }
  }

  cancelOutgoing(): Promise<void> {
    const out = this.outgoing;
    return out ? this.send("cancel", { call_id: out.callId }) : Promise.resolve();
  }

  joinCall(callId: string, covert = false): Promise<void> {
    return this.send("join_call", covert ? { call_id: callId, covert: true } : { call_id: callId });
  }

  /** We are in the call and may be heard: its operator, or a supervisor who joined openly. */
  speaks(): boolean {
    const call = this.call;
    const me = this.user?.id;
    return !!call && !!me && (call.operator?.id === me || call.supervisors.some((s) => s.id === me));
  }

  /** Ask the supervisors over the call's court into our call (invite_supervisor). */
  async inviteSupervisor(): Promise<void> {
    const call = this.call;
    if (!call) return;
    try {
      await this.hub.request("invite_supervisor", { call_id: call.call_id });
      this.notice(t("invite.sent"));
    } catch (err) {
      // Nobody to ask is a state of the court, not a failure: said as such.
      if (err instanceof ProtocolError && err.code === "unavailable") this.notice(t("invite.nobody"));
      else this.failed(err);
    }
  }

  /** Join a call we were invited into, as policy allows (visible unless it is "silent"). */
  joinInvited(callId: string): Promise<void> {
    this.invitations.delete(callId);
    this.changed();
    return this.joinCall(callId);
  }

  dismissInvitation(callId: string): void {
    this.invitations.delete(callId);
    this.changed();
  }

  /** Tell the others in our call that our camera went off or on. */
  tellCamera(on: boolean): Promise<void> {
    return this.call ? this.send("set_camera", { call_id: this.call.call_id, on }) : Promise.resolve();
  }

  // ---- pushing our call into a conference (share_call) ------------------------------------

  /** The running conferences we may join, to share our call into. */
  async runningConferences(): Promise<{ conference_id: string; title: string }[]> {
    try {
      const reply = await this.hub.request("list_conferences");
      const all = reply.conferences as { conference_id: string; title: string; status: string }[];
      return all.filter((c) => c.status === "running");
    } catch (err) {
      this.failed(err);
      return [];
    }
  }

  /** Show our call in a conference: the call's operator joins it (no media: the console
   * only shares), then shares the call. */
  async shareCall(conferenceId: string, title: string): Promise<void> {
    const call = this.call;
    if (!call) return;
    try {
      await this.hub.request("join_conference", { conference_id: conferenceId });
      await this.hub.request("share_call", { conference_id: conferenceId, call_id: call.call_id });
      this.sharedTo = { callId: call.call_id, conferenceId, title };
      this.notice(t("share.done", { title }));
    } catch (err) {
      this.failed(err);
      this.hub.request("leave_conference", { conference_id: conferenceId }).catch(() => {});
    }
  }

  /** Stop showing the call; `unshare` false when the call ended (the feed went with it). */
  stopSharing(unshare = true): void {
    const shared = this.sharedTo;
    if (!shared) return;
    this.sharedTo = null;
    const leave = (): void => {
      this.hub.request("leave_conference", { conference_id: shared.conferenceId }).catch(() => {});
    };
    if (unshare) {
      this.send("unshare_call", { conference_id: shared.conferenceId, call_id: shared.callId }).then(leave, leave);
    } else leave();
    this.changed();
  }

  hangup(): Promise<void> {
    return this.call ? this.send("hangup", { call_id: this.call.call_id }) : Promise.resolve();
  }

  /** A still of the officer's video, stored by the server as evidence, then shown. */
  async snapshot(): Promise<void> {
    const call = this.call;
    if (!call) return;
    try {
      const reply = await this.hub.request("snapshot", { call_id: call.call_id });
      const shot: Snapshot = {
        callId: call.call_id,
        evidenceId: String(reply.evidence_id),
        sha256: String(reply.sha256),
        url: null,
      };
      this.snapshots.push(shot);
      this.changed();
      // The evidence API's copy, so what is shown is what was kept.
      const resp = await fetch(`/api/evidence/${encodeURIComponent(shot.evidenceId)}/content`, {
        headers: { Authorization: `Bearer ${this.hub.bearer()}` },
      });
      if (!resp.ok) throw new Error(`evidence ${resp.status}`);
      shot.url = URL.createObjectURL(await resp.blob());
      this.changed();
    } catch (err) {
      this.failed(err);
    }
  }

  /** Take the emergency on: the server tells the officer and the other consoles who. */
  acknowledge(officerId: string): void {
    this.acknowledged.add(officerId);
    this.changed();
    // Refused when someone was first: their emergency_acknowledged says who.
    this.send("acknowledge_emergency", { officer: officerId }).catch(() => {});
  }

  clearEmergency(officerId: string): Promise<void> {
    this.acknowledged.add(officerId);
    return this.send("clear_emergency", { officer: officerId });
  }

  /** Clear it as a false alarm: the reason goes to the trace (the protocol requires one). */
  falseAlarm(officerId: string, reason: string): Promise<void> {
    this.acknowledged.add(officerId);
    return this.send("clear_emergency", {
      officer: officerId,
      outcome: "false_alarm",
      reason: reason.slice(0, 256),
    });
  }

  // ---- the call flow: transfers and the operators' availability --------------------------

  private callflowPushed(msg: CallflowPush): void {
    switch (msg.type) {
      case "transfer_offered":
        this.transferOffers.set(msg.call.call_id, {
          call: msg.call,
          from: msg.from_operator,
          expiresAt: Date.now() + msg.expires_in_s * 1000,
        });
        break;
      case "transfer_ended": {
        const offered = this.transferOffers.get(msg.call_id);
        this.transferOffers.delete(msg.call_id);
        if (this.transferOut?.callId === msg.call_id) {
          const to = this.transferOut.to;
          this.transferOut = null;
          if (msg.by !== this.user?.id) {
            this.notice(t("transfer.ended", { name: to.name, outcome: t(transferOutcomeKey(msg.outcome)) }));
          }
        } else if (offered && msg.by !== this.user?.id) {
          this.notice(t("transfer.withdrawn", { name: offered.from.name, outcome: t(transferOutcomeKey(msg.outcome)) }));
        }
        break;
      }
      case "call_requeued":
        this.ringing.delete(msg.call_id);
        if (this.call?.call_id === msg.call_id && this.call.operator?.id === this.user?.id) {
          const name = this.call.officer.name;
          this.call = null;
          this.notice(t("requeue.done", { name }));
        } else if (this.call?.call_id === msg.call_id) {
          this.call = { ...this.call, state: "queued", operator: null };
        }
        break;
      case "participant_joined": {
        // A supervisor joined our call openly: the parties see who is listening (and may be
        // heard). A covert join is told to the supervisor alone.
        const call = this.call;
        if (call?.call_id === msg.call_id && !msg.covert && msg.user.id !== this.user?.id) {
          if (!call.supervisors.some((s) => s.id === msg.user.id)) {
            this.call = { ...call, supervisors: [...call.supervisors, msg.user] };
          }
          this.notice(t("call.supervisor_joined", { name: msg.user.name }));
        }
        break;
      }
      case "supervisor_invited":
        this.invitations.set(msg.call.call_id, { call: msg.call, by: msg.by });
        this.notice(t("invite.received", { name: msg.by.name, officer: msg.call.officer.name }));
        break;
      case "feed_ended":
        // Shown on the word of the operator who left the call: it ends with them. They
        // leave the conference they joined to show it; the new operator is told it was shown.
        if (msg.by.id === this.user?.id) {
          if (this.sharedTo?.callId === msg.call_id) this.stopSharing(false);
          this.notice(t(msg.reason === "transferred" ? "share.ended_transferred" : "share.ended_sent_back", { title: msg.title }));
        } else if (msg.to?.id === this.user?.id) {
          this.notice(t("share.ended_to_me", { title: msg.title, name: msg.by.name }));
        }
        break;
      case "camera_changed":
        if (this.call?.call_id !== msg.call_id) break;
        if (msg.on) this.camerasOff.delete(msg.user);
        else this.camerasOff.add(msg.user);
        break;
      case "emergency_alarm":
        // Still nobody took it on at the server: whatever this console did, alarm again.
        this.acknowledged.delete(msg.officer.id);
        this.notice(
          t(msg.escalated_to ? "sos.repeat_escalated" : "sos.repeat", {
            name: msg.officer.name,
            n: msg.repeat,
            t: duration(msg.waiting_s),
          }),
        );
        break;
      case "operator_status":
        if (msg.entry.status === "offline") this.operators.delete(msg.entry.user.id);
        // Only the operators of our court, or of our scope for a supervisor, are pushed to us.
        else this.operators.set(msg.entry.user.id, msg.entry);
        break;
    }
  }

  async refreshOperators(): Promise<void> {
    try {
      const reply = await this.hub.request("get_operators");
      const listed = reply.operators as OperatorEntry[];
      this.operators = new Map(listed.map((e) => [e.user.id, e]));
      this.changed();
    } catch (err) {
      this.failed(err);
    }
  }

  /** Put our answered call back in the queue, for the court's other operators. */
  sendBack(): Promise<void> {
    return this.call ? this.send("send_back", { call_id: this.call.call_id }) : Promise.resolve();
  }

  /** Other operators of our court who are free now: whom a call may be offered to. */
  freeOperators(): UserInfo[] {
    return [...this.operators.values()]
      .filter((e) => e.status === "free" && e.user.id !== this.user?.id)
      .map((e) => e.user)
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  async offerTransfer(to: UserInfo): Promise<void> {
    const call = this.call;
    if (!call) return;
    try {
      await this.hub.request("transfer", { call_id: call.call_id, to: to.id });
      // A transfer_ended or call_transferred may already have come with the reply.
      if (this.call?.call_id === call.call_id && this.call.operator?.id === this.user?.id) {
        this.transferOut = { callId: call.call_id, to };
      }
      this.changed();
    } catch (err) {
      this.failed(err);
    }
  }

  cancelTransfer(): Promise<void> {
    const out = this.transferOut;
    return out ? this.send("cancel_transfer", { call_id: out.callId }) : Promise.resolve();
  }

  acceptTransfer(callId: string): Promise<void> {
    this.transferOffers.delete(callId);
    this.changed();
    return this.send("accept_transfer", { call_id: callId });
  }

  declineTransfer(callId: string): Promise<void> {
    this.transferOffers.delete(callId);
    this.changed();
    return this.send("decline_transfer", { call_id: callId });
  }

  async setAway(away: boolean): Promise<void> {
    try {
      await this.hub.request("set_availability", { status: away ? "away" : "available" });
      this.away = away;
      this.changed();
    } catch (err) {
      this.failed(err);
    }
  }

  select(officerId: string | null): void {
    this.selected = officerId;
    this.changed();
  }

  // ---- an officer's track (GET /api/officers/{id}/track, today by default) ----

  /** The track drawn on the map, or null. */
  track: Track | null = null;

  /** Fetch and show today's track of an officer (another officer's replaces it). */
  async showTrack(officerId: string): Promise<void> {
    try {
      const resp = await fetch(`/api/officers/${encodeURIComponent(officerId)}/track`, {
        headers: { Authorization: `Bearer ${this.hub.bearer()}` },
      });
      if (!resp.ok) throw new Error(`track ${resp.status}`);
      const body = (await resp.json()) as { points: { at: number; lat: number; lon: number }[]; thinned: boolean };
      this.track = { officerId, points: body.points.map((p) => ({ at: p.at, lat: p.lat, lon: p.lon })), thinned: body.thinned };
      this.changed();
    } catch (err) {
      this.failed(err);
    }
  }

  hideTrack(): void {
    this.track = null;
    this.changed();
  }
}

/** An officer's recorded positions, oldest first. */
export interface Track {
  officerId: string;
  points: { at: number; lat: number; lon: number }[];
  thinned: boolean;
}

function transferOutcomeKey(outcome: string): TextKey {
  const known = ["declined", "expired", "cancelled", "ended", "unavailable"];
  return (known.includes(outcome) ? `transfer.outcome.${outcome}` : "transfer.outcome.ended") as TextKey;
}

/** The members of `call` other than `me` whose camera is off (ours is the call view's). */
function othersOff(call: CallInfo, me: string | undefined): Set<string> {
  return new Set((call.cameras_off ?? []).filter((id) => id !== me));
}
