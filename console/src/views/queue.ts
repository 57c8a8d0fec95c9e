// The call queue: calls ringing at us (accept, decline) with their waiting time, which turns
// amber then red past the configured thresholds; the call we are placing (cancel); and the
// court's other waiting calls the server tells every console of (get_queue, queue_update):
// queued with their place, or ringing at other consoles, each with its age.

import { button, h, keyed, ticking } from "../dom";
import { currentLang, duration, t } from "../i18n";
import type { CallInfo, QueueEntry } from "../protocol";
import type { Store } from "../store";
import { transferOfferItems, transferOffersKey } from "./transfers";

export function waitClass(store: Store, seconds: number): string {
  if (seconds >= store.settings.queue_red_s) return "wait-red";
  if (seconds >= store.settings.queue_amber_s) return "wait-amber";
  return "wait-ok";
}

export class QueueView {
  readonly el: HTMLElement;
  private readonly heading = h("h2", { id: "queue-heading" });
  private readonly list = h("ul", { class: "queue-list" });

  constructor(private readonly store: Store) {
    this.el = h("section", { class: "panel queue", "aria-labelledby": "queue-heading" }, this.heading, this.list);
  }

  render(): void {
    const store = this.store;
    this.heading.textContent = t("queue.title");
    const ringing = [...store.ringing.values()].sort(
      (a, b) => Number(b.emergency) - Number(a.emergency) || a.created_at - b.created_at,
    );
    const ours = new Set([...store.ringing.keys(), store.call?.call_id, store.outgoing?.callId]);
    const elsewhere = store.waitingCalls().filter((e) => !ours.has(e.call.call_id));
    const key = JSON.stringify([
      currentLang(),
      ringing.map((c) => [c.call_id, c.emergency, c.case_number]),
      store.outgoing?.callId,
      elsewhere.map((e) => [e.call.call_id, e.call.state, e.position, e.ringing, e.call.emergency]),
      store.settings.courts.length,
      transferOffersKey(store),
    ]);
    keyed(this.list, key, () => this.items(ringing, elsewhere));
  }

  private items(ringing: CallInfo[], elsewhere: QueueEntry[]): HTMLElement[] {
    const store = this.store;
    const items: HTMLElement[] = transferOfferItems(store);
    for (const call of ringing) items.push(this.ringingItem(call));
    if (store.outgoing) {
      const out = store.outgoing;
      items.push(
        h(
          "li",
          { class: "queue-item outgoing" },
          h("span", { class: "who" }, t("queue.outgoing", { name: out.officer.name })),
          h("span", { class: "actions" }, button(t("queue.cancel"), () => store.cancelOutgoing(), "secondary")),
        ),
      );
    }
    // The court's other waiting calls: queued (with their place) or ringing at other
    // consoles, each waiting since the officer placed it (also after a send-back).
    for (const entry of elsewhere) {
      const call = entry.call;
      const waited = (): number => (store.serverNow() - call.created_at) / 1000;
      const note =
        call.state === "queued"
          ? t("queue.queued", { n: entry.position ?? "?" })
          : t("queue.ringing_elsewhere", { n: entry.ringing });
      items.push(
        h(
          "li",
          {
            class: `queue-item elsewhere${call.emergency ? " is-emergency" : ""}`,
            "data-call": call.call_id,
            "data-state": call.state,
          },
          call.emergency ? h("span", { class: "badge status-emergency" }, t("queue.emergency")) : null,
          h("span", { class: "who" }, call.officer.name),
          h("span", { class: "note" }, note),
          this.wait(waited),
        ),
      );
    }
    if (items.length === 0) items.push(h("li", { class: "empty" }, t("queue.empty")));
    return items;
  }

  private wait(waited: () => number): HTMLElement {
    return ticking(
      "span",
      { class: "wait" },
      () => t("queue.waiting", { t: duration(waited()) }),
      () => waitClass(this.store, waited()),
    );
  }

  private ringingItem(call: CallInfo): HTMLElement {
    const store = this.store;
    const waited = (): number => (store.serverNow() - call.created_at) / 1000;
    const court = store.settings.courts.find((c) => c.code === call.court)?.name ?? call.court;
    return h(
      "li",
      {
        class: `queue-item ringing${call.emergency ? " is-emergency" : ""}`,
        "data-call": call.call_id,
        "aria-label": `${t("queue.ringing")} ${call.officer.name}`,
      },
      call.emergency ? h("span", { class: "badge status-emergency" }, t("queue.emergency")) : null,
      h("span", { class: "who" }, `${call.officer.name} · ${court}`),
      call.case_number ? h("span", { class: "note" }, t("call.case", { case: call.case_number })) : null,
      this.wait(waited),
      h(
        "span",
        { class: "actions" },
        button(t("queue.accept"), () => store.accept(call.call_id), "accept"),
        button(t("queue.decline"), () => store.decline(call.call_id), "secondary"),
      ),
    );
  }
}
