// The moderator's desk (moderation.ts) in the side column: host a conference or open one we
// moderate; then its state (spotlight, lock, recording, moderators, the calls pushed in), its
// sites, raised hands first in their order, each a keyed row with the actions that apply
// (floor, spotlight, remove with confirmation, name as co-moderator), and the witnesses'
// panel (邀请列席: a link with its QR code, the list with 撤销). The rows are redrawn one by
// one as `sites_changed` names them, never the whole list: a provincial conference has 300.
// Folded while none of this user's conferences runs, or as the user last chose
// (`localStorage` `cc.desk.folded`). Above it, folded or not, the conferences ringing at this
// console (会商邀请: the conferences page joins them; 拒绝 declines).
// 邀请参会 invites by picking: a search field (name or id) over whom the console knows may be
// invited (invitable.ts), a listbox of them with role, court and state, arrows and Enter or a
// click to ring one.
// The conference's picture: while one is open the desk holds ONE peer connection with the
// server for it, as the conferences page does (call_id = the conference id; we offer to
// receive only; the server offers our slots) and shows the `spotlight` slot: the site in the
// spotlight, else the floor holder (docs/console.md, "The desk's video"), and plays the
// voices heard in it: one <audio> per `audio-<i>` slot, with a 静音 / 取消静音 toggle.

import QRCode from "qrcode";

import { button, h, keyed } from "../dom";
import { CallMedia } from "../media";
import { currentLang, t, type TextKey } from "../i18n";
import { matching, typedId, type Candidate } from "../invitable";
import type { Push, SiteInfo } from "../protocol";
import type { Store } from "../store";

const FOLD_KEY = "cc.desk.folded";
const CONSOLE_ROLES = new Set(["operator", "supervisor", "admin"]);
const WITNESS_HOURS = [1, 4, 8, 24];
// The slot of the conference's media that carries the spotlight's (or floor holder's) video.
const SPOTLIGHT_SLOT = "spotlight";
// The slots that carry the conference's voices: audio-0, audio-1, ...
const AUDIO_SLOT = /^audio-\d+$/;
// The picker's rows at most: more matches ask for a longer query (a province has thousands).
const PICKER_ROWS = 8;
// Where a console joins a conference it is rung for (the conferences page, same sign-in).
const CONFERENCES_PAGE = "/app/conference.html";

function storedFold(): string | null {
  try {
    return localStorage.getItem(FOLD_KEY);
  } catch {
    return null;
  }
}

export class ModerationView {
  readonly el = h("section", { class: "panel moderation", "aria-labelledby": "moderation-heading" });
  private readonly head = h("div", { class: "mod-head" });
  private readonly body = h("div", { class: "mod-body" });
  private readonly top = h("div", { class: "mod-top" });
  private readonly list = h("ul", { class: "mod-sites", "aria-label": "" });
  private readonly empty = h("p", { class: "empty" });
  private readonly invitePanel = h("section", { class: "mod-invitations", "aria-labelledby": "invitation-heading" });
  private readonly ringingEl = h("div", { class: "mod-ringing" });
  private readonly invHeading = h("h3", { id: "invitation-heading" });
  private readonly invList = h("ul", { class: "inv-list" });
  private readonly pickInput = h("input", {
    type: "search",
    maxlength: "64",
    autocomplete: "off",
    role: "combobox",
    "aria-autocomplete": "list",
    "aria-expanded": "false",
    "aria-controls": "inv-picker-list",
  });
  private readonly pickList = h("ul", { class: "inv-picker-list", id: "inv-picker-list", role: "listbox" });
  private readonly pickHint = h("p", { class: "inv-picker-hint", role: "status" });
  /** What the picker lists now: a user, or the query as an id (`typed`). */
  private picks: { id: string; user: Candidate | null }[] = [];
  /** The row the arrows are on, -1: none. */
  private pickActive = -1;
  private pickFor: string | null = null;
  private readonly witnessPanel = h("section", { class: "mod-witnesses", "aria-labelledby": "witness-heading" });
  private readonly title = h("input", { type: "text", maxlength: "128", autocomplete: "off" });
  private readonly witnessName = h("input", { type: "text", maxlength: "32", autocomplete: "off" });
  private readonly witnessLabel = h("input", { type: "text", maxlength: "32", autocomplete: "off" });
  private readonly witnessHours = h("select", {});
  private readonly rows = new Map<string, { key: string; el: HTMLLIElement }>();
  private confirming = false;
  private removing: string | null = null;
  private witnessesOf: string | null = null;
  private fold: string | null = storedFold();
  private readonly stage = h("figure", { class: "mod-video" });
  private readonly video = h("video", { autoplay: true, playsinline: true, muted: true });
  private readonly videoCaption = h("figcaption", { role: "status" });
  /** The voices: one <audio> per audio slot received, by slot. */
  private readonly voices = new Map<string, HTMLAudioElement>();
  private voicesMuted = false;
  private readonly muteVoices = h("button", { type: "button", class: "mod-mute" });
  /** The open conference's media (receive only), null while none is open. */
  private media: CallMedia | null = null;

