// The accounts admin view (用户管理): a table of the accounts of the admin's scope with search,
// filters and pages; a form to add one; disable, enable and reset with a confirmation; a CSV
// import with a progress bar and the file's bad lines. A password or second factor the
// server makes is shown once, in a dialog, and forgotten when it is closed: never logged,
// never kept in the page's state.

import QRCode from "qrcode";

import { button, h } from "../dom";
import { t, type TextKey } from "../i18n";
import type { ConsoleSettings } from "../store";
import { ApiError, type AccountPage, type AccountSummary, type AdminApi, type ImportProgress, type Secrets } from "./api";

const ROLES = ["officer", "operator", "supervisor", "admin", "auditor"] as const;
const PAGE = 50;
const SEARCH_DELAY_MS = 250;

export class AccountsView {
  readonly el: HTMLElement;
  readonly notices = h("ul", { class: "notices", "aria-live": "polite" });
  /** For tests: every progress line of the imports, in order. */
  readonly progressSeen: ImportProgress[] = [];
  private courts: ConsoleSettings["courts"] = [];
  private page: AccountPage = { accounts: [], total: 0, offset: 0, limit: PAGE };
  private offset = 0;
  private searchTimer = 0;
  private readonly search = h("input", { type: "search", "aria-label": "" });
  private readonly court = h("select");
  private readonly role = h("select");
  private readonly state = h("select");
  private readonly count = h("p", { class: "admin-count", role: "status" });
  private readonly rows = h("tbody");
  private readonly head = h("thead");
  private readonly pager = h("div", { class: "admin-pager" });
  private readonly addForm = h("form", { class: "admin-form" });
  private readonly importBox = h("div", { class: "admin-import" });
  private readonly progress = h("progress", { max: "1", value: "0", hidden: true });
  private readonly progressText = h("p", { class: "admin-progress-text", role: "status" });
  private readonly faults = h("ul", { class: "admin-faults" });
  private readonly file = h("input", { type: "file", accept: ".csv,text/csv" });
  private readonly dialog = h("dialog", { class: "admin-dialog" });
  private readonly titles = {
    list: h("h2", { id: "admin-list-heading" }),
    add: h("h2", { id: "admin-add-heading" }),
    import: h("h2", { id: "admin-import-heading" }),
  };

