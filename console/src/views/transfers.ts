// The call flow's parts of the other views: calls other operators offer us (shown at the top
// of the queue, with accept and decline and the time left), the transfer control of the call
// view (offer the call to a free operator, or withdraw the offer while it waits; or send an
// officer's call back to the queue for the court's other operators), and the
// operators of our court with their status (free, in a call, away).

import { button, h, keyed, ticking } from "../dom";
import { currentLang, duration, t, type TextKey } from "../i18n";
import type { Store } from "../store";

/** The queue items for the transfers offered to us, newest offer last. */
export function transferOfferItems(store: Store): HTMLElement[] {
  return [...store.transferOffers.values()].map((offer) => {
    const call = offer.call;
    const court = store.settings.courts.find((c) => c.code === call.court)?.name ?? call.court;
    const text = t("transfer.offer", { from: offer.from.name, name: call.officer.name, court });
    const left = (): number => Math.max(0, (offer.expiresAt - Date.now()) / 1000);
    return h(
      "li",
      { class: "queue-item transfer-offer", "data-call": call.call_id, "aria-label": text },
      h("span", { class: "who" }, text),
      ticking("span", { class: "wait" }, () => t("transfer.left", { t: duration(left()) })),
      h(
        "span",
        { class: "actions" },
        button(t("transfer.accept"), () => store.acceptTransfer(call.call_id), "accept"),
        button(t("transfer.decline"), () => store.declineTransfer(call.call_id), "secondary"),
      ),
    );
  });
}

/** What the queue shows of the offers, for its redraw key. */
export function transferOffersKey(store: Store): unknown {
  return [...store.transferOffers.keys()];
}

/** The call view's transfer control, for the call's operator. */
export class TransferControl {
  readonly el = h("div", { class: "transfer" });
  private readonly select = h("select", { "aria-label": "" });

  constructor(private readonly store: Store) {}

  render(): void {
    const store = this.store;
    const call = store.call;
    const mine = !!call && call.operator?.id === store.user?.id && store.user?.role === "operator";
    this.el.hidden = !mine;
    const out = store.transferOut;
    const free = store.freeOperators();
    const key = [currentLang(), mine, call?.call_id, out?.callId, out?.to.id, free.map((u) => u.id)];
    keyed(this.el, JSON.stringify(key), () => {
      if (!mine) return [];
      if (out && out.callId === call?.call_id) {
        return [
          h("span", { class: "transfer-waiting", role: "status" }, t("transfer.waiting", { name: out.to.name })),
          button(t("transfer.cancel"), () => store.cancelTransfer(), "secondary"),
        ];
      }
      // An officer's call may also go back to the queue, for the court's other operators.
      const back =
        call?.direction === "officer_to_center" ? button(t("requeue.button"), () => store.sendBack(), "secondary") : null;
      if (free.length === 0) return [h("span", { class: "note" }, t("transfer.none")), back];
      this.select.setAttribute("aria-label", t("transfer.to"));
      this.select.replaceChildren(...free.map((u) => h("option", { value: u.id }, u.name)));
      return [
        this.select,
        button(
          t("transfer.button"),
          () => {
            const to = free.find((u) => u.id === this.select.value);
            return to ? store.offerTransfer(to) : undefined;
          },
          "secondary",
        ),
        back,
      ];
    });
  }
}

/** The operators of our court and their status. */
export class OperatorsView {
  readonly el: HTMLElement;
  private readonly heading = h("h2", { id: "operators-heading" });
  private readonly list = h("ul", { class: "operators-list" });

  constructor(private readonly store: Store) {
    this.el = h("section", { class: "panel operators", "aria-labelledby": "operators-heading" }, this.heading, this.list);
  }

  render(): void {
    const store = this.store;
    this.heading.textContent = t("operators.title");
    const others = [...store.operators.values()]
      .filter((e) => e.user.id !== store.user?.id)
      .sort((a, b) => a.user.name.localeCompare(b.user.name));
    keyed(this.list, JSON.stringify([currentLang(), others.map((e) => [e.user.id, e.user.name, e.status])]), () =>
      others.length === 0
        ? [h("li", { class: "empty" }, t("operators.none"))]
        : others.map((e) =>
            h(
              "li",
              { class: `operator op-${e.status}`, "data-user": e.user.id },
              h("span", { class: "who" }, e.user.name),
              h("span", { class: `badge op-status-${e.status}` }, t(`operators.${e.status}` as TextKey)),
            ),
          ),
    );
  }
}
