// The records side of the console (docs/console.md, "Records"): the evidence browser, the
// calls' audit and the statistics, in a panel that takes the place of the live layout while
// open. The live console keeps running underneath: calls still ring and alarms still sound.

import { button, h } from "../dom";
import { currentLang } from "../i18n";
import type { Store } from "../store";
import { RecordsApi, type UserName } from "./api";
import { CallsView } from "./calls";
import { ConferencesView } from "./conferences";
import { EvidenceView } from "./evidence";
import { type Names, refill } from "./form";
import { StatsView } from "./stats";
import { rt } from "./text";

export type RecordsTab = "evidence" | "calls" | "conferences" | "stats";

// Who reads conferences' records (commandcenter/records_api.py CONFERENCE_ROLES).
const CONFERENCE_READERS = new Set(["supervisor", "admin", "auditor"]);

// The names endpoint's bound (commandcenter/names_api.py MAX_IDS).
const NAMES_PER_REQUEST = 100;

export class RecordsPanel {
  readonly el: HTMLElement;
  readonly nav: HTMLElement;
  evidence!: EvidenceView;
  calls!: CallsView;
  conferences!: ConferencesView;
  stats!: StatsView;
  tab: RecordsTab | null = null;
  private readonly body = h("div", { class: "rec-body" });
  private readonly back = button("", () => this.show(null), "secondary");
  private readonly tabs: Record<RecordsTab, HTMLButtonElement>;
  private lang = currentLang();
  private readonly knownNames = new Map<string, UserName>();
  private readonly askedNames = new Set<string>();

  constructor(
    private readonly store: Store,
    private readonly layout: () => HTMLElement | null,
  ) {
    this.tabs = {
      evidence: button("", () => this.toggle("evidence"), "secondary"),
      calls: button("", () => this.toggle("calls"), "secondary"),
      conferences: button("", () => this.toggle("conferences"), "secondary"),
      stats: button("", () => this.toggle("stats"), "secondary"),
    };
    this.tabs.conferences.hidden = true;
    this.nav = h("nav", { class: "rec-nav" }, this.tabs.evidence, this.tabs.calls, this.tabs.conferences, this.tabs.stats);
    this.el = h("div", { class: "records", hidden: true }, h("div", { class: "rec-top" }, this.back), this.body);
    this.build();
  }

  /** After a language switch: the views again, in the new language (what they showed is
   * asked for again when next searched). */
  relabel(): void {
    // Operators do not read conferences' records: the tab shows once the user is known to.
    this.tabs.conferences.hidden = !CONFERENCE_READERS.has(this.store.user?.role ?? "");
    if (currentLang() === this.lang) return;
    this.lang = currentLang();
    this.build();
    const tab = this.tab;
    this.tab = null;
    this.show(tab);
  }

  private build(): void {
    const store = this.store;
    const api = new RecordsApi(() => store.hub.bearer());
    const courts = () => store.settings.courts;
    // Names the server gave, kept for the page's life (a name changes rarely, and a stale
    // one still says who it was); ids it did not name are not asked again.
    const known = this.knownNames;
    const asked = this.askedNames;
    const names: Names = {
      user: (id) => {
        if (!id) return "";
        // "@server" and the like: the server itself (it files recordings and snapshots).
        if (id.startsWith("@")) return rt("who.server", { id });
        const found = known.get(id);
        if (found) return rt(found.source === "sign_in" ? "who.signed_in" : "who.account", { name: found.name, id });
        const name = store.roster.get(id)?.officer.name ?? (store.user?.id === id ? store.user.name : undefined);
        if (name) return rt("who.account", { name, id });
        // Asked and not named: not an account with a name on record, or out of our scope.
        return asked.has(id) ? rt("who.unnamed", { id }) : id;
      },
      court: (code) => store.settings.courts.find((c) => c.code === code)?.name ?? code,
      load: async (ids) => {
        const wanted = [...new Set(ids)].filter((id) => id && !asked.has(id));
        for (let i = 0; i < wanted.length; i += NAMES_PER_REQUEST) {
          const batch = wanted.slice(i, i + NAMES_PER_REQUEST);
          try {
            const found = await api.names(batch);
            for (const id of batch) asked.add(id);
            for (const [id, who] of Object.entries(found)) known.set(id, who);
          } catch {
            // Without names the view shows ids, as before: not worth failing the view for.
            return;
          }
        }
      },
    };
    const tiles = () => (store.settings.tile_url ? { url: store.settings.tile_url, attribution: store.settings.tile_attribution } : null);
    this.evidence = new EvidenceView(
      api,
      courts,
      names,
      (callId) => {
        this.show("calls");
        void this.calls.open(callId);
      },
      tiles,
    );
    this.calls = new CallsView(api, courts, names, (id) => {
      this.show("evidence");
      void this.evidence.open(id);
    });
    this.conferences = new ConferencesView(api, courts, names);
    this.stats = new StatsView(api, courts);
    this.tabs.evidence.textContent = rt("nav.evidence");
    this.tabs.calls.textContent = rt("nav.calls");
    this.tabs.conferences.textContent = rt("nav.conferences");
    this.tabs.stats.textContent = rt("nav.stats");
    this.back.textContent = rt("nav.back");
  }

  private toggle(tab: RecordsTab): void {
    this.show(this.tab === tab ? null : tab);
  }

  show(tab: RecordsTab | null): void {
    const first = tab !== null && this.tab !== tab;
    this.tab = tab;
    this.el.hidden = tab === null;
    const layout = this.layout();
    if (layout) layout.hidden = tab !== null;
    for (const [name, b] of Object.entries(this.tabs)) b.setAttribute("aria-pressed", String(name === tab));
    if (tab === null) return;
    const view = { evidence: this.evidence, calls: this.calls, conferences: this.conferences, stats: this.stats }[tab];
    this.body.replaceChildren(view.el);
    for (const select of view.el.querySelectorAll("select")) refill(select);
    if (first && tab === "stats" && !this.stats.current) void this.stats.load();
    if (first && tab === "calls" && !this.calls.current) void this.calls.search();
    if (first && tab === "conferences" && !this.conferences.listed) void this.conferences.search();
  }
}