  constructor(private readonly store: Store) {
    this.el.append(this.head, this.ringingEl, this.body);
    this.invitePanel.append(this.invHeading, h("div", { class: "inv-picker" }, this.pickInput, this.pickList, this.pickHint), this.invList);
    this.pickInput.addEventListener("input", () => {
      this.pickActive = -1;
      this.renderPicker();
    });
    this.pickInput.addEventListener("keydown", (e) => this.pickKey(e));
    this.video.muted = true;
    this.stage.append(this.video, this.videoCaption, this.muteVoices);
    this.muteVoices.addEventListener("click", () => {
      this.voicesMuted = !this.voicesMuted;
      this.renderVideo();
    });
    store.onDeskPush = (msg) => this.mediaPushed(msg);
  }

  private mediaPushed(msg: Push): void {
    const media = this.media;
    if (!media) return;
    if (msg.type === "offer" && msg.call_id === media.callId) void media.serverOffer(msg.sdp);
    // The conference's media worker moved: a new peer connection, offered again.
    if (msg.type === "media_restart" && msg.call_id === media.callId) {
      this.stopMedia();
      this.startMedia(msg.call_id);
    }
  }

  /** For the tests (window.ccConsole.deskMedia): the desk's media, JSON-able. */
  mediaState(): { conference_id: string; connectionState: string; slots: string[]; error: string | null } | null {
    const media = this.media;
    if (!media) return null;
    return { conference_id: media.callId, connectionState: media.pc.connectionState, slots: [...media.remote.keys()], error: media.error };
  }

  private startMedia(conferenceId: string): void {
    this.media = new CallMedia(this.store.hub, conferenceId, null, () => this.renderVideo());
    void this.media.start();
  }

  /** For the tests (window.ccConsole.deskAudio): the voices' elements and their inbound
   * audio (bytes and packets received so far), JSON-able. */
  async audioState(): Promise<{
    muted: boolean;
    voices: { slot: string; track: string | null; trackMuted: boolean | null; muted: boolean; paused: boolean }[];
    inbound: { bytes: number; packets: number };
  } | null> {
    const media = this.media;
    if (!media) return null;
    const voices = [...this.voices].map(([slot, el]) => {
      const track = (el.srcObject as MediaStream | null)?.getAudioTracks()[0] ?? null;
      return { slot, track: track?.readyState ?? null, trackMuted: track?.muted ?? null, muted: el.muted, paused: el.paused };
    });
    const inbound = { bytes: 0, packets: 0 };
    (await media.pc.getStats()).forEach((s: Record<string, unknown>) => {
      if (s.type !== "inbound-rtp" || s.kind !== "audio") return;
      inbound.bytes += Number(s.bytesReceived ?? 0);
      inbound.packets += Number(s.packetsReceived ?? 0);
    });
    return { muted: this.voicesMuted, voices, inbound };
  }

  private stopMedia(): void {
    this.media?.close();
    this.media = null;
    this.video.srcObject = null;
    for (const el of this.voices.values()) {
      el.srcObject = null;
      el.remove();
    }
    this.voices.clear();
  }

