// The moderator's desk (moderation.ts) in the side column: host a conference or open one we
// moderate; then its sites, raised hands first in their order, each with the floor action
// that applies, and mute all, leave and end (confirmed). The floor is all it moderates: the
// video of a conference is on the conferences page.

import { button, h, keyed } from "../dom";
import { currentLang, t } from "../i18n";
import type { SiteInfo } from "../protocol";
import type { Store } from "../store";

export class ModerationView {
  readonly el = h("section", { class: "panel moderation", "aria-labelledby": "moderation-heading" });
  private readonly title = h("input", { type: "text", maxlength: "128", autocomplete: "off" });
  private confirming = false;

  constructor(private readonly store: Store) {}

  render(): void {
    const store = this.store;
    const desk = store.moderation;
    this.el.hidden = !store.isConsoleUser();
    const open = desk.open;
    const key = JSON.stringify([
      currentLang(),
      store.connection,
      this.confirming,
      open ? [open.id, open.holders.map((u) => u.id), desk.sites().map((s) => [s.user.id, s.status, s.floor])] : null,
      desk.mine.map((c) => c.conference_id),
    ]);
    keyed(this.el, key, () => [h("h2", { id: "moderation-heading" }, t("mod.title")), ...(open ? this.opened() : this.closed())]);
  }

  private closed(): HTMLElement[] {
    const store = this.store;
    const desk = store.moderation;
    this.title.placeholder = t("mod.host_title");
    this.title.setAttribute("aria-label", t("mod.host_title"));
    const host = h(
      "form",
      { class: "mod-host" },
      this.title,
      h("button", { type: "submit", class: "accept" }, t("mod.host")),
    );
    host.addEventListener("submit", (e) => {
      e.preventDefault();
      const title = this.title.value.trim();
      if (title) void store.hostConference(title).then(() => (this.title.value = ""));
    });
    return [
      host,
      h("h3", {}, t("mod.mine")),
      desk.mine.length
        ? h(
            "ul",
            { class: "mod-mine" },
            ...desk.mine.map((c) =>
              h("li", { class: "queue-item" }, h("span", { class: "who" }, c.title), button(t("mod.open"), () => store.openConference(c.conference_id), "accept")),
            ),
          )
        : h("p", { class: "empty" }, t("mod.none")),
      button(t("mod.refresh"), () => store.refreshModeration(), "secondary small"),
    ];
  }

  private opened(): HTMLElement[] {
    const store = this.store;
    const desk = store.moderation;
    const open = desk.open;
    if (!open) return [];
    const others = desk.sites().filter((s) => s.user.id !== store.user?.id);
    const hands = others.filter((s) => s.floor.state === "queued").length;
    const actions = this.confirming
      ? [
          h("p", { class: "mod-question" }, t("mod.confirm_end", { title: open.title })),
          button(t("admin.confirm"), () => {
            this.confirming = false;
            return store.moderate("end");
          }, "danger"),
          button(t("admin.cancel"), () => {
            this.confirming = false;
            store.changed();
          }, "secondary"),
        ]
      : [
          button(t("mod.mute_all"), () => store.moderate("mute_all"), "secondary small"),
          button(t("mod.leave"), () => store.moderate("leave"), "secondary small"),
          button(t("mod.end"), () => {
            this.confirming = true;
            store.changed();
          }, "danger small"),
        ];
    return [
      h("h3", { class: "mod-conference" }, open.title),
      h("p", { class: "mod-count", role: "status" }, t("mod.sites", { n: others.length, hands })),
      h("div", { class: "mod-actions" }, ...actions),
      others.length
        ? h("ul", { class: "mod-sites" }, ...others.map((s) => this.site(s)))
        : h("p", { class: "empty" }, t("mod.no_sites")),
    ];
  }

  private site(s: SiteInfo): HTMLElement {
    const store = this.store;
    const court = store.settings.courts.find((c) => c.code === s.user.court)?.name ?? s.user.court;
    const state =
      s.role === "moderator"
        ? t("mod.moderator")
        : s.role === "witness"
          ? t("mod.witness")
          : s.status === "away"
            ? t("mod.away")
            : s.floor.state === "queued"
              ? t("mod.hand", { n: s.floor.position ?? 0 })
              : s.floor.state === "permitted"
                ? t("mod.speaking")
                : s.floor.state === "pending_revoke"
                  ? t("mod.revoking")
                  : t("mod.listening");
    const holds = s.floor.state === "permitted";
    const action =
      s.role !== "site" || s.status === "away" || s.floor.state === "pending_revoke"
        ? ""
        : holds
          ? button(t("mod.revoke"), () => store.moderate("revoke", s.user.id), "secondary small")
          : button(t("mod.grant"), () => store.moderate("grant", s.user.id), "accept small");
    return h(
      "li",
      { class: `queue-item mod-site floor-${s.floor.state}`, "data-site": s.user.id, "aria-label": s.user.name },
      h("span", { class: "who" }, t("mod.site", { name: s.user.name, court })),
      h("span", { class: "mod-state" }, state),
      action,
    );
  }
}