  constructor(private readonly api: AdminApi) {
    for (const el of [this.court, this.role, this.state]) el.addEventListener("change", () => this.refresh(0));
    this.search.addEventListener("input", () => {
      window.clearTimeout(this.searchTimer);
      this.searchTimer = window.setTimeout(() => this.refresh(0), SEARCH_DELAY_MS);
    });
    this.addForm.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.add();
    });
    this.el = h(
      "main",
      { class: "admin" },
      h(
        "section",
        { class: "panel admin-list", "aria-labelledby": "admin-list-heading" },
        this.titles.list,
        h("div", { class: "admin-tools" }, this.search, this.court, this.role, this.state),
        this.count,
        h("div", { class: "admin-table-wrap" }, h("table", { class: "admin-table" }, this.head, this.rows)),
        this.pager,
      ),
      h(
        "div",
        { class: "admin-side" },
        h("section", { class: "panel", "aria-labelledby": "admin-add-heading" }, this.titles.add, this.addForm),
        h("section", { class: "panel", "aria-labelledby": "admin-import-heading" }, this.titles.import, this.importBox),
      ),
      this.dialog,
    );
  }

  configure(courts: ConsoleSettings["courts"]): void {
    this.courts = courts;
    this.relabel();
    void this.refresh(0);
  }

  /** Every label again, in the language now chosen. */
  relabel(): void {
    this.titles.list.textContent = t("admin.title");
    this.titles.add.textContent = t("admin.add");
    this.titles.import.textContent = t("admin.import");
    this.search.placeholder = t("admin.search");
    this.search.setAttribute("aria-label", t("admin.search"));
    fillSelect(this.court, t("admin.filter.court"), [["", t("admin.court.all")], ...this.courts.map((c) => [c.code, c.name] as [string, string])]);
    fillSelect(this.role, t("admin.filter.role"), [["", t("admin.role.all")], ...ROLES.map((r) => [r, roleName(r)] as [string, string])]);
    fillSelect(this.state, t("admin.filter.state"), [
      ["", t("admin.state.all")],
      ["false", t("admin.state.enabled")],
      ["true", t("admin.state.disabled")],
    ]);
    this.head.replaceChildren(
      h("tr", {}, ...(["user", "name", "role", "court", "state", "actions"] as const).map((c) => h("th", { scope: "col" }, t(`admin.col.${c}`)))),
    );
    this.buildAddForm();
    this.buildImport();
    this.drawRows();
  }

  async refresh(offset = this.offset): Promise<void> {
    this.offset = offset;
    try {
      this.page = await this.api.list({
        q: this.search.value.trim(),
        court: this.court.value,
        role: this.role.value,
        disabled: this.state.value,
        offset,
        limit: PAGE,
      });
    } catch (err) {
      this.failed(err);
    }
    this.drawRows();
  }

  private drawRows(): void {
    const p = this.page;
    this.count.textContent = t("admin.count", { n: p.total });
    this.rows.replaceChildren(
      ...(p.accounts.length === 0
        ? [h("tr", {}, h("td", { colspan: "6", class: "empty" }, t("admin.empty")))]
        : p.accounts.map((a) => this.row(a))),
    );
    const last = Math.min(p.offset + p.accounts.length, p.total);
    const prev = button(t("admin.prev"), () => this.refresh(Math.max(0, p.offset - PAGE)), "secondary small");
    const next = button(t("admin.next"), () => this.refresh(p.offset + PAGE), "secondary small");
    prev.disabled = p.offset === 0;
    next.disabled = last >= p.total;
    this.pager.replaceChildren(prev, h("span", {}, p.total ? t("admin.page", { from: p.offset + 1, to: last }) : ""), next);
  }

  private row(a: AccountSummary): HTMLElement {
    const flags: string[] = [a.disabled ? t("admin.state.disabled") : t("admin.state.enabled")];
    if (!a.has_password) flags.push(t("admin.no_password"));
    if (a.locked_until && a.locked_until * 1000 > Date.now()) flags.push(t("admin.locked"));
    if (a.second_factor) flags.push(t("admin.totp"));
    const mine = a.user === this.api.me?.id;
    return h(
      "tr",
      { class: a.disabled ? "is-disabled" : "", "data-user": a.user },
      h("td", {}, a.user),
      h("td", {}, a.name),
      h("td", {}, roleName(a.role)),
      h("td", {}, this.courtName(a.court)),
      h("td", {}, flags.join(" · ")),
      h(
        "td",
        { class: "admin-actions" },
        a.disabled
          ? button(t("admin.enable"), () => this.setDisabled(a, false), "secondary small")
          : mine
            ? ""
            : button(t("admin.disable"), () => this.setDisabled(a, true), "danger small"),
        button(t("admin.reset"), () => this.reset(a), "secondary small"),
      ),
    );
  }

  private buildAddForm(): void {
    const roleSelect = h("select", { name: "role", required: true });
    fillSelect(roleSelect, "", ROLES.map((r) => [r, roleName(r)] as [string, string]));
    const courtSelect = h("select", { name: "court", required: true });
    fillSelect(courtSelect, "", this.courts.map((c) => [c.code, c.name] as [string, string]));
    this.addForm.replaceChildren(
      field(t("admin.field.user"), h("input", { name: "user", required: true, maxlength: "64", autocomplete: "off" })),
      field(t("admin.field.name"), h("input", { name: "name", required: true, maxlength: "64", autocomplete: "off" })),
      field(t("admin.field.role"), roleSelect),
      field(t("admin.field.court"), courtSelect),
      field(t("admin.field.password"), h("input", { name: "password", type: "password", maxlength: "256", autocomplete: "new-password" })),
      h("label", { class: "check" }, h("input", { name: "totp", type: "checkbox" }), t("admin.field.totp")),
      h("button", { type: "submit" }, t("admin.add.submit")),
    );
  }

  private async add(): Promise<void> {
    const form = this.addForm;
    const value = (name: string) => (form.elements.namedItem(name) as HTMLInputElement).value;
    try {
      const made = await this.api.add({
        user: value("user").trim(),
        name: value("name").trim(),
        role: value("role"),
        court: value("court"),
        password: value("password"),
        totp: (form.elements.namedItem("totp") as HTMLInputElement).checked,
      });
      form.reset();
      this.notice(t("admin.added", { name: made.name, user: made.user }));
      this.showSecrets(made);
      await this.refresh();
    } catch (err) {
      this.failed(err);
    }
  }

  private setDisabled(a: AccountSummary, disabled: boolean): void {
    const text = t(disabled ? "admin.confirm_disable" : "admin.confirm_enable", { name: a.name, user: a.user });
    this.confirm(text, [], async () => {
      const done = await this.api.setDisabled(a.user, disabled);
      this.notice(disabled ? t("admin.disabled_done", { user: a.user, n: done.sessions_ended }) : t("admin.enabled_done", { user: a.user }));
      await this.refresh();
    });
  }

  private reset(a: AccountSummary): void {
    const password = h("input", { type: "password", name: "new-password", maxlength: "256", autocomplete: "new-password" });
    const totp = h("select", { name: "totp" });
    fillSelect(totp, "", (["keep", "new", "remove"] as const).map((c) => [c, t(`admin.totp.${c}`)] as [string, string]));
    const fields = [field(t("admin.field.new_password"), password), field(t("admin.field.totp"), totp)];
    this.confirm(t("admin.confirm_reset", { name: a.name, user: a.user }), fields, async () => {
      const done = await this.api.reset(a.user, password.value, totp.value as "keep" | "new" | "remove");
      this.notice(t("admin.reset_done", { user: a.user, n: done.sessions_ended }));
      this.showSecrets(done);
      await this.refresh();
    });
  }

  private buildImport(): void {
    const start = button(t("admin.import.start"), () => this.importFile(start));
    this.importBox.replaceChildren(
      h("p", { class: "admin-help" }, t("admin.import.help")),
      field(t("admin.import.file"), this.file),
      start,
      this.progress,
      this.progressText,
      this.faults,
    );
  }

  private async importFile(start: HTMLButtonElement): Promise<void> {
    const file = this.file.files?.[0];
    if (!file) return;
    start.disabled = true;
    this.faults.replaceChildren();
    this.progress.hidden = false;
    this.progress.value = 0;
    this.progressText.textContent = "";
    try {
      await this.api.import(file, (p) => this.progressed(p));
      await this.refresh(0);
    } catch (err) {
      this.progress.hidden = true;
      if (err instanceof ApiError && err.faults.length > 0) {
        this.progressText.textContent = t("admin.import.refused");
        this.faults.replaceChildren(...err.faults.map((f) => h("li", {}, f)));
      } else if (err instanceof ApiError && err.code === "busy") {
        this.progressText.textContent = t("admin.import.busy");
      } else {
        this.progressText.textContent = t("admin.import.failed", { reason: reasonOf(err) });
      }
    } finally {
      start.disabled = false;
      this.file.value = "";
    }
  }

  private progressed(p: ImportProgress): void {
    this.progressSeen.push(p);
    switch (p.phase) {
      case "hashing":
      case "saving":
        // Hashing is the first half of the bar, saving the second: it never runs backwards.
        this.progress.value = (p.phase === "saving" ? 0.5 : 0) + (p.total ? p.done / p.total : 1) / 2;
        this.progressText.textContent = t(p.phase === "saving" ? "admin.import.saving" : "admin.import.hashing", { done: p.done, total: p.total });
        break;
      case "done":
        this.progress.value = 1;
        this.progressText.textContent = t("admin.import.done", {
          accounts: p.summary.accounts,
          added: p.summary.added,
          updated: p.summary.updated,
          without: p.summary.without_password,
        });
        break;
      case "failed":
        this.progressText.textContent = t("admin.import.failed", { reason: p.reason });
        break;
    }
  }

  /** A modal question; `act` runs on confirmation, and its failure is told in the notices. */
  private confirm(text: string, fields: HTMLElement[], act: () => Promise<void>): void {
    const ok = button(t("admin.confirm"), async () => {
      ok.disabled = true;
      this.dialog.close();
      try {
        await act();
      } catch (err) {
        this.failed(err);
      }
    }, "danger");
    this.dialog.replaceChildren(
      h("p", { class: "admin-question" }, text),
      ...fields,
      h("div", { class: "admin-dialog-actions" }, button(t("admin.cancel"), () => this.dialog.close(), "secondary"), ok),
    );
    this.dialog.showModal();
  }

  /** What the server made, once; the dialog's contents are dropped when it closes. */
  private showSecrets(secrets: Secrets): void {
    const shown = (["password", "totp_secret", "totp_uri"] as const).filter((k) => secrets[k]);
    if (shown.length === 0) return;
    const done = button(t("admin.secret.done"), () => {
      this.dialog.close();
      this.dialog.replaceChildren();
    });
    const list = h("dl", { class: "admin-secrets" }, ...shown.flatMap((k) => [h("dt", {}, t(`admin.secret.${k}`)), h("dd", { "data-secret": k }, secrets[k] ?? "")]));
    this.dialog.replaceChildren(
      h("h3", {}, t("admin.secret.title")),
      secrets.totp_uri ? h("div", { class: "admin-secret-qr" }, qrImage(secrets.totp_uri), list) : list,
      h("div", { class: "admin-dialog-actions" }, done),
    );
    this.dialog.showModal();
  }

  private courtName(code: string): string {
    return this.courts.find((c) => c.code === code)?.name ?? code;
  }

  notice(text: string): void {
    const li = h("li", {}, text);
    this.notices.append(li);
    window.setTimeout(() => li.remove(), 8000);
  }

  private failed(err: unknown): void {
    this.notice(t("admin.error", { reason: reasonOf(err) }));
  }
}