  /** The spotlight slot's picture, and whose it is (or the media's state while none). */
  private renderVideo(): void {
    const open = this.store.moderation.open;
    const media = this.media;
    const stream = media?.remote.get(SPOTLIGHT_SLOT) ?? null;
    if (this.video.srcObject !== stream) {
      this.video.srcObject = stream;
      // Started by hand: the desk scrolls, and an autoplay video out of sight is left paused.
      if (stream) this.video.play().catch(() => undefined);
    }
    this.video.setAttribute("aria-label", t("mod.video"));
    this.renderVoices();
    const state = media ? t(`media.${media.pc.connectionState}` as TextKey) : "";
    const who = open?.spotlight?.name ?? open?.holders[0]?.name ?? null;
    this.videoCaption.textContent = media?.error
      ? t("mod.video_failed", { reason: media.error })
      : who
        ? t("mod.video_of", { name: who, state })
        : t("mod.video_none", { state });
  }

  /** An <audio> per audio slot received, started by hand (play()), muted as the desk chose. */
  private renderVoices(): void {
    const remote = this.media?.remote ?? new Map<string, MediaStream>();
    for (const [slot, el] of this.voices) {
      if (remote.has(slot)) continue;
      el.srcObject = null;
      el.remove();
      this.voices.delete(slot);
    }
    for (const [slot, stream] of remote) {
      if (!AUDIO_SLOT.test(slot)) continue;
      let el = this.voices.get(slot);
      if (!el) {
        el = h("audio", { autoplay: true });
        el.dataset.slot = slot;
        this.voices.set(slot, el);
        this.stage.append(el);
      }
      if (el.srcObject !== stream) {
        el.srcObject = stream;
        el.play().catch(() => undefined);
      }
      el.muted = this.voicesMuted;
    }
    this.muteVoices.textContent = this.voicesMuted ? t("mod.voices_unmute") : t("mod.voices_mute");
    this.muteVoices.setAttribute("aria-pressed", String(this.voicesMuted));
    this.muteVoices.hidden = !this.media;
  }

  /** Folded: as the user chose last, else while none of their conferences runs. */
  folded(): boolean {
    const desk = this.store.moderation;
    if (desk.open) return false;
    if (this.fold !== null) return this.fold === "1";
    return desk.mine.length === 0;
  }

  private toggleFold(): void {
    this.fold = this.folded() ? "0" : "1";
    try {
      localStorage.setItem(FOLD_KEY, this.fold);
    } catch {
      // Storage refused: folded for this page only.
    }
    this.render();
  }

  render(): void {
    const store = this.store;
    const desk = store.moderation;
    this.el.hidden = !store.isConsoleUser();
    const folded = this.folded();
    keyed(this.head, JSON.stringify([currentLang(), folded, !!desk.open]), () => [
      h("h2", { id: "moderation-heading" }, t("mod.title")),
      desk.open
        ? null
        : h(
            "button",
            { type: "button", class: "secondary small mod-fold", "aria-expanded": folded ? "false" : "true", onclick: () => this.toggleFold() },
            folded ? t("mod.unfold") : t("mod.fold"),
          ),
    ]);
    this.body.hidden = folded;
    this.renderRinging();
    const open = desk.open;
    if (!open && this.media) this.stopMedia();
    if (open && this.media?.callId !== open.id) {
      this.stopMedia();
      this.startMedia(open.id);
    }
    if (folded) return;
    if (!open) {
      this.rows.clear();
      this.witnessesOf = null;
      const key = JSON.stringify([currentLang(), store.connection, desk.mine.map((c) => c.conference_id)]);
      keyed(this.body, key, () => this.closed());
      return;
    }
    if (this.body.dataset.key !== "open") {
      this.body.dataset.key = "open";
      this.body.replaceChildren(this.top, this.stage, this.list, this.empty, this.invitePanel, this.witnessPanel);
    }
    if (this.witnessesOf !== open.id) {
      this.witnessesOf = open.id;
      void store.witnesses("list");
    }
    if (this.pickFor !== open.id) {
      this.pickFor = open.id;
      this.pickInput.value = "";
      this.pickActive = -1;
    }
    // Asked once per conference and session (a welcome forgets the operators of other courts).
    void store.operatorsOfScope(open.id);
    const others = desk.sites().filter((s) => s.user.id !== store.user?.id);
    this.renderTop(others);
    this.renderVideo();
    this.renderRows(others);
    this.renderInvitations();
    this.renderWitnesses();
  }

