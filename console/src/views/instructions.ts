// Instructions to officers (docs/protocol.md, "Instructions"): a composer on the officer
// card (to that officer), a court-wide composer (全院指令, to every officer of a court of our
// scope, also those who sign in later), and the instructions still valid with their
// receipts: per recipient sent / delivered / read with times, and counts for a court.
// The composers are built once and moved, never rebuilt, so a redraw keeps what is typed.

import { button, h, keyed } from "../dom";
import { currentLang, t, type TextKey } from "../i18n";
import { counts, type InstructionTarget } from "../instructions";
import type { InstructionInfo, RecipientInfo } from "../protocol";
import type { Store } from "../store";

// The server's default `instructions.max_chars`; a longer text is refused there anyway.
const MAX_CHARS = 500;

function clock(ms: number | null): string {
  if (ms === null) return "";
  return new Date(ms).toLocaleTimeString(currentLang() === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}

class Composer {
  readonly el: HTMLFormElement;
  readonly text = h("textarea", { maxlength: String(MAX_CHARS), rows: "2" });
  readonly send: HTMLButtonElement;
  private readonly label = h("span", {});

  constructor(
    private readonly store: Store,
    private readonly target: () => InstructionTarget | null,
    private readonly sendKey: TextKey,
    cls: string,
    extra: HTMLElement | null = null,
  ) {
    this.send = button("", () => this.submit(), "accept");
    this.el = h("form", { class: `instr-compose ${cls}` }, extra, h("label", {}, this.label, this.text), this.send);
    this.el.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.submit();
    });
  }

  render(): void {
    this.label.textContent = t("instr.text");
    this.text.placeholder = t("instr.placeholder");
    this.send.textContent = t(this.sendKey);
    this.send.disabled = this.store.connection !== "connected";
  }

  private async submit(): Promise<void> {
    const target = this.target();
    const text = this.text.value.trim();
    if (!target || !text || this.send.disabled) return;
    this.send.disabled = true;
    try {
      if (await this.store.sendInstruction(target, text)) this.text.value = "";
    } finally {
      this.send.disabled = false;
    }
  }
}

export class InstructionsView {
  readonly el: HTMLElement;
  /** Placed in the officer card: an instruction to the officer shown there. */
  readonly officerComposer: HTMLFormElement;
  private readonly heading = h("h2", { id: "instructions-heading" });
  private readonly courtHeading = h("h3", {});
  private readonly court = h("select", {});
  private readonly courtLabel = h("span", {});
  private readonly forOfficer: Composer;
  private readonly forCourt: Composer;
  private readonly list = h("ul", { class: "instr-list" });
  private readonly older: HTMLButtonElement;

  constructor(private readonly store: Store) {
    this.forOfficer = new Composer(
      store,
      () => (store.selected ? { officer: store.selected } : null),
      "instr.send",
      "instr-officer",
    );
    this.officerComposer = this.forOfficer.el;
    this.older = button("", () => this.loadOlder(), "secondary small instr-older");
    this.forCourt = new Composer(
      store,
      () => (this.court.value ? { court: this.court.value } : null),
      "instr.send_court",
      "instr-court",
      h("label", {}, this.courtLabel, this.court),
    );
    this.el = h(
      "section",
      { class: "panel instructions", "aria-labelledby": "instructions-heading" },
      this.heading,
      h("div", { class: "instr-court-box" }, this.courtHeading, this.forCourt.el),
      this.list,
      this.older,
    );
  }

  private async loadOlder(): Promise<void> {
    this.older.disabled = true;
    try {
      await this.store.olderInstructions();
    } finally {
      this.older.disabled = false;
    }
  }

  render(): void {
    const store = this.store;
    this.heading.textContent = t("instr.title");
    this.courtHeading.textContent = t("instr.court_wide");
    this.courtLabel.textContent = t("instr.court");
    this.forOfficer.render();
    this.forCourt.render();
    const courts = store.settings.courts;
    keyed(this.court, JSON.stringify(courts.map((c) => c.code)), () => {
      const mine = store.user?.court;
      return courts.map((c) => h("option", { value: c.code, selected: c.code === mine }, c.name));
    });
    const all = store.instructions.all();
    const key = JSON.stringify([
      currentLang(),
      courts.length,
      all.map((i) => [i.instruction_id, i.recipients.map((r) => [r.officer.id, r.state])]),
    ]);
    keyed(this.list, key, () =>
      all.length ? all.map((i) => this.item(i)) : [h("li", { class: "instr-none" }, t("instr.none"))],
    );
    this.older.textContent = t("instr.older");
    this.older.hidden = !store.instructions.more;
  }

  private courtName(code: string): string {
    return this.store.settings.courts.find((c) => c.code === code)?.name ?? code;
  }

  private item(info: InstructionInfo): HTMLElement {
    const target =
      info.officer === null
        ? t("instr.to_court", { court: this.courtName(info.court) })
        : t("instr.to_officer", {
            name: info.recipients.find((r) => r.officer.id === info.officer)?.officer.name ?? info.officer,
          });
    const c = counts(info);
    const done = c.n > 0 && c.read === c.n ? "all-read" : c.delivered === c.n && c.n > 0 ? "all-delivered" : "pending";
    return h(
      "li",
      { class: `instr-item ${done}`, "data-instruction-id": info.instruction_id },
      h("p", { class: "instr-target" }, target),
      h("p", { class: "instr-text" }, info.text),
      h("p", { class: "instr-meta" }, t("instr.by", { name: info.by.name, time: clock(info.sent_at) })),
      h("p", { class: "instr-summary" }, t("instr.summary", c)),
      info.recipients.length
        ? h("ul", { class: "instr-recipients" }, ...info.recipients.map((r) => this.recipient(r)))
        : h("p", { class: "instr-meta" }, t("instr.no_recipients")),
    );
  }

  private recipient(r: RecipientInfo): HTMLElement {
    const at = r.state === "read" ? r.read_at : r.state === "delivered" ? r.delivered_at : r.sent_at;
    return h(
      "li",
      { class: `instr-recipient state-${r.state}`, "data-officer": r.officer.id },
      h("span", { class: "instr-name" }, r.officer.name),
      h("span", { class: "instr-state" }, t("instr.state_at", { state: t(`instr.${r.state}`), time: clock(at) })),
    );
  }
}
