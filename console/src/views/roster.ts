// The roster: every signed-in officer of our scope with name, court, status and the age of
// the last position; a search box and a status filter. A row selects the officer (the map
// centres on them and offers call and video). A position older than `[console]
// position_stale_s` is stale as on the map: its age is grey with 旧位, judged again on every
// tick (a position ages without any message).

import { button, h, keyed, ticking } from "../dom";
import { currentLang, duration, t, type TextKey } from "../i18n";
import type { RosterEntry } from "../protocol";
import type { Store } from "../store";
import { isStale } from "./map";

type Filter = "all" | "online" | "away" | "in_call" | "emergency";
const FILTERS: Filter[] = ["all", "online", "away", "in_call", "emergency"];

export function statusKey(entry: RosterEntry): TextKey {
  if (entry.emergency) return "status.emergency";
  if (entry.status === "away") return "status.away";
  if (entry.call_id) return "status.in_call";
  return entry.status === "offline" ? "status.offline" : "status.online";
}

export function positionAge(store: Store, entry: RosterEntry): string {
  if (!entry.position) return t("position.none");
  // device_time is the phone's clock; ours is corrected to the server's.
  return t("position.age", { t: duration((store.serverNow() - entry.position.device_time) / 1000) });
}

function positionStale(store: Store, entry: RosterEntry): boolean {
  return isStale(entry, store.serverNow(), store.settings.position_stale_s * 1000);
}

function matches(entry: RosterEntry, text: string, filter: Filter): boolean {
  const hay = `${entry.officer.name} ${entry.officer.id} ${entry.officer.court}`.toLowerCase();
  if (text && !hay.includes(text)) return false;
  switch (filter) {
    case "all":
      return true;
    case "online":
      return entry.status === "online";
    case "away":
      return entry.status === "away";
    case "in_call":
      return entry.call_id !== null;
    case "emergency":
      return entry.emergency;
  }
}

export class RosterView {
  readonly el: HTMLElement;
  private readonly search: HTMLInputElement;
  private readonly filter: HTMLSelectElement;
  private readonly body: HTMLTableSectionElement;
  private readonly heading: HTMLElement;
  private readonly head: HTMLTableSectionElement;
  private readonly searchLabel: HTMLLabelElement;
  private readonly filterLabel: HTMLLabelElement;

  constructor(private readonly store: Store) {
    this.search = h("input", { type: "search", id: "roster-search" });
    this.search.addEventListener("input", () => this.render());
    this.filter = h("select", { id: "roster-filter" });
    this.filter.addEventListener("change", () => this.render());
    this.searchLabel = h("label", { for: "roster-search", class: "visually-hidden" });
    this.filterLabel = h("label", { for: "roster-filter", class: "visually-hidden" });
    this.heading = h("h2");
    this.head = h("thead");
    this.body = h("tbody");
    this.el = h(
      "section",
      { class: "panel roster", "aria-labelledby": "roster-heading" },
      this.heading,
      h("div", { class: "roster-tools" }, this.searchLabel, this.search, this.filterLabel, this.filter),
      h("div", { class: "table-scroll" }, h("table", {}, this.head, this.body)),
    );
    this.heading.id = "roster-heading";
  }

  render(): void {
    const store = this.store;
    this.heading.textContent = `${t("roster.title")} · ${t("roster.count", { n: store.roster.size })}`;
    this.search.placeholder = t("roster.search");
    this.searchLabel.textContent = t("roster.search");
    this.filterLabel.textContent = t("roster.filter");
    const chosen = (this.filter.value || "all") as Filter;
    // Rebuilt only on a change of language: an open drop-down must survive the clock's redraw.
    keyed(this.filter, currentLang(), () =>
      FILTERS.map((f) => h("option", { value: f, selected: f === chosen }, t(`roster.filter.${f}`))),
    );
    this.filter.value = chosen;
    keyed(this.head, currentLang(), () => [
      h(
        "tr",
        {},
        h("th", { scope: "col" }, t("roster.col.name")),
        h("th", { scope: "col" }, t("roster.col.court")),
        h("th", { scope: "col" }, t("roster.col.status")),
        h("th", { scope: "col" }, t("roster.col.position")),
      ),
    ]);
    const text = this.search.value.trim().toLowerCase();
    const entries = [...store.roster.values()]
      .filter((e) => matches(e, text, chosen))
      .sort((a, b) => Number(b.emergency) - Number(a.emergency) || a.officer.name.localeCompare(b.officer.name));
    const key = JSON.stringify([
      currentLang(),
      store.roster.size,
      store.selected,
      store.settings.courts.length,
      entries.map((e) => [e.officer.id, e.officer.name, e.officer.court, statusKey(e), e.status, !!e.position]),
    ]);
    keyed(this.body, key, () => {
      const rows = entries.map((entry) => this.row(entry));
      if (rows.length === 0) {
        const empty = store.roster.size === 0 ? t("roster.none") : t("roster.empty");
        rows.push(h("tr", {}, h("td", { colspan: "4", class: "empty" }, empty)));
      }
      return rows;
    });
  }

  private row(entry: RosterEntry): HTMLTableRowElement {
    const store = this.store;
    const court = store.settings.courts.find((c) => c.code === entry.officer.court);
    const key = statusKey(entry);
    const cls = [
      "officer-row",
      entry.emergency ? "is-emergency" : "",
      entry.status === "away" ? "is-away" : "",
      store.selected === entry.officer.id ? "is-selected" : "",
    ].join(" ");
    const nameCell = h("td", {}, button(entry.officer.name, () => store.select(entry.officer.id), "link"));
    return h(
      "tr",
      { class: cls, "data-officer": entry.officer.id },
      nameCell,
      h("td", { title: entry.officer.court }, court ? court.name : entry.officer.court),
      h("td", {}, h("span", { class: `badge ${key.replace(".", "-")}` }, t(key))),
      this.ageCell(entry),
    );
  }

  /** The position's age, grey with 旧位 while it is stale. */
  private ageCell(entry: RosterEntry): HTMLTableCellElement {
    const store = this.store;
    const now = (): RosterEntry => store.roster.get(entry.officer.id) ?? entry;
    const stale = (): boolean => positionStale(store, now());
    return h(
      "td",
      { class: "age" },
      ticking("span", { class: "position-age" }, () => positionAge(store, now()), () => (stale() ? "is-stale" : "")),
      ticking("span", { class: "officer-stale" }, () => (stale() ? t("map.stale") : "")),
    );
  }
}

export { FILTERS };
