// Small form and table pieces the records views share: labelled fields (so a person, and the
// tests, find them by their label), the court choice of the caller's scope, tables of text.

import { h } from "../dom";
import { day } from "./api";
import type { CourtPlace } from "../store";
import { rt } from "./text";

export function field(label: string, input: HTMLInputElement | HTMLSelectElement): HTMLLabelElement {
  // Named by the label's words alone (a select's label would also take in its options).
  input.setAttribute("aria-label", label);
  return h("label", { class: "rec-field" }, h("span", {}, label), input);
}

// The period a records search starts with: the last seven days, through tomorrow (so that
// today's records are in whatever the time zone).
export function lastWeek(from: HTMLInputElement, to: HTMLInputElement): void {
  const now = Date.now();
  from.value = day(new Date(now - 7 * 86400_000));
  to.value = day(new Date(now + 86400_000));
}

export function textInput(name: string, type = "text"): HTMLInputElement {
  return h("input", { type, name, maxlength: "64", autocomplete: "off" });
}

/** A court select: "all of my scope" and every court the console's settings list. */
export function courtSelect(courts: () => CourtPlace[]): HTMLSelectElement {
  const select = h("select", { name: "court" });
  const fill = (): void => {
    const chosen = select.value;
    select.replaceChildren(
      h("option", { value: "" }, rt("form.court_any")),
      ...courts().map((c) => h("option", { value: c.code }, `${c.name}（${c.code}）`)),
    );
    select.value = chosen;
  };
  select.addEventListener("focus", fill);
  fill();
  (select as HTMLSelectElement & { refill?: () => void }).refill = fill;
  return select;
}

export function refill(select: HTMLSelectElement): void {
  (select as HTMLSelectElement & { refill?: () => void }).refill?.();
}

export function table(headers: string[], rows: (Node | string)[][], cls = ""): HTMLTableElement {
  return h(
    "table",
    { class: `rec-table ${cls}`.trim() },
    h("thead", {}, h("tr", {}, ...headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, ...rows.map((r) => h("tr", {}, ...r.map((c) => h("td", {}, c))))),
  );
}

/** The note an audit view shows while the server still indexes an old trace's records: the
 *  view may miss older ones until then (docs/trace.md). Nothing once the index is whole. */
export function reindexing(remaining: number | undefined): HTMLParagraphElement[] {
  return remaining ? [h("p", { role: "note", class: "rec-reindexing" }, rt("audit.reindexing", { n: remaining }))] : [];
}

/** A definition list whose values carry their term as aria-label, so they can be read by it. */
export function facts(pairs: [string, Node | string][]): HTMLDListElement {
  const out = h("dl", { class: "rec-facts" });
  for (const [term, value] of pairs) out.append(h("dt", {}, term), h("dd", { "aria-label": term }, value));
  return out;
}

export function status(): HTMLElement {
  return h("p", { class: "rec-status", role: "status" });
}

/** Names for the ids records keep: a court's name from the settings, a person's from the
 * server (GET /api/users/names, asked with `load` before a view shows the ids), the roster
 * or the signed-in user; an id nobody here can name stays an id. */
export interface Names {
  user(id: string): string;
  court(code: string): string;
  /** Ask the server for the names of `ids` not known yet. */
  load(ids: Iterable<string>): Promise<void>;
}

/** Text whose `quoted` parts are identifiers (record kinds, fields): those as <code>, the
 * rest as words. */
export function withCode(text: string): (Node | string)[] {
  return text.split("`").map((part, i) => (i % 2 === 1 ? h("code", {}, part) : part));
}
