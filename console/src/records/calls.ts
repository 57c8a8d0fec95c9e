// The calls of a period and a call's audit view: its timeline from the trace (seq and time
// of every fact), who watched its video from when to when, and the evidence taken in it.

import { button, h } from "../dom";
import { t, type TextKey } from "../i18n";
import type { CourtPlace } from "../store";
import { type CallAudit, type CallSummary, type RecordsApi, when } from "./api";
import { courtSelect, facts, field, lastWeek, type Names, reindexing, status, table, textInput } from "./form";
import { named, rt } from "./text";

export class CallsView {
  readonly el: HTMLElement;
  private readonly from = textInput("from", "date");
  private readonly to = textInput("to", "date");
  private readonly court: HTMLSelectElement;
  private readonly state = status();
  private readonly list = h("div", { class: "rec-list" });
  private readonly detail = h("section", { class: "rec-detail", "aria-label": rt("audit.title") });
  current: CallAudit | null = null;

  constructor(
    private readonly api: RecordsApi,
    courts: () => CourtPlace[],
    private readonly names: Names,
    private readonly openEvidence: (id: string) => void,
  ) {
    this.court = courtSelect(courts);
    lastWeek(this.from, this.to);
    const form = h(
      "form",
      { class: "rec-form", role: "search" },
      field(rt("form.from"), this.from),
      field(rt("form.to"), this.to),
      field(rt("form.court"), this.court),
      h("button", { type: "submit" }, rt("form.search")),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.search();
    });
    this.el = h(
      "section",
      { class: "rec-view", "aria-label": rt("calls.title") },
      h("h2", {}, rt("calls.title")),
      form,
      this.state,
      h("div", { class: "rec-split" }, this.list, this.detail),
    );
  }

  async search(): Promise<void> {
    this.state.textContent = rt("form.loading");
    try {
      const found = await this.api.calls({ from: this.from.value, to: this.to.value, court: this.court.value });
      await this.names.load(found.calls.map((c) => c.officer ?? ""));
      this.state.textContent = found.total ? rt("page.range", { a: 1, b: found.calls.length, n: found.total }) : rt("page.none");
      this.list.replaceChildren(
        table(
          [rt("calls.col.time"), rt("calls.col.direction"), rt("calls.col.officer"), rt("ev.col.case"), rt("calls.col.result")],
          found.calls.map((c) => [
            button(when(c.created_at), () => this.open(c.call_id), "link"),
            direction(c),
            this.names.user(c.officer ?? ""),
            c.case_number ?? "",
            result(c),
          ]),
        ),
      );
    } catch (err) {
      this.state.textContent = rt("form.failed", { reason: (err as Error).message });
    }
  }

  async open(callId: string): Promise<void> {
    try {
      const audit = await this.api.callAudit(callId);
      await this.names.load([audit.call.officer ?? "", ...audit.watched.map((w) => w.user), ...audit.timeline.flatMap((r) => people(r.data))]);
      this.current = audit;
      this.show(audit);
    } catch (err) {
      this.state.textContent = rt("form.failed", { reason: (err as Error).message });
    }
  }

  private show(audit: CallAudit): void {
    const c = audit.call;
    const watched = audit.watched.length
      ? table(
          [rt("col.who"), rt("audit.role"), rt("audit.since"), rt("audit.until")],
          audit.watched.map((w) => [
            this.names.user(w.user),
            roleName(w.role) + (w.covert ? ` · ${rt("audit.covert")}` : ""),
            `${when(w.since)} (#${w.since_seq})`,
            w.until === null ? rt("audit.still") : `${when(w.until)} (#${w.until_seq})`,
          ]),
          "rec-watched",
        )
      : h("p", {}, rt("audit.none"));
    const evidence = audit.evidence.length
      ? h(
          "ul",
          {},
          ...audit.evidence.map((e) =>
            h(
              "li",
              {},
              button(`${named("media", e.media ?? "")} ${e.evidence_id ?? ""}`, () => e.evidence_id && this.openEvidence(e.evidence_id), "link"),
              " ",
              h("code", {}, (e.sha256 ?? "").slice(0, 12)),
            ),
          ),
        )
      : h("p", {}, rt("audit.none"));
    this.detail.replaceChildren(
      h("h3", {}, rt("audit.title")),
      ...reindexing(audit.reindex_remaining),
      facts([
        [rt("audit.call_id"), h("code", {}, c.call_id)],
        [rt("calls.col.direction"), direction(c)],
        [rt("calls.col.officer"), this.names.user(c.officer ?? "")],
        [rt("ev.col.court"), this.names.court(c.court ?? "")],
        [rt("ev.col.case"), c.case_number ?? ""],
        [rt("calls.col.time"), when(c.created_at)],
        [rt("calls.col.result"), result(c)],
      ]),
      h("h4", {}, rt("audit.watched")),
      watched,
      h("h4", {}, rt("audit.evidence")),
      evidence,
      h("h4", {}, rt("audit.timeline")),
      table(
        [rt("col.seq"), rt("col.at"), rt("col.event"), rt("col.who")],
        audit.timeline.map((r) => [`#${r.seq}`, when(r.at), named("event", r.kind), who(r.data, this.names)]),
        "rec-timeline",
      ),
    );
  }
}

function direction(c: CallSummary): string {
  if (c.direction === "officer_to_center") return rt("calls.officer_to_center");
  if (c.direction === "center_to_officer") return rt("calls.center_to_officer");
  return c.direction ?? "";
}

function result(c: CallSummary): string {
  if (c.ended_at === null) return rt("calls.ongoing");
  return c.answered ? rt("calls.answered") : `${rt("calls.unanswered")} (${c.end_reason ?? ""})`;
}

/** The user ids a record names (who the timeline's 人员 column shows). */
function people(data: Record<string, unknown>): string[] {
  const ids = ["user", "by", "to", "requested_by", "caller"].map((k) => data[k]).filter((v): v is string => typeof v === "string");
  const users = data.users;
  return Array.isArray(users) ? [...ids, ...users.map(String)] : ids;
}

function who(data: Record<string, unknown>, names: Names): string {
  for (const key of ["user", "by", "to", "requested_by", "caller"]) {
    const v = data[key];
    if (typeof v === "string") return key === "to" ? `→ ${names.user(v)}` : names.user(v);
  }
  const users = data.users;
  return Array.isArray(users) ? users.map((u) => names.user(String(u))).join(", ") : "";
}

/** A role in words (the console's table has them); a role it does not know, as sent. */
function roleName(role: string): string {
  const known = ["operator", "supervisor", "admin", "officer", "auditor", "witness"];
  return known.includes(role) ? t(`role.${role}` as TextKey) : role;
}
