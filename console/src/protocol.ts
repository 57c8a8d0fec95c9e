/*
 * The protocol client: the one module that owns the WebSocket (docs/protocol.md). It gets its
 * token from the sign-in cookie (POST /api/session/token; 401: to the sign-in page), opens
 * /ws, sends heartbeats, turns replies into promises (matched by `ref`) and hands every push
 * to the store. It reconnects with `resume` after a drop, fetches a new token on 4401 and
 * resumes with it, and stops on 4409 (signed in elsewhere) and 4400.
 */

export const PROTOCOL_VERSION = 1;
const APP_VERSION = "console-0.1.0";
const RECONNECT_MAX_S = 15;

// ---- the shapes of docs/protocol.md (Shared shapes) -------------------------------------

export interface UserInfo {
  id: string;
  name: string;
  role: string;
  court: string;
}

export interface GeoPosition {
  lat: number;
  lon: number;
  accuracy_m: number;
  device_time: number;
}

export interface RosterEntry {
  officer: UserInfo;
  status: "online" | "away" | "offline";
  call_id: string | null;
  emergency: boolean;
  position: GeoPosition | null;
  device: string;
  since: number;
  /** While `emergency`: the officer's note on it, if they wrote one. */
  emergency_note?: string;
  /** While `emergency`: who took it on (acknowledge_emergency), once someone did. */
  emergency_taken_by?: UserInfo;
}

export interface CallInfo {
  call_id: string;
  direction: "officer_to_center" | "center_to_officer";
  state: "queued" | "ringing" | "active";
  court: string;
  officer: UserInfo;
  operator: UserInfo | null;
  case_number: string | null;
  emergency: boolean;
  supervisors: UserInfo[];
  created_at: number;
  /** Members whose camera is off, by id; left out when every camera is on. */
  cameras_off?: string[];
}

// ---- the call flow (transfer offers, operators' availability) ----------------------------

export type OperatorState = "free" | "busy" | "away" | "offline";

export interface OperatorEntry {
  user: UserInfo;
  status: OperatorState;
}

/** An officer's call to the center not answered yet (get_queue, queue_update). */
export interface QueueEntry {
  call: CallInfo;
  position: number | null;
  ringing: number;
}

/** Messages that carry a request's ref but do not answer it: its answer follows. */
const INTERIM = new Set(["conference_waiting"]);

export type CallflowPush =
  | { type: "transfer_offered"; call: CallInfo; from_operator: UserInfo; expires_in_s: number }
  | { type: "transfer_ended"; call_id: string; outcome: string; by: string | null }
  | { type: "operator_status"; entry: OperatorEntry }
  | { type: "call_requeued"; call_id: string; by: UserInfo }
  | { type: "participant_joined"; call_id: string; user: UserInfo; covert: boolean }
  | { type: "emergency_alarm"; officer: UserInfo; repeat: number; waiting_s: number; escalated_to: string | null }
  // The operator asks us (a supervisor) into their call; a party's camera went off or on.
  | { type: "supervisor_invited"; call: CallInfo; by: UserInfo }
  | { type: "camera_changed"; call_id: string; user: string; on: boolean }
  // A call its operator showed to a conference is no longer shown: that operator handed it
  // on or sent it back (told to them, the call's new operator and the moderators).
  | {
      type: "feed_ended";
      conference_id: string;
      title: string;
      call_id: string;
      officer: UserInfo;
      reason: "transferred" | "sent_back";
      by: UserInfo;
      to: UserInfo | null;
    }
  // A court's waiting calls (ringing anywhere, or queued), the whole list each time.
  | { type: "queue_update"; court: string; calls: QueueEntry[] };

export interface Welcome {
  type: "welcome";
  session_id: string;
  resume_token: string;
  resumed: boolean;
  user: UserInfo;
  server_time: number;
  heartbeat_interval_s: number;
  grace_s: number;
  calls: CallInfo[];
}

