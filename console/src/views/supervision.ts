// What a call reaches beyond its two parties: the calls operators asked us into (for a
// supervisor: join, as policy allows, or dismiss), and the call view's control that pushes our
// call into a running conference (share_call) and stops it again.

import { button, h, keyed } from "../dom";
import { currentLang, t } from "../i18n";
import type { Store } from "../store";

/** A supervisor's invitations into calls (supervisor_invited), newest last. */
export class InvitationsView {
  readonly el = h("section", { class: "panel invitations", "aria-labelledby": "invitations-heading", hidden: true });

  constructor(private readonly store: Store) {}

  render(): void {
    const store = this.store;
    const invited = [...store.invitations.values()];
    this.el.hidden = invited.length === 0;
    const key = [currentLang(), invited.map((i) => i.call.call_id)];
    keyed(this.el, JSON.stringify(key), () => [
      h("h2", { id: "invitations-heading" }, t("invite.title")),
      h(
        "ul",
        {},
        ...invited.map(({ call, by }) => {
          const court = store.settings.courts.find((c) => c.code === call.court)?.name ?? call.court;
          const text = t("invite.item", { by: by.name, name: call.officer.name, court });
          return h(
            "li",
            { class: "queue-item invitation", "aria-label": text },
            h("span", { class: "who" }, text),
            h(
              "span",
              { class: "actions" },
              button(t("invite.join"), () => store.joinInvited(call.call_id), "accept"),
              button(t("invite.dismiss"), () => store.dismissInvitation(call.call_id), "secondary"),
            ),
          );
        }),
      ),
    ]);
  }
}

/** The call view's "push into a conference": pick a running conference, share, stop. */
export class ShareControl {
  readonly el = h("div", { class: "share" });
  private readonly select = h("select", {});
  /** The running conferences last listed, or null until asked. */
  private choices: { conference_id: string; title: string }[] | null = null;

  constructor(private readonly store: Store) {}

  render(): void {
    const store = this.store;
    const call = store.call;
    // The call's operator shares it (a moderator does so from the conferences page).
    const mine = !!call && call.operator?.id === store.user?.id;
    this.el.hidden = !mine;
    const shared = store.sharedTo?.callId === call?.call_id ? store.sharedTo : null;
    const ended = !shared && store.sharedEnded?.callId === call?.call_id ? store.sharedEnded : null;
    const choices = this.choices;
    const key = [currentLang(), mine, call?.call_id, shared?.conferenceId, ended?.title, choices?.map((c) => c.conference_id)];
    keyed(this.el, JSON.stringify(key), () => {
      if (!mine) return [];
      if (ended && choices === null) {
        return [
          h("span", { class: "share-state share-ended", role: "status" }, t("share.conference_ended", { title: ended.title })),
          button(t("share.open"), () => this.list(), "secondary"),
        ];
      }
      if (shared) {
        return [
          h("span", { class: "share-state", role: "status" }, t("share.showing", { title: shared.title })),
          button(t("share.stop"), () => store.stopSharing(), "secondary"),
        ];
      }
      if (choices === null) return [button(t("share.open"), () => this.list(), "secondary")];
      if (choices.length === 0) {
        return [
          h("span", { class: "share-state" }, t("share.none")),
          button(t("share.refresh"), () => this.list(), "secondary small"),
        ];
      }
      this.select.setAttribute("aria-label", t("share.pick"));
      this.select.replaceChildren(...choices.map((c) => h("option", { value: c.conference_id }, c.title)));
      return [
        this.select,
        button(t("share.push"), () => this.share(), "secondary"),
        button(t("share.cancel"), () => this.reset(), "secondary small"),
      ];
    });
  }

  private async list(): Promise<void> {
    this.choices = await this.store.runningConferences();
    this.render();
  }

  private async share(): Promise<void> {
    const picked = this.choices?.find((c) => c.conference_id === this.select.value);
    if (!picked) return;
    await this.store.shareCall(picked.conference_id, picked.title);
    this.choices = null;
    this.render();
  }

  private reset(): void {
    this.choices = null;
    this.render();
  }
}
