// The top bar: who is signed in, their own status (free, in a call, offline), the connection,
// sound, language and sign-out; and the notices (a call taken elsewhere, a refusal). Its
// elements are made once and updated in place: the first touch of the page turns the sound
// on, and a bar rebuilt by that would swallow the click that touched it.

import type { Alarm } from "../alarm";
import { button, h, keyed } from "../dom";
import { currentLang, setLang, t, type TextKey } from "../i18n";
import { CONSOLE_ROLES, type Store } from "../store";

export class HeaderView {
  readonly el: HTMLElement;
  readonly notices = h("ul", { class: "notices", "aria-live": "polite" });
  private readonly title = h("h1");
  private readonly who = h("span", { class: "who" });
  private readonly me = h("span");
  private readonly connection = h("span", { role: "status" });
  private readonly sound: HTMLButtonElement;
  private readonly lang: HTMLButtonElement;
  private readonly signOut: HTMLButtonElement;
  // The accounts admin page (admin.html), for admins only.
  private readonly accounts = h("a", { class: "accounts-link", href: "/app/console/admin.html", hidden: true });
  // The conferences page (conference.html: host, moderate, join), signed in by the same cookie.
  // In this tab: the page shares this session (the resume token in sessionStorage), so going
  // there and back keeps the operator's calls; a second tab would sign the console out.
  private readonly conferences = h("a", { class: "conferences-link", href: "/app/conference.html" });
  // Not HTTPS: the browser will give no microphone for talking back; said before a call.
  private readonly insecure = h("span", { class: "insecure", role: "alert", hidden: true });
  // An operator's own away switch (set_availability).
  private readonly availability: HTMLButtonElement;

  constructor(
    private readonly store: Store,
    private readonly alarm: Alarm,
    relabel: () => void,
  ) {
    this.sound = button("", () => alarm.unlock(), "secondary");
    this.lang = button(
      "",
      () => {
        setLang(currentLang() === "zh" ? "en" : "zh");
        relabel();
      },
      "secondary",
    );
    this.signOut = button("", () => store.hub.signOut(), "secondary");
    this.availability = button("", () => store.setAway(!store.away), "secondary");
    this.el = h(
      "header",
      { class: "topbar" },
      this.title,
      this.who,
      this.me,
      this.availability,
      this.connection,
      this.insecure,
      h("span", { class: "tools" }, this.conferences, this.accounts, this.sound, this.lang, this.signOut),
    );
  }

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
    this.title.textContent = t("app.heading");
    this.who.textContent = u ? `${u.name} · ${role} · ${court}` : "";
    this.me.className = `me me-${me}`;
    this.me.textContent = t("me.status", { status: t(`me.${me}`) });
    this.connection.className = `connection conn-${store.connection}`;
    this.connection.textContent =
      u && !CONSOLE_ROLES.has(u.role) ? t("status.wrong_role") : connection[store.connection];
    // Until the page is touched the browser keeps it silent: say so before an alarm needs it.
    this.sound.hidden = this.alarm.running();
    this.sound.className = this.alarm.blocked() ? "danger" : "secondary";
    this.sound.textContent = t("sound.enable");
    this.lang.textContent = t("lang.other");
    this.signOut.textContent = t("signout");
    this.accounts.hidden = u?.role !== "admin";
    this.conferences.textContent = t("header.conferences");
    this.accounts.textContent = t("admin.open");
    this.insecure.hidden = window.isSecureContext;
    this.insecure.textContent = t("media.insecure");
    this.availability.hidden = u?.role !== "operator";
    this.availability.textContent = store.away ? t("avail.back") : t("avail.away");
    this.availability.setAttribute("aria-pressed", String(store.away));
    const now = Date.now();
    const shown = store.notices.filter((n) => now - n.at < 8000);
    keyed(this.notices, JSON.stringify(shown), () => shown.map((n) => h("li", {}, n.text)));
  }
}