// Instructions to officers and their receipts (docs/protocol.md, "Instructions").
export interface RecipientInfo {
  officer: UserInfo;
  state: "sent" | "delivered" | "read";
  sent_at: number;
  delivered_at: number | null;
  read_at: number | null;
}

export interface InstructionInfo {
  instruction_id: string;
  by: UserInfo;
  court: string;
  /** Null: every officer of `court`. */
  officer: string | null;
  text: string;
  sent_at: number;
  expires_at: number;
  recipients: RecipientInfo[];
}

// ---- conferences the console moderates (moderation.ts) -----------------------------------

/** A site's floor (FloorInfo). */
export interface FloorInfo {
  state: "not_permitted" | "queued" | "permitted" | "pending_revoke";
  position: number | null;
}

/** A site as its moderators see it (SiteInfo). */
export interface SiteInfo {
  user: UserInfo;
  role: "moderator" | "site" | "witness";
  status: "joined" | "away";
  floor: FloorInfo;
  joined_at: number;
}

/** A live call shown to a conference (FeedInfo). */
export interface FeedInfo {
  call_id: string;
  officer: UserInfo;
  emergency: boolean;
  by: UserInfo;
}

/** The fields of a conference's state that changed (ConferenceChanges): absent is unchanged. */
export interface ConferenceChanges {
  holders?: UserInfo[];
  spotlight?: UserInfo | null;
  chair?: UserInfo | null;
  locked?: boolean;
  recording?: boolean;
  feeds?: FeedInfo[];
  status?: string;
}

/** A witness invitation (GET /api/conferences/<id>/witnesses). */
export interface WitnessInfo {
  witness_id: string;
  user: string;
  name: string;
  label: string;
  by: string;
  issued_at: number;
  expires_at: number;
  revoked_at: number | null;
}

/** An invitation and its answer (InvitationInfo): a court's or a user's. */
export interface InvitationInfo {
  invitee: string;
  kind: "court" | "user";
  state: "ringing" | "joined" | "declined" | "no_answer" | "withdrawn";
  by: UserInfo | null;
}

/** A conference as the invitation to it says (ConferenceInfo, the fields the console shows). */
export interface ConferenceInfo {
  conference_id: string;
  title: string;
  court: string;
  host: UserInfo;
  status: string;
}

/** A conference ringing at this console, and its stop (docs/protocol.md). */
export type InvitationPush =
  | { type: "conference_invitation"; conference: ConferenceInfo }
  | { type: "invitation_stopped"; conference_id: string; reason: string; by: UserInfo | null };

/** The conference pushes the desk follows. */
export type ConferencePush =
  | { type: "conference_update"; conference_id: string; revision: number; changes: ConferenceChanges }
  | { type: "sites_changed"; conference_id: string; revision: number; sites: SiteInfo[]; left: string[]; invitations?: InvitationInfo[] }
  | { type: "conference_ended"; conference_id: string; reason: string; by: string | null }
  | { type: "conference_left"; conference_id: string; reason: string; by: string | null };

// The pushes the console acts on; others are ignored, as the protocol asks of clients.
export type Push =
  | Welcome
  | { type: "roster_update"; entry: RosterEntry }
  | { type: "call_ringing"; call: CallInfo }
  | { type: "call_taken"; call_id: string; by: UserInfo }
  | { type: "ring_stopped"; call_id: string; reason: string }
  | { type: "call_answered"; call: CallInfo }
  | { type: "call_transferred"; call: CallInfo }
  | { type: "call_ended"; call_id: string; reason: string; by: string | null }
  | { type: "participant_left"; call_id: string; user: UserInfo }
  | { type: "emergency_acknowledged"; officer: UserInfo; by: UserInfo }
  | { type: "emergency_noted"; officer: UserInfo; note: string }
  | { type: "offer"; call_id: string; sdp: string }
  // The call's media worker died and the server moved it: offer again on a new connection.
  | { type: "media_restart"; call_id: string }
  | { type: "instruction_update"; instruction: InstructionInfo }
  | { type: "receipt_update"; instruction_id: string; court: string; recipient: RecipientInfo }
  | { type: "ice_candidate"; call_id: string; candidate: string; sdp_mid: string | null; sdp_mline_index: number | null }
  // The video wall (docs/protocol.md, *Watching an officer*).
  | { type: "watch_ended"; watch_id: string; officer: string; reason: string }
  | CallflowPush
  | ConferencePush
  | InvitationPush;

