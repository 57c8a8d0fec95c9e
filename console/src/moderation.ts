/*
 * The moderator's desk inside the console (docs/console.md, "Moderate a conference"): the
 * conferences this user moderates, hosting one, and, for the one opened, its sites with their
 * hands and floor, kept current by `sites_changed` and `conference_update`, and the
 * moderator's actions: the floor, spotlight, remove, lock, recording, co-moderators, and the
 * witnesses invited to watch (邀请列席, over HTTP: /api/conferences/<id>/witnesses). Over the
 * console's own connection (one per user: a second tab on the conferences page would sign the
 * console out). The store owns one; a view reads it.
 */

import type { ConferencePush, FeedInfo, Hub, InvitationInfo, SiteInfo, UserInfo, WitnessInfo } from "./protocol";

export interface ConferenceSummary {
  conference_id: string;
  title: string;
  status: string;
  moderators: string[];
}

export interface OpenConference {
  id: string;
  title: string;
  revision: number;
  holders: UserInfo[];
  spotlight: UserInfo | null;
  locked: boolean;
  recording: boolean;
  /** Live calls shown to it (share_call), in the order shared. */
  feeds: FeedInfo[];
  /** The host first, then the co-moderators named. */
  moderators: string[];
  /** Joined sites by user id, in the order they joined. */
  sites: Map<string, SiteInfo>;
  /** Every invitation and its answer, by "court:<code>" / "user:<id>". */
  invitations: Map<string, InvitationInfo>;
  /** Every sites_changed applied since it was opened (the view redraws the rows it named). */
  deltas: number;
}

/** A witness link just issued: shown (and its QR code drawn) once, never kept elsewhere. */
export interface IssuedWitness extends WitnessInfo {
  link: string;
}

interface JoinedState {
  revision: number;
  holders: UserInfo[];
  spotlight: UserInfo | null;
  locked: boolean;
  recording: boolean;
  feeds: FeedInfo[];
}

export class WitnessApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly field: string | null,
  ) {
    super(code);
  }
}

export class ModeratorDesk {
  /** Running conferences this user moderates (list_conferences). */
  mine: ConferenceSummary[] = [];
  open: OpenConference | null = null;
  /** Why the last one we had open is closed ("ended", "removed", ...), for the notice. */
  closedBy: string | null = null;
  /** The witnesses of the one open, and the link issued last. */
  witnesses: WitnessInfo[] = [];
  issued: IssuedWitness | null = null;

  constructor(
    private readonly hub: Hub,
    private readonly me: () => string | undefined,
  ) {}

  async refresh(): Promise<void> {
    const reply = await this.hub.request("list_conferences");
    const me = this.me();
    const all = reply.conferences as ConferenceSummary[];
    this.mine = all.filter((c) => c.status === "running" && me !== undefined && c.moderators.includes(me));
  }

  /** Host a conference of our court and every court below it, now, and open it. */
  async host(title: string, court: string): Promise<void> {
    const reply = await this.hub.request("create_conference", { title, invite_below: [court] });
    const created = reply.conference as ConferenceSummary;
    await this.openConference(created.conference_id);
    await this.refresh();
  }

  /** Join as its moderator: the whole view of its sites comes with the reply. */
  async openConference(id: string): Promise<void> {
    const reply = await this.hub.request("join_conference", { conference_id: id });
    const conference = reply.conference as ConferenceSummary;
    const state = reply.state as JoinedState;
    const sites = reply.sites as SiteInfo[];
    const invitations = reply.invitations as InvitationInfo[];
    if (this.open?.id !== id) {
      this.witnesses = [];
      this.issued = null;
    }
    this.closedBy = null;
    this.open = {
      id,
      title: conference.title,
      revision: state.revision,
      holders: state.holders,
      spotlight: state.spotlight,
      locked: state.locked,
      recording: state.recording,
      feeds: state.feeds,
      moderators: conference.moderators,
      sites: new Map(sites.map((s) => [s.user.id, s])),
      invitations: new Map(invitations.map((i) => [`${i.kind}:${i.invitee}`, i])),
      deltas: 0,
    };
  }

  /** Leave the conference (it goes on without us). */
  async close(): Promise<void> {
    const open = this.open;
    this.open = null;
    if (open) await this.hub.request("leave_conference", { conference_id: open.id });
  }

  grant(site: string): Promise<unknown> {
    return this.act("grant_floor", { site });
  }

  revoke(site: string): Promise<unknown> {
    return this.act("revoke_floor", { site });
  }

  muteAll(): Promise<unknown> {
    return this.act("mute_all", {});
  }

  /** Every site sees `site`'s video; null: the floor holder's again. */
  spotlight(site: string | null): Promise<unknown> {
    return this.act("spotlight", site === null ? {} : { site });
  }

  remove(site: string): Promise<unknown> {
    return this.act("remove_site", { site });
  }

  lock(locked: boolean): Promise<unknown> {
    return this.act("lock_conference", { locked });
  }

  record(on: boolean): Promise<unknown> {
    return this.act("record_conference", { on });
  }

  /** Name a co-moderator (the chair only); their console may then moderate too. */
  async nameModerator(user: string): Promise<void> {
    await this.act("name_moderator", { user });
    const open = this.open;
    if (open && !open.moderators.includes(user)) open.moderators = [...open.moderators, user];
  }

