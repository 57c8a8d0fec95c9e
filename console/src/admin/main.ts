/*
 * The accounts admin page (用户管理, /app/console/admin.html; docs/console.md): built by the
 * console's Vite build from the same strings (i18n.ts), DOM helpers and look (style.css).
 * It needs no WebSocket: the bearer token the sign-in cookie buys, the courts of the admin's
 * scope from /api/console/settings, and the accounts API (api.ts). Only admins are let in;
 * anyone else is told so, and the server refuses them anyway.
 */

import "../style.css";

import { button, h } from "../dom";
import { currentLang, setLang, t, type TextKey } from "../i18n";
import type { ConsoleSettings } from "../store";
import { AccountsView } from "./accounts";
import { AdminApi } from "./api";

const api = new AdminApi();
const view = new AccountsView(api);
const title = h("h1");
const who = h("span", { class: "who" });
const back = h("a", { class: "back", href: "/app/console/index.html" });
const lang = button("", () => {
  setLang(currentLang() === "zh" ? "en" : "zh");
  relabel();
}, "secondary");
const signOut = button("", () => api.signOut(), "secondary");
const refused = h("p", { class: "admin-refused", role: "alert", hidden: true });
let courts: ConsoleSettings["courts"] = [];

function relabel(): void {
  setLang(currentLang());
  document.title = t("admin.title");
  title.textContent = t("admin.heading");
  const me = api.me;
  const court = me ? (courts.find((c) => c.code === me.court)?.name ?? me.court) : "";
  who.textContent = me ? `${me.name} · ${t(`role.${me.role}` as TextKey)} · ${court}` : "";
  back.textContent = t("admin.back");
  lang.textContent = t("lang.other");
  signOut.textContent = t("signout");
  refused.textContent = t("admin.not_admin");
  if (me?.role === "admin") view.relabel();
}

async function start(): Promise<void> {
  const me = await api.signIn();
  if (me === null) return;
  if (me.role !== "admin") {
    refused.hidden = false;
    view.el.hidden = true;
    relabel();
    return;
  }
  const resp = await fetch("/api/console/settings", { headers: { Authorization: `Bearer ${api.bearer()}` } });
  if (resp.ok) courts = ((await resp.json()) as ConsoleSettings).courts;
  relabel();
  view.configure(courts);
}

const root = document.getElementById("admin") as HTMLElement;
root.replaceChildren(
  h("header", { class: "topbar" }, title, who, h("span", { class: "tools" }, back, lang, signOut)),
  refused,
  view.el,
  view.notices,
);
relabel();
void start();

declare global {
  interface Window {
    ccAdmin: unknown;
  }
}

// For tests: what the page was told, as plain JSON.
window.ccAdmin = {
  me: () => api.me,
  progress: () => view.progressSeen,
};