export interface Reply {
  type: string;
  ref: string;
  [field: string]: unknown;
}

export class ProtocolError extends Error {
  constructor(
    readonly code: string,
    readonly reason: string,
    readonly field: string | null,
  ) {
    super(`${code}: ${reason}`);
  }
}

export type Connection = "connecting" | "connected" | "reconnecting" | "replaced" | "refused";

export interface HubEvents {
  push(msg: Push): void;
  connection(state: Connection, closeCode: number | null): void;
  /** The server's clock minus ours, ms, whenever a heartbeat measures it. */
  clock(serverMinusLocalMs: number): void;
}

interface Pending {
  resolve(reply: Reply): void;
  reject(err: Error): void;
}

export const SIGN_IN_PAGE = "/app/signin.html";

export function toSignIn(): void {
  location.replace(`${SIGN_IN_PAGE}?next=${encodeURIComponent(location.pathname)}`);
}

// The session's resume token, kept in this tab's sessionStorage so that F5 resumes the
// session, and with it a call, instead of signing in again (which would end the call). Per
// tab: another tab of the console is another session. As good as the token while the session
// lives, like the JWT this page holds anyway; dropped on sign-out and when the session is
// taken elsewhere.
const RESUME_KEY = "cc.console.resume";

function storedResume(): string | null {
  try {
    return sessionStorage.getItem(RESUME_KEY);
  } catch {
    return null;
  }
}

function storeResume(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(RESUME_KEY, token);
    else sessionStorage.removeItem(RESUME_KEY);
  } catch {
    // Storage refused (a private window's quota): F5 then signs in again, as before.
  }
}

export class Hub {
  private ws: WebSocket | null = null;
  private token = "";
  private resumeToken: string | null = storedResume();
  private nextId = 1;
  private pending = new Map<string, Pending>();
  private heartbeat: number | undefined;
  private rttMs: number | null = null;
  private reconnectDelay = 1;
  private stopped = false;
  // Tests only (dropForTest): stay disconnected until resumeForTest.
  private held = false;
  /** How many tokens the cookie bought (the first, then one per 4401). */
  tokensFetched = 0;

  constructor(private readonly events: HubEvents) {}

  /** Start: a token from the cookie, then the WebSocket. */
  start(): void {
    void this.tokenFromCookie();
  }

  /** The token for the HTTP API (the same JWT as the WebSocket's). */
  bearer(): string {
    return this.token;
  }

  async signOut(): Promise<void> {
    this.stopped = true;
    storeResume(null);
    await fetch("/api/session", { method: "DELETE", credentials: "same-origin" }).catch(() => undefined);
    this.ws?.close(1000, "signed out");
    toSignIn();
  }

  /** Send a client message; resolves with its reply, rejects with a ProtocolError. */
  request(type: string, fields: Record<string, unknown> = {}): Promise<Reply> {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error("not connected"));
    const id = `c-${this.nextId++}`;
    ws.send(JSON.stringify({ type, id, ...fields }));
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  /**
   * For tests: drop the connection as a network would (and, with `spoilToken`, make the token
   * one the server refuses with 4401, as an expired one is), and stay away until
   * resumeForTest(): then the reconnect, the new token and the resume are the real ones.
   */
  dropForTest(spoilToken: boolean): void {
    this.held = true;
    if (spoilToken) this.token = "spoilt.for.test";
    this.ws?.close(4000, "dropped for a test");
  }

  resumeForTest(): void {
    this.held = false;
    this.connect();
  }

