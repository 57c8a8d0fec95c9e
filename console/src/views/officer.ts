// The selected officer's card over the map: who, where, and what the console can do with
// them: call (call_officer; the officer's page answers with camera and microphone), pull
// video (a watch, shown large on the video wall; a supervisor watches a call in progress
// with join_call); today's track on the map (the positions the server recorded).

import { button, h, keyed, ticking } from "../dom";
import { currentLang, t } from "../i18n";
import type { Store } from "../store";
import { positionAge, statusKey } from "./roster";

export class OfficerCard {
  readonly el = h("aside", { class: "officer-card", "aria-labelledby": "officer-heading", hidden: true });

  /** `extras` are built elsewhere and kept across redraws (the instruction composer). */
  constructor(
    private readonly store: Store,
    private readonly extras: HTMLElement[] = [],
    private readonly pullVideo: (officerId: string) => void = () => {},
  ) {}

  render(): void {
    const store = this.store;
    const entry = store.selected ? store.roster.get(store.selected) : undefined;
    this.el.hidden = !entry;
    if (!entry) return;
    const court = store.settings.courts.find((c) => c.code === entry.officer.court)?.name ?? entry.officer.court;
    const free = store.myStatus() === "free";
    const actions: HTMLButtonElement[] = [];
    if (!entry.call_id && entry.status === "online") {
      const call = button(t("officer.call"), () => store.callOfficer(entry.officer), "accept");
      call.disabled = !free;
      actions.push(call);
      // A watch, not a call: receive-only, so it needs no free operator and rings nothing.
      actions.push(button(t("officer.video"), () => this.pullVideo(entry.officer.id), "secondary"));
    } else if (entry.call_id && store.isMonitor() && store.call?.call_id !== entry.call_id) {
      // As policy allows (calls.supervisor_join): announced and heard, or unseen and unheard.
      const policy = store.settings.supervisor_join;
      if (policy !== "silent") {
        actions.push(button(t("officer.watch"), () => store.joinCall(entry.call_id ?? ""), "secondary"));
      }
      if (policy !== "visible") {
        actions.push(button(t("officer.watch_silent"), () => store.joinCall(entry.call_id ?? "", true), "secondary"));
      }
    }
    const shown = store.track?.officerId === entry.officer.id;
    actions.push(
      shown
        ? button(t("officer.trackHide"), () => store.hideTrack(), "secondary")
        : button(t("officer.track"), () => void store.showTrack(entry.officer.id), "secondary"),
    );
    actions.push(button(t("officer.close"), () => store.select(null), "secondary"));
    const id = entry.officer.id;
    const policy = store.settings.supervisor_join;
    const key = JSON.stringify([currentLang(), id, entry.call_id, entry.status, statusKey(entry), free, court, policy, shown]);
    keyed(this.el, key, () => [
      h("h3", { id: "officer-heading" }, entry.officer.name),
      ticking("p", {}, () => {
        const now = store.roster.get(id) ?? entry;
        return t("officer.details", { court, status: t(statusKey(now)), age: positionAge(store, now) });
      }),
      h("div", { class: "officer-actions" }, ...actions),
      ...this.extras,
    ]);
  }
}
