// The top bar: who is signed in, their own status (free, in a call, offline), the connection,
// sound, language and sign-out; and the notices (a call taken elsewhere, a refusal).

import type { Alarm } from "../alarm";
import { button, h } from "../dom";
import { currentLang, setLang, t, type TextKey } from "../i18n";
import type { Store } from "../store";

export class HeaderView {
  readonly el = h("header", { class: "topbar" });
  readonly notices = h("ul", { class: "notices", "aria-live": "polite" });

  constructor(
    private readonly store: Store,
    private readonly alarm: Alarm,
    private readonly relabel: () => void,
  ) {}

  render(): void {
    const store = this.store;
    const u = store.user;
    const me = store.myStatus();
    const connection: Record<string, string> = {
      connecting: t("status.connecting"),
      connected: t("status.connected"),
      reconnecting: t("status.reconnecting"),
      replaced: t("status.replaced"),
      refused: t("status.refused", { code: store.closeCode ?? "" }),
    };
    const role = u ? t(`role.${u.role}` as TextKey) : "";
    const court = u ? (store.settings.courts.find((c) => c.code === u.court)?.name ?? u.court) : "";
    this.el.replaceChildren(
      h("h1", {}, t("app.heading")),
      h("span", { class: "who" }, u ? `${u.name} · ${role} · ${court}` : ""),
      h("span", { class: `me me-${me}` }, t("me.status", { status: t(`me.${me}`) })),
      h("span", { class: `connection conn-${store.connection}`, role: "status" }, connection[store.connection]),
      h(
        "span",
        { class: "tools" },
        this.alarm.blocked() ? button(t("sound.enable"), () => this.alarm.unlock(), "danger") : "",
        button(t("lang.other"), () => {
          setLang(currentLang() === "zh" ? "en" : "zh");
          this.relabel();
        }, "secondary"),
        button(t("signout"), () => store.hub.signOut(), "secondary"),
      ),
    );
    const now = Date.now();
    this.notices.replaceChildren(
      ...store.notices.filter((n) => now - n.at < 8000).map((n) => h("li", {}, n.text)),
    );
  }
}
