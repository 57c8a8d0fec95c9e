// Emergency first: while an officer's emergency is unacknowledged, it takes over the screen
// (an alert dialog over everything), the alarm sounds and the map jumps to the officer. The
// operator answers the emergency call, acknowledges (the alarm stops; a red strip stays while
// the flag is set, saying who took it on) or clears the flag (clear_emergency). The officer's
// note (emergency_noted) shows in the alarm and the strip.

import { button, h, keyed, ticking } from "../dom";
import { currentLang, duration, t } from "../i18n";
import type { RosterEntry } from "../protocol";
import type { Store } from "../store";

export class EmergencyView {
  readonly overlay: HTMLElement;
  readonly strip: HTMLElement;
  private shown: string | null = null;

  constructor(
    private readonly store: Store,
    private readonly jumpTo: (officerId: string) => void,
  ) {
    this.overlay = h("div", { class: "sos-overlay", role: "alertdialog", "aria-modal": "true", "aria-labelledby": "sos-heading", hidden: true });
    this.strip = h("div", { class: "sos-strip", role: "status", hidden: true });
  }

  render(): void {
    const store = this.store;
    const open = store.unacknowledged();
    const first = open[0] ?? null;
    this.overlay.hidden = !first;
    document.body.classList.toggle("sos-active", !!first);
    if (first) {
      if (this.shown !== first.officer.id) {
        this.shown = first.officer.id;
        // On a phone the page scrolls: bring the map (near the top) back into view.
        window.scrollTo(0, 0);
        this.jumpTo(first.officer.id);
      }
      const ringing = [...store.ringing.values()].find((c) => c.officer.id === first.officer.id);
      const key = JSON.stringify([currentLang(), first.officer.id, open.length, ringing?.call_id, !!first.position, first.emergency_note]);
      keyed(this.overlay, key, () => [this.dialog(first, open.length)]);
    } else {
      this.shown = null;
    }
    const acked = store.emergencies().filter((e) => store.acknowledged.has(e.officer.id));
    this.strip.hidden = acked.length === 0;
    const strip = acked.map((e) => [e.officer.id, e.emergency_taken_by?.name, e.emergency_note]);
    keyed(this.strip, JSON.stringify([currentLang(), strip]), () =>
      acked.map((e) =>
        h(
          "span",
          { class: "sos-strip-item" },
          // Who took it on, as the server says (after a reload too); our own unsent
          // acknowledgement until its echo arrives.
          e.emergency_taken_by
            ? t("sos.taken_by", { by: e.emergency_taken_by.name, name: e.officer.name })
            : t("sos.acked", { name: e.officer.name }),
          e.emergency_note ? h("span", { class: "sos-note" }, t("sos.note", { note: e.emergency_note })) : "",
          button(t("sos.clear"), () => store.clearEmergency(e.officer.id), "danger small"),
          button(t("sos.false_alarm"), () => this.falseAlarm(e.officer.id), "small"),
        ),
      ),
    );
  }

  // A false alarm needs a reason (the trace keeps it); no reason given, nothing is sent.
  private falseAlarm(officerId: string): void {
    const reason = window.prompt(t("sos.false_alarm_reason"))?.trim();
    if (reason) void this.store.falseAlarm(officerId, reason);
  }

  private dialog(entry: RosterEntry, count: number): HTMLElement {
    const store = this.store;
    const court = store.settings.courts.find((c) => c.code === entry.officer.court)?.name ?? entry.officer.court;
    const id = entry.officer.id;
    const where = (): string => {
      const pos = store.roster.get(id)?.position;
      return pos
        ? t("sos.position", {
            lat: pos.lat.toFixed(5),
            lon: pos.lon.toFixed(5),
            age: duration((store.serverNow() - pos.device_time) / 1000),
          })
        : t("sos.no_position");
    };
    const ringing = [...store.ringing.values()].find((c) => c.officer.id === entry.officer.id);
    return h(
      "div",
      { class: "sos-panel" },
      h("h2", { id: "sos-heading" }, t("sos.title") + (count > 1 ? ` (${count})` : "")),
      h("p", { class: "sos-who" }, t("sos.officer", { name: entry.officer.name, court })),
      entry.emergency_note ? h("p", { class: "sos-note" }, t("sos.note", { note: entry.emergency_note })) : "",
      ticking("p", { class: "sos-where" }, where),
      h(
        "div",
        { class: "sos-actions" },
        ringing ? button(t("sos.accept"), () => store.accept(ringing.call_id).then(() => store.acknowledge(entry.officer.id)), "accept big") : "",
        button(t("sos.ack"), () => store.acknowledge(entry.officer.id), "secondary big"),
        button(t("sos.clear"), () => store.clearEmergency(entry.officer.id), "danger big"),
        button(t("sos.false_alarm"), () => this.falseAlarm(entry.officer.id), "big"),
      ),
    );
  }
}