  private async tokenFromCookie(): Promise<void> {
    let resp: Response;
    try {
      resp = await fetch("/api/session/token", { method: "POST", credentials: "same-origin" });
    } catch {
      this.retryLater(() => void this.tokenFromCookie());
      return;
    }
    if (resp.status === 401) {
      toSignIn();
      return;
    }
    if (!resp.ok) {
      this.retryLater(() => void this.tokenFromCookie());
      return;
    }
    const body = (await resp.json()) as { token: string };
    this.token = body.token;
    this.tokensFetched += 1;
    this.connect();
  }

  private retryLater(again: () => void): void {
    // Randomised back-off, so that a restarted server is not met by every console at once.
    window.setTimeout(again, this.reconnectDelay * 1000 * (0.5 + Math.random()));
    this.reconnectDelay = Math.min(this.reconnectDelay * 2, RECONNECT_MAX_S);
  }

  private connect(): void {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams({ token: this.token, v: String(PROTOCOL_VERSION), app: APP_VERSION });
    // A resume keeps the session, and the call, across a dropped connection or a new token.
    if (this.resumeToken) query.set("resume", this.resumeToken);
    const ws = new WebSocket(`${scheme}://${location.host}/ws?${query}`);
    this.ws = ws;
    this.events.connection(this.resumeToken ? "reconnecting" : "connecting", null);
    ws.onmessage = (e: MessageEvent<string>) => this.receive(JSON.parse(e.data) as Record<string, unknown>);
    ws.onclose = (e: CloseEvent) => {
      if (this.ws === ws) this.closed(e.code);
    };
  }

  private closed(code: number): void {
    window.clearInterval(this.heartbeat);
    for (const p of this.pending.values()) p.reject(new Error(`connection closed (${code})`));
    this.pending.clear();
    if (this.stopped) return;
    if (this.held) {
      this.events.connection("reconnecting", code);
      return;
    }
    if (code === 4409) {
      // Another page of ours took the session: reconnecting would only take it back.
      storeResume(null);
      this.events.connection("replaced", code);
      return;
    }
    if (code === 4400 || code === 4403) {
      // Bad client, or the account was disabled: coming back would be refused.
      this.events.connection("refused", code);
      return;
    }
    this.events.connection("reconnecting", code);
    if (code === 4401) {
      // The token expired: a new one from the cookie, and the same session resumed with it.
      void this.tokenFromCookie();
      return;
    }
    this.retryLater(() => this.connect());
  }

  private receive(msg: Record<string, unknown>): void {
    const ref = msg.ref;
    if (typeof ref === "string") {
      const waiting = this.pending.get(ref);
      // Not the answer yet: a join paced by the server (docs/protocol.md, conference_waiting)
      // is answered later under the same ref.
      if (waiting && INTERIM.has(String(msg.type))) {
        this.events.push(msg as unknown as Push);
        return;
      }
      if (waiting) {
        this.pending.delete(ref);
        if (msg.type === "error") {
          waiting.reject(
            new ProtocolError(String(msg.code), String(msg.reason), (msg.field as string | null) ?? null),
          );
        } else {
          waiting.resolve(msg as Reply);
        }
      }
      return;
    }
    if (msg.type === "welcome") this.welcomed(msg as unknown as Welcome);
    this.events.push(msg as unknown as Push);
  }

  private welcomed(msg: Welcome): void {
    this.resumeToken = msg.resume_token;
    storeResume(msg.resume_token);
    this.reconnectDelay = 1;
    this.events.clock(msg.server_time - Date.now());
    this.events.connection("connected", null);
    this.sendHeartbeat();
    window.clearInterval(this.heartbeat);
    this.heartbeat = window.setInterval(() => this.sendHeartbeat(), msg.heartbeat_interval_s * 1000);
  }

  private sendHeartbeat(): void {
    const sentAt = Date.now();
    const fields: Record<string, number> = { device_time: sentAt };
    if (this.rttMs !== null) fields.rtt_ms = Math.min(this.rttMs, 60000);
    this.request("heartbeat", fields)
      .then((reply) => {
        this.rttMs = Date.now() - sentAt;
        // offset_ms is our clock minus the server's.
        this.events.clock(-Number(reply.offset_ms));
      })
      .catch(() => undefined);
  }
}