/**
 * The otpauth URI as a QR code for the authenticator app to scan, drawn in the page (the
 * `qrcode` package, pinned in package-lock.json) as a data: PNG, which the pages' policy
 * allows for `img-src`; nothing is fetched. The URI stays beside it as text, for a phone
 * that cannot scan. Error correction M and a 4-module quiet zone: what authenticator apps
 * read at arm's length from a screen.
 */
function qrImage(uri: string): HTMLElement {
  const img = h("img", { class: "admin-qr", alt: t("admin.secret.qr"), width: "200", height: "200" });
  const box = h("figure", { class: "admin-qr-box" }, img, h("figcaption", {}, t("admin.secret.qr_help")));
  QRCode.toDataURL(uri, { errorCorrectionLevel: "M", margin: 4, width: 200 })
    .then((url) => {
      img.src = url;
    })
    .catch((err: unknown) => {
      box.replaceChildren(h("p", { class: "admin-qr-failed", role: "alert" }, t("admin.secret.qr_failed", { reason: reasonOf(err) })));
    });
  return box;
}

function reasonOf(err: unknown): string {
  if (err instanceof ApiError) return err.field ? `${err.field}: ${err.reason}` : err.reason;
  return err instanceof Error ? err.message : String(err);
}

function roleName(role: string): string {
  return t(`role.${role}` as TextKey);
}

let fields = 0;

// A label tied to its control by id: wrapped round a <select>, a label's name would take in
// every option's text too.
function field(label: string, control: HTMLElement): HTMLElement {
  if (!control.id) control.id = `admin-field-${++fields}`;
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control);
}

function fillSelect(select: HTMLSelectElement, label: string, options: [string, string][]): void {
  const chosen = select.value;
  if (label) select.setAttribute("aria-label", label);
  select.replaceChildren(...options.map(([value, text]) => h("option", { value }, text)));
  if (options.some(([value]) => value === chosen)) select.value = chosen;
}
