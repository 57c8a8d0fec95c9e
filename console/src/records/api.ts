// The records views' HTTP client: the evidence search and trail, the chain check, the
// calls' audit and the statistics (commandcenter/openapi.json), with the console's bearer
// token. Views call these and never build URLs themselves.

/** Who a user id is (GET /api/users/names): an account's name, or, for a user who is not an
 * account, the display name their sign-in recorded (`source` "sign_in"). */
export interface UserName {
  name: string;
  role: string;
  court: string;
  source: "account" | "sign_in";
}

export interface Position {
  lat: number;
  lon: number;
  accuracy_m: number | null;
}

export interface EvidenceItem {
  evidence_id: string;
  case_number: string;
  sha256: string;
  size: number;
  kind: string;
  media_type: string;
  file_name: string;
  uploader: string;
  court: string;
  device: string;
  capture_time: number;
  clock_offset_ms: number | null;
  time_unverified: boolean;
  time_unverified_reason: string | null;
  received_at: number;
  position: Position | null;
  recorded: { seq: number; at: number };
}

export interface Listing {
  items: EvidenceItem[];
  total: number;
  offset: number;
  limit: number;
}

export interface AuditRecord {
  seq: number;
  at: number;
  kind: string;
  hash: string;
  data: Record<string, unknown>;
}

export interface EvidenceAudit {
  item: EvidenceItem;
  call: string | null;
  records: AuditRecord[];
  /** While the server indexes a trace written before its audit index: records it has not yet filed (absent once none). */
  reindex_remaining?: number;
}

export interface ChainCheck {
  ok: boolean;
  /** Read from record 1 (else from `from_seq`, where the last check ended). */
  full: boolean;
  from_seq: number;
  /** Records read and found intact by this check. */
  checked: number;
  records: number;
  head_seq: number;
  head_hash: string;
  seq?: number;
  problem?: string;
  detail?: string;
}

export interface CallSummary {
  call_id: string;
  direction: string | null;
  officer: string | null;
  court: string | null;
  case_number: string | null;
  emergency: boolean;
  created_at: number;
  ended_at: number | null;
  end_reason: string | null;
  answered: boolean | null;
}

export interface Watch {
  user: string;
  role: string;
  since: number;
  since_seq: number;
  until: number | null;
  until_seq: number | null;
  covert: boolean;
}

export interface CallAudit {
  call: CallSummary;
  timeline: AuditRecord[];
  watched: Watch[];
  evidence: { evidence_id: string | null; media: string | null; sha256: string | null; seq: number }[];
  /** While the server indexes a trace written before its audit index: records it has not yet filed (absent once none). */
  reindex_remaining?: number;
}

/** A conference as the listing shows it (GET /api/conferences). */
export interface ConferenceSummary {
  conference_id: string;
  title: string | null;
  court: string | null;
  kind: string | null;
  host: string | null;
  moderators: string[];
  created_at: number | null;
  started_at: number | null;
  ended_at: number | null;
  end_reason: string | null;
  running: boolean;
  sites: number;
  floor_grants: number;
  recording: boolean;
}

export interface ConferenceListing {
  conferences: ConferenceSummary[];
  total: number;
  limit: number;
  offset: number;
  figures: { conferences: number; enforcement_actions: number };
}

export interface ConferenceAudit {
  conference: ConferenceSummary;
  timeline: AuditRecord[];
  truncated: boolean;
  /** While the server indexes a trace written before its audit index: records it has not yet filed (absent once none). */
  reindex_remaining?: number;
}

export type Figures = Record<string, number | null>;

export interface StatsAnswer {
  from: string;
  to: string;
  court: string | null;
  figures: Figures;
  how: Record<string, string>;
  over: string;
  by_day: { day: string; figures: Figures }[];
  by_court: { court: string; name: string; figures: Figures }[];
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    /** The server's error code (`busy`, `checkpoint_invalid`, ...), when it sent one. */
    readonly code: string = "",
  ) {
    super(reason);
  }
}

export class RecordsApi {
  constructor(private readonly bearer: () => string) {}

  private async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const resp = await fetch(path, {
      ...init,
      headers: { Authorization: `Bearer ${this.bearer()}` },
    });
    if (!resp.ok) {
      let reason = String(resp.status);
      let code = "";
      try {
        const body = (await resp.json()) as { error?: string; reason?: string; field?: string };
        reason = body.field ? `${body.field}: ${body.reason}` : (body.reason ?? reason);
        code = body.error ?? "";
      } catch {
        // Not JSON: the status says enough.
      }
      throw new ApiError(resp.status, reason, code);
    }
    return resp;
  }

  private async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    return (await (await this.fetch(path, init)).json()) as T;
  }

  search(params: Record<string, string>): Promise<Listing> {
    return this.json(`/api/evidence?${query(params)}`);
  }

  evidenceAudit(id: string): Promise<EvidenceAudit> {
    return this.json(`/api/evidence/${encodeURIComponent(id)}/audit`);
  }

  /** Open the player on a recording (POST /api/evidence/<id>/view): recorded once, as a
   * view, and our token in the player's cookie. The URL it answers streams the original
   * with range requests that are parts of this view, not a download each. */
  async view(id: string): Promise<string> {
    const path = `/api/evidence/${encodeURIComponent(id)}`;
    const body = await this.json<{ view: string }>(`${path}/view`, { method: "POST" });
    return `${path}/content?view=${encodeURIComponent(body.view)}`;
  }

  /** The original as a response, to read as it arrives (a recording hashed here). */
  contentResponse(id: string): Promise<Response> {
    return this.fetch(`/api/evidence/${encodeURIComponent(id)}/content`);
  }

  /** The original's bytes, as the server keeps them. */
  async content(id: string): Promise<Blob> {
    return (await this.fetch(`/api/evidence/${encodeURIComponent(id)}/content`)).blob();
  }

  /** Names for user ids (GET /api/users/names): those the account store knows within our
   * scope, and users who are not accounts as their sign-in named them; the rest are left
   * out. */
  async names(ids: string[]): Promise<Record<string, UserName>> {
    const params = new URLSearchParams(ids.map((id) => ["id", id]));
    const body = await this.json<{ names: Record<string, UserName> }>(`/api/users/names?${params}`);
    return body.names;
  }

  /** The chain check on the server: from where the last one ended, or (`full`) from
   * record 1. */
  verify(full = false): Promise<ChainCheck> {
    return this.json(`/api/trace/verify${full ? "?full=1" : ""}`, { method: "POST" });
  }

  calls(params: Record<string, string>): Promise<{ calls: CallSummary[]; total: number }> {
    return this.json(`/api/calls?${query(params)}`);
  }

  callAudit(callId: string): Promise<CallAudit> {
    return this.json(`/api/calls/${encodeURIComponent(callId)}/audit`);
  }

  conferences(params: Record<string, string>): Promise<ConferenceListing> {
    return this.json(`/api/conferences?${query(params)}`);
  }

  conferenceAudit(conferenceId: string): Promise<ConferenceAudit> {
    return this.json(`/api/conferences/${encodeURIComponent(conferenceId)}/audit`);
  }

  stats(params: Record<string, string>): Promise<StatsAnswer> {
    return this.json(`/api/stats?${query({ ...params, series: "day,court", explain: "true" })}`);
  }
}

function query(params: Record<string, string>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v.trim()) q.set(k, v.trim());
  return q.toString();
}

/** Unix seconds as local date and time, to the second. */
export function when(seconds: number | null): string {
  if (seconds === null) return "";
  const d = new Date(seconds * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** YYYY-MM-DD of a date, local. */
export function day(d: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}