  /** Ring a signed-in user into the conference (invite_to_conference). */
  invite(user: string): Promise<unknown> {
    return this.act("invite_to_conference", { user });
  }

  /** Withdraw a user's invitation not answered by joining (withdraw_invitation). */
  withdraw(user: string): Promise<unknown> {
    return this.act("withdraw_invitation", { user });
  }

  /** Take a co-moderator's part back (the chair only): they stay, as a site. */
  async removeModerator(user: string): Promise<void> {
    await this.act("remove_moderator", { user });
    const open = this.open;
    if (open) open.moderators = open.moderators.filter((m) => m !== user);
  }

  async end(): Promise<void> {
    await this.act("end_conference", {});
  }

  // ---- witnesses (HTTP) -------------------------------------------------------------------

  async loadWitnesses(): Promise<void> {
    const open = this.open;
    if (!open) return;
    const body = (await this.witnessApi("GET", open.id)) as { witnesses: WitnessInfo[] };
    if (this.open?.id === open.id) this.witnesses = body.witnesses;
  }

  async inviteWitness(name: string, label: string, expiresInS: number): Promise<void> {
    const open = this.open;
    if (!open) return;
    const issued = (await this.witnessApi("POST", open.id, "", { name, label, expires_in_s: expiresInS })) as IssuedWitness & {
      token?: string;
    };
    // The token is in the link only; the link is shown once, with its QR code.
    delete issued.token;
    this.issued = { ...issued, link: new URL(issued.link, location.origin).href };
    await this.loadWitnesses();
  }

  async revokeWitness(witnessId: string): Promise<void> {
    const open = this.open;
    if (!open) return;
    await this.witnessApi("DELETE", open.id, `/${encodeURIComponent(witnessId)}`);
    if (this.issued?.witness_id === witnessId) this.issued = null;
    await this.loadWitnesses();
  }

  private async witnessApi(method: string, conferenceId: string, tail = "", body?: unknown): Promise<unknown> {
    const resp = await fetch(`/api/conferences/${encodeURIComponent(conferenceId)}/witnesses${tail}`, {
      method,
      headers: {
        Authorization: `Bearer ${this.hub.bearer()}`,
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (resp.status === 204) return null;
    const answer = (await resp.json().catch(() => ({}))) as { error?: string; field?: string };
    if (!resp.ok) throw new WitnessApiError(resp.status, answer.error ?? "error", answer.field ?? null);
    return answer;
  }

  // Decided on what we show: a moderator's message quotes the revision it saw, so two
  // moderators acting on the same state do not both win (`conflict`).
  private act(type: string, fields: Record<string, unknown>): Promise<unknown> {
    const open = this.open;
    if (!open) return Promise.resolve();
    const revision = type === "end_conference" ? {} : { revision: open.revision };
    return this.hub.request(type, { conference_id: open.id, ...revision, ...fields });
  }

  /** A push of the conference open here; others (a call shared elsewhere) are not ours. */
  pushed(msg: ConferencePush): void {
    const open = this.open;
    if (!open || msg.conference_id !== open.id) return;
    switch (msg.type) {
      case "conference_update": {
        open.revision = msg.revision;
        const c = msg.changes;
        if (c.holders) open.holders = c.holders;
        if (c.spotlight !== undefined) open.spotlight = c.spotlight;
        if (c.locked !== undefined) open.locked = c.locked;
        if (c.recording !== undefined) open.recording = c.recording;
        if (c.feeds) open.feeds = c.feeds;
        break;
      }
      case "sites_changed":
        open.revision = Math.max(open.revision, msg.revision);
        for (const site of msg.sites) open.sites.set(site.user.id, site);
        for (const id of msg.left) open.sites.delete(id);
        for (const inv of msg.invitations ?? []) open.invitations.set(`${inv.kind}:${inv.invitee}`, inv);
        open.deltas += 1;
        if (open.sites.get(this.me() ?? "")?.role === "site") {
          // Our co-moderator part taken back (remove_moderator): the desk is not ours any
          // more; the conference goes on, and the conferences page shows us as a site.
          this.closedBy = "demoted";
          this.open = null;
          this.witnesses = [];
          this.issued = null;
          this.mine = this.mine.filter((c) => c.conference_id !== msg.conference_id);
        }
        break;
      case "conference_ended":
      case "conference_left":
        this.closedBy = msg.type === "conference_ended" ? "ended" : msg.reason;
        this.open = null;
        this.witnesses = [];
        this.issued = null;
        this.mine = this.mine.filter((c) => c.conference_id !== msg.conference_id);
        break;
    }
  }

  /** The sites in the order a moderator acts on them: raised hands by place, then holders,
   * then the rest by when they joined. */
  sites(): SiteInfo[] {
    if (!this.open) return [];
    const rank = (s: SiteInfo): number =>
      s.floor.state === "queued" ? (s.floor.position ?? 0) : s.floor.state === "not_permitted" ? 10_000 : 5_000;
    return [...this.open.sites.values()].sort((a, b) => rank(a) - rank(b) || a.joined_at - b.joined_at);
  }
}
