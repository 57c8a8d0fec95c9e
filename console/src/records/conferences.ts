// The conferences' records (会商记录): the conferences of a period with the statistics'
// figures for it, and one conference's audit view: who hosted and moderated, the invitations,
// and its whole timeline from the trace (joins, leaves with reasons, the floor, mute all,
// lock, recording, moderators), each record with its seq and time.

import { button, h } from "../dom";
import type { CourtPlace } from "../store";
import { type ConferenceAudit, type ConferenceSummary, type RecordsApi, when } from "./api";
import { courtSelect, facts, field, lastWeek, type Names, reindexing, status, table, textInput } from "./form";
import { named, rt } from "./text";

const PAGE = 20;

export class ConferencesView {
  readonly el: HTMLElement;
  private readonly from = textInput("from", "date");
  private readonly to = textInput("to", "date");
  private readonly text = textInput("text");
  private readonly court: HTMLSelectElement;
  private readonly state = status();
  private readonly figures = h("p", { class: "rec-figures" });
  private readonly list = h("div", { class: "rec-list" });
  private readonly pager = h("div", { class: "rec-pager" });
  private readonly detail = h("section", { class: "rec-detail", "aria-label": rt("conf.audit") });
  current: ConferenceAudit | null = null;
  listed = false;

  constructor(
    private readonly api: RecordsApi,
    courts: () => CourtPlace[],
    private readonly names: Names,
  ) {
    this.court = courtSelect(courts);
    lastWeek(this.from, this.to);
    const form = h(
      "form",
      { class: "rec-form", role: "search" },
      field(rt("form.from"), this.from),
      field(rt("form.to"), this.to),
      field(rt("form.court"), this.court),
      field(rt("conf.text"), this.text),
      h("button", { type: "submit" }, rt("form.search")),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.search(0);
    });
    this.el = h(
      "section",
      { class: "rec-view", "aria-label": rt("conf.title") },
      h("h2", {}, rt("conf.title")),
      form,
      this.state,
      this.figures,
      h("div", { class: "rec-split" }, h("div", {}, this.list, this.pager), this.detail),
    );
  }

  async search(offset = 0): Promise<void> {
    this.state.textContent = rt("form.loading");
    try {
      const found = await this.api.conferences({
        from: this.from.value,
        to: this.to.value,
        court: this.court.value,
        text: this.text.value,
        limit: String(PAGE),
        offset: String(offset),
      });
      this.listed = true;
      await this.names.load(found.conferences.flatMap((c) => (c.host ? [c.host] : [])));
      const shown = found.conferences.length;
      this.state.textContent = found.total ? rt("page.range", { a: offset + 1, b: offset + shown, n: found.total }) : rt("page.none");
      this.figures.textContent = rt("conf.figures", { c: found.figures.conferences, a: found.figures.enforcement_actions });
      this.list.replaceChildren(
        table(
          [rt("conf.col.id"), rt("conf.col.title"), rt("ev.col.court"), rt("conf.col.started"), rt("conf.col.ended"), rt("conf.col.host"), rt("conf.col.sites"), rt("conf.col.grants"), rt("conf.col.recording")],
          found.conferences.map((c) => [
            button(c.conference_id, () => this.open(c.conference_id), "link"),
            c.title ?? "",
            this.names.court(c.court ?? ""),
            when(c.started_at),
            ended(c),
            this.names.user(c.host ?? ""),
            String(c.sites),
            String(c.floor_grants),
            c.recording ? rt("conf.yes") : rt("conf.no"),
          ]),
          "rec-conferences",
        ),
      );
      const prev = button(rt("page.prev"), () => this.search(Math.max(0, offset - PAGE)), "secondary");
      const next = button(rt("page.next"), () => this.search(offset + PAGE), "secondary");
      prev.disabled = offset === 0;
      next.disabled = offset + shown >= found.total;
      this.pager.replaceChildren(prev, next);
    } catch (err) {
      this.state.textContent = rt("form.failed", { reason: (err as Error).message });
    }
  }

  async open(conferenceId: string): Promise<void> {
    try {
      const audit = await this.api.conferenceAudit(conferenceId);
      await this.names.load([...audit.conference.moderators, ...audit.timeline.flatMap((r) => people(r.data))]);
      this.current = audit;
      this.show(audit);
    } catch (err) {
      this.state.textContent = rt("form.failed", { reason: (err as Error).message });
    }
  }

  private show(audit: ConferenceAudit): void {
    const c = audit.conference;
    const created = audit.timeline.find((r) => r.kind === "conference_created");
    const invited = [
      ...strings(created?.data.invited_courts).map((code) => this.names.court(code)),
      ...strings(created?.data.invited_users).map((id) => this.names.user(id)),
    ].join("、");
    this.detail.replaceChildren(
      h("h3", {}, rt("conf.audit")),
      ...reindexing(audit.reindex_remaining),
      facts([
        [rt("conf.col.id"), h("code", {}, c.conference_id)],
        [rt("conf.col.title"), c.title ?? ""],
        [rt("conf.col.kind"), named("kind", c.kind ?? "meeting")],
        [rt("ev.col.court"), this.names.court(c.court ?? "")],
        [rt("conf.col.started"), when(c.started_at)],
        [rt("conf.col.ended"), ended(c)],
        [rt("conf.col.reason"), c.end_reason ? named("reason", c.end_reason) : ""],
        [rt("conf.col.host"), c.moderators.map((m) => this.names.user(m)).join("、")],
        [rt("conf.col.invited"), invited],
        [rt("conf.col.sites"), String(c.sites)],
        [rt("conf.col.grants"), String(c.floor_grants)],
        [rt("conf.col.recording"), c.recording ? rt("conf.yes") : rt("conf.no")],
      ]),
      h("h4", {}, rt("audit.timeline")),
      ...(audit.truncated ? [h("p", { role: "note" }, rt("conf.truncated"))] : []),
      table(
        [rt("col.seq"), rt("col.at"), rt("col.event"), rt("col.who"), rt("col.detail")],
        audit.timeline.map((r) => [`#${r.seq}`, when(r.at), named("event", r.kind), who(r.data, this.names), detail(r.data)]),
        "rec-timeline",
      ),
    );
  }
}

function ended(c: ConferenceSummary): string {
  return c.ended_at === null ? (c.running ? rt("conf.running") : "") : when(c.ended_at);
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
}

/** The user ids a record names (who the timeline's 人员 column shows). */
function people(data: Record<string, unknown>): string[] {
  return ["user", "by", "host", "chair"].map((k) => data[k]).filter((v): v is string => typeof v === "string");
}

function who(data: Record<string, unknown>, names: Names): string {
  const user = data.user ?? data.chair ?? data.host;
  const by = data.by;
  const parts: string[] = [];
  if (typeof user === "string") parts.push(names.user(user));
  if (typeof by === "string" && by !== user) parts.push(`← ${names.user(by)}`);
  return parts.join(" ");
}

function detail(data: Record<string, unknown>): string {
  if (typeof data.reason === "string") return named("reason", data.reason);
  if (typeof data.locked === "boolean") return rt(data.locked ? "reason.locked" : "reason.unlocked");
  if (typeof data.title === "string") return data.title;
  return "";
}