  private closed(): HTMLElement[] {
    const store = this.store;
    const desk = store.moderation;
    this.title.placeholder = t("mod.host_title");
    this.title.setAttribute("aria-label", t("mod.host_title"));
    const host = h("form", { class: "mod-host" }, this.title, h("button", { type: "submit", class: "accept" }, t("mod.host")));
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

  private nameOf(id: string): string {
    const desk = this.store.moderation;
    if (id === this.store.user?.id) return this.store.user.name;
    return desk.open?.sites.get(id)?.user.name ?? id;
  }

  private renderTop(others: SiteInfo[]): void {
    const store = this.store;
    const open = store.moderation.open;
    if (!open) return;
    const hands = others.filter((s) => s.floor.state === "queued").length;
    const key = JSON.stringify([
      currentLang(),
      this.confirming,
      open.id,
      open.title,
      others.length,
      hands,
      open.spotlight?.id ?? null,
      open.locked,
      open.recording,
      open.moderators.map((m) => this.nameOf(m)),
      open.feeds.map((f) => [f.call_id, f.officer.name, f.by.name, f.emergency]),
    ]);
    keyed(this.top, key, () => {
      const actions = this.confirming
        ? [
            h("p", { class: "mod-question" }, t("mod.confirm_end", { title: open.title })),
            button(
              t("admin.confirm"),
              () => {
                this.confirming = false;
                return store.moderate("end");
              },
              "danger",
            ),
            button(
              t("admin.cancel"),
              () => {
                this.confirming = false;
                store.changed();
              },
              "secondary",
            ),
          ]
        : [
            button(t("mod.mute_all"), () => store.moderate("mute_all"), "secondary small"),
            button(open.locked ? t("mod.unlock") : t("mod.lock"), () => store.moderate("lock"), "secondary small"),
            button(open.recording ? t("mod.stop_record") : t("mod.record"), () => store.moderate("record"), "secondary small"),
            open.spotlight ? button(t("mod.unspotlight"), () => store.moderate("spotlight"), "secondary small") : null,
            button(t("mod.leave"), () => store.moderate("leave"), "secondary small"),
            button(
              t("mod.end"),
              () => {
                this.confirming = true;
                store.changed();
              },
              "danger small",
            ),
          ];
      return [
        h("h3", { class: "mod-conference" }, open.title),
        h("p", { class: "mod-count", role: "status" }, t("mod.sites", { n: others.length, hands })),
        h(
          "p",
          { class: "mod-flags", role: "status" },
          h("span", { class: "mod-spotlight" }, open.spotlight ? t("mod.spotlight_now", { name: open.spotlight.name }) : t("mod.spotlight_floor")),
          open.locked ? h("span", { class: "mod-locked" }, t("mod.locked")) : null,
          open.recording ? h("span", { class: "mod-recording" }, t("mod.recording")) : null,
        ),
        h("p", { class: "mod-moderators" }, t("mod.moderators", { names: open.moderators.map((m) => this.nameOf(m)).join("、") })),
        open.feeds.length
          ? h(
              "div",
              { class: "mod-feeds" },
              h("h4", {}, t("mod.feeds")),
              h(
                "ul",
                { "aria-label": t("mod.feeds") },
                ...open.feeds.map((f) =>
                  h(
                    "li",
                    { class: f.emergency ? "mod-feed emergency" : "mod-feed" },
                    t("mod.feed", { officer: f.officer.name, by: f.by.name }),
                    f.emergency ? h("span", { class: "badge" }, t("mod.feed_emergency")) : null,
                  ),
                ),
              ),
            )
          : null,
        h("div", { class: "mod-actions" }, ...actions),
      ];
    });
  }

  /** One keyed row per site: a row is rebuilt only when what it shows changed, and moved
   * only when its place did. */
  private renderRows(others: SiteInfo[]): void {
    const open = this.store.moderation.open;
    if (!open) return;
    const lang = currentLang();
    const chair = open.moderators[0] === this.store.user?.id;
    const seen = new Set<string>();
    this.list.setAttribute("aria-label", t("mod.title"));
    others.forEach((s, i) => {
      const id = s.user.id;
      seen.add(id);
      const key = JSON.stringify([
        lang,
        s.user.name,
        s.user.court,
        s.role,
        s.status,
        s.floor,
        open.spotlight?.id === id,
        this.removing === id,
        chair && open.moderators.includes(id),
        chair,
      ]);
      let row = this.rows.get(id);
      if (!row || row.key !== key) {
        const el = this.site(s, chair);
        if (row) row.el.replaceWith(el);
        row = { key, el };
        this.rows.set(id, row);
      }
      const at = this.list.children[i];
      if (at !== row.el) this.list.insertBefore(row.el, at ?? null);
    });
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.el.remove();
        this.rows.delete(id);
      }
    }
    this.empty.hidden = others.length > 0;
    this.empty.textContent = t("mod.no_sites");
  }

  private site(s: SiteInfo, chair: boolean): HTMLLIElement {
    const store = this.store;
    const open = store.moderation.open;
    const id = s.user.id;
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
    const spotlit = open?.spotlight?.id === id;
    const actions: (HTMLElement | null)[] = [];
    if (this.removing === id) {
      actions.push(
        h("span", { class: "mod-question" }, t("mod.confirm_remove", { name: s.user.name })),
        button(
          t("admin.confirm"),
          () => {
            this.removing = null;
            return store.moderate("remove", id);
          },
          "danger small",
        ),
        button(
          t("admin.cancel"),
          () => {
            this.removing = null;
            store.changed();
          },
          "secondary small",
        ),
      );
    } else {
      if (s.role === "site" && s.status !== "away" && s.floor.state !== "pending_revoke") {
        actions.push(
          holds
            ? button(t("mod.revoke"), () => store.moderate("revoke", id), "secondary small")
            : button(t("mod.grant"), () => store.moderate("grant", id), "accept small"),
        );
      }
      if (s.role !== "witness" && !spotlit) actions.push(button(t("mod.spotlight"), () => store.moderate("spotlight", id), "secondary small"));
      if (chair && s.role === "site" && CONSOLE_ROLES.has(s.user.role)) {
        actions.push(button(t("mod.name_moderator"), () => store.moderate("name_moderator", id), "secondary small"));
      }
      if (chair && s.role === "moderator") {
        actions.push(button(t("mod.remove_moderator"), () => store.moderate("remove_moderator", id), "secondary small"));
      }
      if (s.role !== "moderator") {
        actions.push(
          button(
            t("mod.remove"),
            () => {
              this.removing = id;
              store.changed();
            },
            "danger small",
          ),
        );
      }
    }
    return h(
      "li",
      { class: `queue-item mod-site floor-${s.floor.state}${spotlit ? " spotlit" : ""}`, "data-site": id, "aria-label": s.user.name },
      h("span", { class: "who" }, t("mod.site", { name: s.user.name, court })),
      h("span", { class: "mod-state" }, spotlit ? `${state} · ${t("mod.spotlit")}` : state),
      h("span", { class: "mod-row-actions" }, ...actions),
    );
  }

  /** The conferences ringing at this console: who asks, which, and join (the conferences
   * page) or decline. Shown folded or not: an invitation must be seen. */
  private renderRinging(): void {
    const store = this.store;
    const ringing = [...store.conferencesRinging.values()];
    this.ringingEl.hidden = ringing.length === 0;
    const key = JSON.stringify([currentLang(), ringing.map((c) => [c.conference_id, c.title, c.host.name])]);
    keyed(this.ringingEl, key, () =>
      ringing.map((c) =>
        h(
          "div",
          { class: "queue-item mod-rung", role: "alert", "aria-label": t("inv.rung_title") },
          h("span", { class: "who" }, t("inv.rung", { name: c.host.name, title: c.title })),
          h("a", { class: "inv-rung-join", href: CONFERENCES_PAGE }, t("inv.rung_join")),
          button(t("inv.rung_decline"), () => store.declineConference(c.conference_id), "secondary small"),
        ),
      ),
    );
  }

  /** Whom it invites and their answers, and the picker; a moderator withdraws a user's
   * invitation not answered by joining. Courts are shown by name, users by the name the
   * console knows (the roster, the operators), else their id. */
  private renderInvitations(): void {
    const store = this.store;
    const open = store.moderation.open;
    if (!open) return;
    this.invHeading.textContent = t("inv.title");
    this.invList.setAttribute("aria-label", t("inv.title"));
    this.pickInput.setAttribute("aria-label", t("inv.search"));
    this.pickInput.placeholder = t("inv.search_hint");
    this.pickList.setAttribute("aria-label", t("inv.candidates"));
    this.renderPicker();
    const invitations = [...open.invitations.values()];
    const key = JSON.stringify([currentLang(), invitations.map((i) => [i.kind, i.invitee, i.state])]);
    const nameOf = (i: (typeof invitations)[number]): string =>
      i.kind === "court"
        ? (store.settings.courts.find((c) => c.code === i.invitee)?.name ?? i.invitee)
        : (store.roster.get(i.invitee)?.officer.name ?? store.operators.get(i.invitee)?.user.name ?? i.invitee);
    keyed(this.invList, key, () =>
      invitations.map((i) =>
        h(
          "li",
          { class: "queue-item inv-item", "aria-label": nameOf(i) },
          h("span", { class: "who" }, nameOf(i)),
          h("span", { class: "mod-state" }, t(`inv.${i.state}`)),
          i.kind === "user" && i.state !== "joined" && i.state !== "withdrawn"
            ? button(t("inv.withdraw"), () => store.moderate("withdraw", i.invitee), "secondary small")
            : null,
        ),
      ),
    );
  }

  /** The picker's rows for the query typed: those the console knows may be invited, and the
   * query itself when it looks like an id of someone it cannot know (a supervisor). */
  private renderPicker(): void {
    const store = this.store;
    const query = this.pickInput.value;
    const candidates = store.invitable();
    const hits = matching(candidates, query);
    const typed = typedId(query, hits, (id) => store.knowsUser(id));
    this.picks = hits.slice(0, PICKER_ROWS).map((c) => ({ id: c.user.id, user: c }));
    if (typed) this.picks.push({ id: typed, user: null });
    if (this.pickActive >= this.picks.length) this.pickActive = this.picks.length - 1;
    const shown = this.picks.length > 0;
    this.pickInput.setAttribute("aria-expanded", String(shown));
    const active = this.picks[this.pickActive];
    if (active) this.pickInput.setAttribute("aria-activedescendant", this.optionId(active.id));
    else this.pickInput.removeAttribute("aria-activedescendant");
    this.pickList.hidden = !shown;
    const more = hits.length - Math.min(hits.length, PICKER_ROWS);
    this.pickHint.textContent = !query.trim() ? "" : more > 0 ? t("inv.more", { n: more }) : hits.length === 0 && !typed ? t("inv.nobody") : "";
    this.pickHint.hidden = !this.pickHint.textContent;
    const courtName = (code: string): string => store.settings.courts.find((c) => c.code === code)?.name ?? code;
    const key = JSON.stringify([
      currentLang(),
      this.pickActive,
      this.picks.map((p) => (p.user ? [p.id, p.user.user.name, p.user.user.role, p.user.user.court, p.user.state] : [p.id])),
    ]);
    keyed(this.pickList, key, () =>
      this.picks.map((p, i) => {
        const selected = i === this.pickActive;
        const c = p.user;
        const option = h(
          "li",
          {
            class: selected ? "inv-option active" : "inv-option",
            role: "option",
            id: this.optionId(p.id),
            "aria-selected": String(selected),
            "data-user": p.id,
          },
          ...(c
            ? [
                h("span", { class: "who" }, c.user.name),
                h("span", { class: "inv-role" }, t(`role.${c.user.role}` as TextKey)),
                h("span", { class: "inv-court" }, courtName(c.user.court)),
                h("span", { class: `inv-presence state-${c.state}` }, this.presence(c)),
              ]
            : [h("span", { class: "who" }, t("inv.by_id", { id: p.id }))]),
        );
        // mousedown, not click: a redraw between press and release would swallow the click,
        // and the field keeps the focus for the next pick.
        option.addEventListener("mousedown", (e) => {
          e.preventDefault();
          void this.pick(i);
        });
        return option;
      }),
    );
  }

  private optionId(user: string): string {
    return `inv-opt-${user.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  }

  /** An officer's presence, or an operator's status, in words. */
  private presence(c: Candidate): string {
    if (c.user.role === "officer") return t(c.state === "online" ? "status.online" : "status.away");
    return t(`operators.${c.state}` as TextKey);
  }

  private pickKey(e: KeyboardEvent): void {
    const n = this.picks.length;
    if (e.key === "ArrowDown" && n > 0) {
      this.pickActive = (this.pickActive + 1) % n;
    } else if (e.key === "ArrowUp" && n > 0) {
      this.pickActive = this.pickActive <= 0 ? n - 1 : this.pickActive - 1;
    } else if (e.key === "Enter") {
      e.preventDefault();
      // Enter with one row only picks it; with more, the row the arrows are on.
      const at = this.pickActive >= 0 ? this.pickActive : n === 1 ? 0 : -1;
      if (at >= 0) void this.pick(at);
      return;
    } else if (e.key === "Escape") {
      this.pickInput.value = "";
      this.pickActive = -1;
    } else {
      return;
    }
    e.preventDefault();
    this.renderPicker();
    // The list scrolls (16em): keep the row the arrows are on in sight.
    const active = this.picks[this.pickActive];
    if (active) document.getElementById(this.optionId(active.id))?.scrollIntoView({ block: "nearest" });
  }

  /** Ring the row's user into the conference; the invitation then shows in the list. */
  private async pick(at: number): Promise<void> {
    const chosen = this.picks[at];
    if (!chosen) return;
    this.pickInput.value = "";
    this.pickActive = -1;
    this.renderPicker();
    await this.store.moderate("invite", chosen.id);
  }

  private renderWitnesses(): void {
    const store = this.store;
    const desk = store.moderation;
    const issued = desk.issued;
    const key = JSON.stringify([
      currentLang(),
      issued?.witness_id ?? null,
      desk.witnesses.map((w) => [w.witness_id, w.revoked_at, w.expires_at < Date.now()]),
    ]);
    keyed(this.witnessPanel, key, () => {
      this.witnessName.setAttribute("aria-label", t("wit.name"));
      this.witnessName.placeholder = t("wit.name");
      this.witnessLabel.setAttribute("aria-label", t("wit.label"));
      if (!this.witnessLabel.value) this.witnessLabel.value = t("wit.label_default");
      this.witnessHours.setAttribute("aria-label", t("wit.expires"));
      const chosen = this.witnessHours.value || "4";
      this.witnessHours.replaceChildren(...WITNESS_HOURS.map((n) => h("option", { value: String(n) }, t("wit.hours", { n }))));
      this.witnessHours.value = chosen;
      const form = h(
        "form",
        { class: "mod-host wit-form" },
        this.witnessName,
        this.witnessLabel,
        this.witnessHours,
        h("button", { type: "submit", class: "accept" }, t("wit.issue")),
      );
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const name = this.witnessName.value.trim();
        const label = this.witnessLabel.value.trim();
        if (!name || !label) return;
        void store.witnesses("invite", { name, label, expiresInS: Number(this.witnessHours.value) * 3600 }).then(() => {
          this.witnessName.value = "";
        });
      });
      const time = (ms: number): string => new Date(ms).toLocaleString(currentLang() === "zh" ? "zh-CN" : "en-GB", { hour12: false });
      return [
        h("h3", { id: "witness-heading" }, t("wit.title")),
        form,
        issued ? this.issuedBox(issued.name, issued.link) : null,
        desk.witnesses.length
          ? h(
              "ul",
              { class: "wit-list", "aria-label": t("wit.title") },
              ...desk.witnesses.map((w) =>
                h(
                  "li",
                  { class: "queue-item wit-item", "aria-label": w.name },
                  h("span", { class: "who" }, t("wit.entry", { name: w.name, label: w.label })),
                  h(
                    "span",
                    { class: "mod-state" },
                    w.revoked_at !== null ? t("wit.revoked") : w.expires_at < Date.now() ? t("wit.expired") : t("wit.valid_until", { time: time(w.expires_at) }),
                  ),
                  w.revoked_at === null ? button(t("wit.revoke"), () => store.witnesses("revoke", { id: w.witness_id }), "danger small") : null,
                ),
              ),
            )
          : h("p", { class: "empty" }, t("wit.none")),
      ];
    });
  }

  /** The link just issued, as a QR code drawn in the page (the `qrcode` package; a data:
   * PNG, which the pages' policy allows) and as text to copy. */
  private issuedBox(name: string, link: string): HTMLElement {
    const img = h("img", { class: "wit-qr", alt: t("wit.qr"), width: "180", height: "180" });
    void QRCode.toDataURL(link, { errorCorrectionLevel: "M", margin: 4, width: 180 }).then((url) => {
      img.src = url;
    });
    const text = h("input", { type: "text", readonly: true, class: "wit-link", "aria-label": t("wit.link") });
    text.value = link;
    return h("figure", { class: "wit-issued" }, img, h("figcaption", {}, t("wit.issued", { name })), text);
  }
}
