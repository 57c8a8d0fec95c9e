/*
 * The moderator's desk inside the console (docs/console.md, "Moderate a conference"): the
 * conferences this user moderates, hosting one, and, for the one opened, its sites with their
 * hands and floor, kept current by `sites_changed` and `conference_update`, and the
 * moderator's floor actions. Over the console's own connection (one per user: a second tab
 * on the conferences page would sign the console out). No media here: the console moderates
 * the floor; the conferences page shows the video. The store owns one; a view reads it.
 */

import type { ConferencePush, Hub, SiteInfo, UserInfo } from "./protocol";

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
  /** Joined sites by user id, in the order they joined. */
  sites: Map<string, SiteInfo>;
}

export class ModeratorDesk {
  /** Running conferences this user moderates (list_conferences). */
  mine: ConferenceSummary[] = [];
  open: OpenConference | null = null;
  /** Why the last one we had open is closed ("ended", "removed", ...), for the notice. */
  closedBy: string | null = null;

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
    const state = reply.state as { revision: number; holders: UserInfo[] };
    const sites = reply.sites as SiteInfo[];
    this.closedBy = null;
    this.open = {
      id,
      title: conference.title,
      revision: state.revision,
      holders: state.holders,
      sites: new Map(sites.map((s) => [s.user.id, s])),
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

  async end(): Promise<void> {
    await this.act("end_conference", {});
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
      case "conference_update":
        open.revision = msg.revision;
        if (msg.changes.holders) open.holders = msg.changes.holders;
        break;
      case "sites_changed":
        open.revision = Math.max(open.revision, msg.revision);
        for (const site of msg.sites) open.sites.set(site.user.id, site);
        for (const id of msg.left) open.sites.delete(id);
        break;
      case "conference_ended":
      case "conference_left":
        this.closedBy = msg.type === "conference_ended" ? "ended" : msg.reason;
        this.open = null;
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
