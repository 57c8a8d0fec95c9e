// The accounts admin API (docs/accounts.md, commandcenter/admin_api.py): typed requests with
// the bearer token the sign-in cookie buys. A refusal becomes an ApiError carrying the
// server's `error`, `reason`, `field` and, for a refused import file, its `faults`.

import { toSignIn } from "../protocol";

export interface AccountSummary {
  user: string;
  name: string;
  role: string;
  court: string;
  second_factor: boolean;
  disabled: boolean;
  has_password: boolean;
  locked_until: number | null;
}

export interface AccountPage {
  accounts: AccountSummary[];
  total: number;
  offset: number;
  limit: number;
}

export interface Search {
  q: string;
  court: string;
  role: string;
  disabled: string;
  offset: number;
  limit: number;
}

/** What is shown once: a password made by the server, a new second factor. */
export interface Secrets {
  password?: string;
  totp_secret?: string;
  totp_uri?: string;
}

export interface ImportSummary {
  accounts: number;
  added: number;
  updated: number;
  without_password: number;
  file_sha256: string;
}

export type ImportProgress =
  | { phase: "hashing" | "saving"; done: number; total: number }
  | { phase: "done"; summary: ImportSummary }
  | { phase: "failed"; error: string; reason: string };

export interface Me {
  id: string;
  name: string;
  role: string;
  court: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly reason: string,
    readonly field: string | null = null,
    readonly faults: string[] = [],
  ) {
    super(reason);
  }
}

export class AdminApi {
  private token = "";
  me: Me | null = null;

  /** The token (and who we are) from the sign-in cookie; to the sign-in page without one. */
  async signIn(): Promise<Me | null> {
    const resp = await fetch("/api/session/token", { method: "POST", credentials: "same-origin" });
    if (resp.status === 401) {
      toSignIn();
      return null;
    }
    if (!resp.ok) throw await refusal(resp);
    const body = (await resp.json()) as { token: string; user: Me };
    this.token = body.token;
    this.me = body.user;
    return body.user;
  }

  /** The token, for the other HTTP APIs the page reads (the console settings). */
  bearer(): string {
    return this.token;
  }

  async signOut(): Promise<void> {
    await fetch("/api/session", { method: "DELETE", credentials: "same-origin" }).catch(() => undefined);
    toSignIn();
  }

  list(search: Search): Promise<AccountPage> {
    const query = new URLSearchParams({ offset: String(search.offset), limit: String(search.limit) });
    for (const name of ["q", "court", "role", "disabled"] as const) if (search[name]) query.set(name, search[name]);
    return this.json<AccountPage>("GET", `/api/accounts?${query}`);
  }

  add(account: { user: string; name: string; role: string; court: string; password: string; totp: boolean }): Promise<Secrets & { user: string; name: string }> {
    return this.json("POST", "/api/accounts", account);
  }

  setDisabled(user: string, disabled: boolean): Promise<{ account: AccountSummary; sessions_ended: number }> {
    return this.json("POST", `/api/accounts/${encodeURIComponent(user)}/${disabled ? "disable" : "enable"}`);
  }

  reset(user: string, password: string, totp: "keep" | "new" | "remove"): Promise<Secrets & { account: AccountSummary; sessions_ended: number }> {
    return this.json("POST", `/api/accounts/${encodeURIComponent(user)}/reset`, { password, totp });
  }

  /** Sends the file; `progress` gets each line of the server's NDJSON answer as it comes. */
  async import(file: Blob, progress: (p: ImportProgress) => void): Promise<void> {
    const resp = await this.send("POST", "/api/accounts/import", file, "text/csv");
    if (!resp.ok || !resp.body) throw await refusal(resp);
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let held = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      held += value;
      let end: number;
      while ((end = held.indexOf("\n")) >= 0) {
        const line = held.slice(0, end).trim();
        held = held.slice(end + 1);
        if (line) progress(JSON.parse(line) as ImportProgress);
      }
    }
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const resp = await this.send(method, path, body === undefined ? undefined : JSON.stringify(body), "application/json");
    if (!resp.ok) throw await refusal(resp);
    return (await resp.json()) as T;
  }

  private async send(method: string, path: string, body: BodyInit | undefined, type: string, again = true): Promise<Response> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["Content-Type"] = type;
    const resp = await fetch(path, { method, headers, body, credentials: "same-origin" });
    // The token expired while the page was open: a new one from the cookie, and once more.
    if (resp.status === 401 && again && (await this.signIn()) !== null) return this.send(method, path, body, type, false);
    return resp;
  }
}

async function refusal(resp: Response): Promise<ApiError> {
  try {
    const body = (await resp.json()) as { error: string; reason: string; field?: string; faults?: string[] };
    return new ApiError(resp.status, body.error, body.reason, body.field ?? null, body.faults ?? []);
  } catch {
    return new ApiError(resp.status, "http", `HTTP ${resp.status}`);
  }
}
