// The video wall: 1, 4, 9 or 16 officers' cameras at once, for one court, rotating through
// its online officers every `wall_rotate_s`. Each tile is a watch (docs/protocol.md,
// *Watching an officer*): `watch` names the officer, the reply's watch id names a receive-only
// media session with the server (one CallMedia per tile), and `unwatch` ends it when the
// tile moves on or the wall closes. The server ends every watch when our connection goes, so
// after a reconnect the wall simply watches again. Tiles and their <video> elements live as
// long as the view, so a redraw or a rotation never rebuilds a playing element.
// The server is told how many tiles show (`wall_layout`, 1 while a tile is enlarged) before
// any watch of that layout, so that each officer sends no more than a tile shows
// (`video_policy` to their phone): 180 lines at 12 fps for a tile of sixteen.

import { button, h, keyed } from "../dom";
import { currentLang, t } from "../i18n";
import { CallMedia } from "../media";
import type { RosterEntry } from "../protocol";
import type { Store } from "../store";

export const LAYOUTS = [1, 4, 9, 16] as const;
const LAYOUT_KEY = "cc.wall.layout";
// A watch the server refused (the officer just went, a rate limit) is asked again after this.
const RETRY_MS = 5000;

interface Feed {
  officer: string;
  watchId: string | null;
  media: CallMedia | null;
  error: string | null;
}

interface Tile {
  el: HTMLElement;
  video: HTMLVideoElement;
  label: HTMLElement;
  state: HTMLElement;
  actions: HTMLElement;
  officer: string | null;
}

export interface WallTileState {
  officer: string | null;
  label: string;
  state: "live" | "connecting" | "no_video" | "empty";
  watchId: string | null;
  videoWidth: number;
  videoHeight: number;
  currentTime: number;
}

/** For tests: what one tile's receiver decoded so far (its inbound-rtp statistics). */
export interface WallFeedStats {
  officer: string;
  frameHeight: number;
  framesDecoded: number;
  /** When the statistics were taken, ms. */
  at: number;
}

export class WallView {
  readonly el: HTMLElement;
  /** The top bar's button that opens and closes the wall. */
  readonly toggle: HTMLButtonElement;
  open = false;
  court: string | null = null;
  layout: number;
  /** Where in the court's online officers the first tile starts. */
  offset = 0;
  enlarged: string | null = null;
  private nextRotateAt = 0;
  private readonly feeds = new Map<string, Feed>();
  private readonly retryAfter = new Map<string, number>();
  private readonly tiles: Tile[] = [];
  private readonly title = h("h2", { id: "wall-heading" });
  private readonly courtSelect = h("select", { "aria-labelledby": "wall-court-label" });
  private readonly courtLabel = h("label", { id: "wall-court-label" });
  private readonly layoutBar = h("div", { class: "wall-layouts", role: "group" });
  private readonly rotation = h("span", { class: "wall-rotation" });
  private readonly next: HTMLButtonElement;
  private readonly grid = h("div", { class: "wall-grid" });
  private readonly empty = h("p", { class: "wall-empty" });
  private connected = false;
  /** The layout the server was last told since our connection (null: not yet told). */
  private toldTiles: number | null = null;

  constructor(private readonly store: Store) {
    const saved = Number(localStorage.getItem(LAYOUT_KEY));
    this.layout = (LAYOUTS as readonly number[]).includes(saved) ? saved : 4;
    this.toggle = button("", () => this.setOpen(!this.open), "secondary wall-toggle");
    this.next = button("", () => this.rotate(), "secondary small");
    this.courtSelect.addEventListener("change", () => {
      this.court = this.courtSelect.value;
      this.offset = 0;
      this.enlarged = null;
      this.restartClock();
      this.render();
    });
    for (let i = 0; i < LAYOUTS[LAYOUTS.length - 1]; i++) this.tiles.push(this.makeTile());
    this.grid.append(...this.tiles.map((tile) => tile.el));
    this.el = h(
      "section",
      { class: "panel wall", "aria-labelledby": "wall-heading", hidden: true },
      h(
        "div",
        { class: "wall-head" },
        this.title,
        this.courtLabel,
        this.courtSelect,
        this.layoutBar,
        this.rotation,
        this.next,
      ),
      this.empty,
      this.grid,
    );
    store.onWallPush = (msg) => {
      // Every welcome (a reconnect, or a new authority adopting the session) starts with no
      // watch at the server: ours are gone, and the tiles watch again.
      if (msg.type === "welcome") {
        for (const feed of [...this.feeds.values()]) this.drop(feed, false);
        // A new connection forgot the layout too: told again before the next watch.
        this.toldTiles = null;
      }
      if (msg.type === "offer") this.feedOf(msg.call_id)?.media?.serverOffer(msg.sdp);
      if (msg.type === "media_restart") {
        // The watch's media moved to another worker: the same watch, a new peer connection.
        const feed = this.feedOf(msg.call_id);
        if (feed?.media) {
          feed.media.close();
          feed.media = new CallMedia(this.store.hub, msg.call_id, null, () => this.render());
          void feed.media.start();
        }
      }
      if (msg.type === "watch_ended") {
        const feed = this.feedOf(msg.watch_id);
        if (feed) {
          this.drop(feed, false);
          this.retryAfter.set(feed.officer, Date.now() + RETRY_MS);
        }
      }
    };
  }

  /** Pull one officer's video: the wall opens on their court with their tile large. */
  pull(officerId: string): void {
    const entry = this.store.roster.get(officerId);
    if (!entry) return;
    this.court = entry.officer.court;
    this.open = true;
    this.enlarged = officerId;
    this.render();
  }

  setOpen(open: boolean): void {
    this.open = open;
    this.enlarged = null;
    if (open) this.restartClock();
    this.render();
  }

  /** The court's online officers, in a stable order (by name, then id). */
  candidates(): RosterEntry[] {
    return [...this.store.roster.values()]
      .filter((e) => e.status === "online" && e.officer.court === this.court)
      .sort((a, b) => a.officer.name.localeCompare(b.officer.name, "zh-CN") || a.officer.id.localeCompare(b.officer.id));
  }

  /** Who the tiles show now: `layout` officers from `offset`, wrapping round. */
  shown(): RosterEntry[] {
    const all = this.candidates();
    if (this.enlarged) return all.filter((e) => e.officer.id === this.enlarged);
    const n = Math.min(this.layout, all.length);
    const start = all.length > 0 ? this.offset % all.length : 0;
    return Array.from({ length: n }, (_, i) => all[(start + i) % all.length]);
  }

  rotate(): void {
    const all = this.candidates();
    if (all.length > this.layout) this.offset = (this.offset + this.layout) % all.length;
    this.restartClock();
    this.render();
  }

  render(): void {
    const store = this.store;
    this.toggle.textContent = this.open ? t("wall.close") : t("wall.open");
    this.toggle.setAttribute("aria-pressed", String(this.open));
    this.el.hidden = !this.open;
    document.body.classList.toggle("wall-open", this.open);
    const wasConnected = this.connected;
    this.connected = store.connection === "connected";
    if (wasConnected && !this.connected) {
      // The server ended our watches with the connection: forget them, watch again later.
      for (const feed of [...this.feeds.values()]) this.drop(feed, false);
      this.toldTiles = null;
    }
    if (!this.open) {
      for (const feed of [...this.feeds.values()]) this.drop(feed, true);
      return;
    }
    const courts = store.settings.courts;
    if (this.court === null || !courts.some((c) => c.code === this.court)) {
      this.court = courts.find((c) => c.code === store.user?.court)?.code ?? courts[0]?.code ?? store.user?.court ?? null;
    }
    this.renderHead();
    if (Date.now() >= this.nextRotateAt && !this.enlarged) this.rotate();
    const shown = this.shown();
    if (this.connected) {
      const officers = shown.map((e) => e.officer.id);
      // Unwatched first: a tile enlarged lifts the cap of its officer only, not of the
      // fifteen being let go.
      this.release(officers);
      this.tellLayout(this.enlarged ? 1 : this.layout);
      this.reconcile(officers);
    }
    this.empty.textContent = t("wall.none");
    this.empty.hidden = this.candidates().length > 0;
    this.grid.className = `wall-grid wall-${this.enlarged ? 1 : this.layout}`;
    this.tiles.forEach((tile, i) => this.renderTile(tile, i < (this.enlarged ? 1 : this.layout) ? shown[i] ?? null : undefined));
  }

  /** What each visible tile shows, for the tests. */
  state(): { open: boolean; court: string | null; layout: number; offset: number; tiles: WallTileState[] } {
    const visible = this.enlarged ? 1 : this.layout;
    return {
      open: this.open,
      court: this.court,
      layout: this.layout,
      offset: this.offset,
      tiles: this.tiles.slice(0, visible).map((tile) => ({
        officer: tile.officer,
        label: tile.label.textContent ?? "",
        state: (tile.el.dataset.state ?? "empty") as WallTileState["state"],
        watchId: tile.officer ? (this.feeds.get(tile.officer)?.watchId ?? null) : null,
        videoWidth: tile.video.videoWidth,
        videoHeight: tile.video.videoHeight,
        currentTime: tile.video.currentTime,
      })),
    };
  }

  /** For tests: each live feed's decoded video, from its receiver's statistics. */
  async feedStats(): Promise<WallFeedStats[]> {
    const found: WallFeedStats[] = [];
    for (const feed of this.feeds.values()) {
      if (!feed.media) continue;
      const report = await feed.media.pc.getStats();
      report.forEach((s: { type: string; kind?: string; frameHeight?: number; framesDecoded?: number; timestamp: number }) => {
        if (s.type === "inbound-rtp" && s.kind === "video") {
          found.push({ officer: feed.officer, frameHeight: s.frameHeight ?? 0, framesDecoded: s.framesDecoded ?? 0, at: s.timestamp });
        }
      });
    }
    return found;
  }

  // ---- internals ----------------------------------------------------------------------

  private restartClock(): void {
    this.nextRotateAt = Date.now() + this.store.settings.wall_rotate_s * 1000;
  }

  private renderHead(): void {
    const store = this.store;
    const all = this.candidates();
    this.title.textContent = t("wall.title");
    this.courtLabel.textContent = t("wall.court");
    const courts = store.settings.courts;
    keyed(this.courtSelect, JSON.stringify([courts.map((c) => c.code), currentLang()]), () =>
      courts.map((c) => h("option", { value: c.code }, c.name)),
    );
    if (this.court !== null && this.courtSelect.value !== this.court) this.courtSelect.value = this.court;
    const layouts = LAYOUTS.filter((n) => n <= Math.max(1, store.settings.wall_max_feeds));
    keyed(this.layoutBar, JSON.stringify([layouts, this.layout, currentLang()]), () =>
      layouts.map((n) => {
        const b = button(t("wall.layout_n", { n }), () => this.setLayout(n), n === this.layout ? "small" : "secondary small");
        b.setAttribute("aria-pressed", String(n === this.layout));
        return b;
      }),
    );
    this.layoutBar.setAttribute("aria-label", t("wall.layout"));
    this.rotation.textContent = t("wall.rotate", { s: store.settings.wall_rotate_s, n: all.length });
    this.next.textContent = t("wall.next");
    this.next.disabled = all.length <= this.layout || !!this.enlarged;
  }

  /** Tell the server how many tiles show, once per change: sent before the watches of the
   * layout (one socket, in order), so they are capped from their first frame. */
  private tellLayout(tiles: number): void {
    if (this.toldTiles === tiles) return;
    this.toldTiles = tiles;
    this.store.hub.request("wall_layout", { tiles }).catch(() => {
      // Not told (the connection went): the next welcome tells it again.
      if (this.toldTiles === tiles) this.toldTiles = null;
    });
  }

  private setLayout(n: number): void {
    this.layout = n;
    localStorage.setItem(LAYOUT_KEY, String(n));
    this.enlarged = null;
    this.restartClock();
    this.render();
  }

  private courtName(code: string): string {
    return this.store.settings.courts.find((c) => c.code === code)?.name ?? code;
  }

  private makeTile(): Tile {
    const video = h("video", { autoplay: true, playsinline: true });
    video.muted = true; // a wall shows; it does not play sixteen rooms' sound
    const label = h("span", { class: "wall-label" });
    const state = h("span", { class: "wall-state" });
    const actions = h("span", { class: "wall-actions" });
    const el = h("figure", { class: "wall-tile", "data-state": "empty" }, video, h("figcaption", {}, label, state, actions));
    const tile: Tile = { el, video, label, state, actions, officer: null };
    video.addEventListener("click", () => this.toggleEnlarged(tile.officer));
    video.addEventListener("resize", () => this.render());
    return tile;
  }

  private toggleEnlarged(officer: string | null): void {
    if (!officer) return;
    this.enlarged = this.enlarged === officer ? null : officer;
    if (!this.enlarged) this.restartClock();
    this.render();
  }

  /** `entry`: the officer the tile shows; null: an empty tile of the layout; undefined: a
   * tile outside the layout (hidden). */
  private renderTile(tile: Tile, entry: RosterEntry | null | undefined): void {
    tile.el.hidden = entry === undefined;
    const officer = entry?.officer ?? null;
    tile.officer = officer?.id ?? null;
    const feed = officer ? this.feeds.get(officer.id) : undefined;
    const stream = feed?.media?.remote.get(officer?.id ?? "") ?? null;
    if (tile.video.srcObject !== stream) tile.video.srcObject = stream;
    let state: WallTileState["state"] = "empty";
    if (officer) {
      if (stream && tile.video.videoWidth > 0) state = "live";
      else if (feed?.error || feed?.media?.error || feed?.media?.pc.connectionState === "failed") state = "no_video";
      else state = "connecting";
    }
    tile.el.dataset.state = state;
    tile.el.classList.toggle("enlarged", !!officer && this.enlarged === officer.id);
    const label = officer ? `${officer.name} · ${this.courtName(officer.court)}` : "";
    tile.label.textContent = label;
    tile.video.setAttribute("aria-label", officer ? t("wall.tile", { name: officer.name, court: this.courtName(officer.court) }) : "");
    tile.state.textContent = officer ? t(`wall.${state}` as "wall.live") : "";
    keyed(tile.actions, JSON.stringify([tile.officer, this.enlarged === tile.officer, currentLang()]), () =>
      officer
        ? [
            button(this.enlarged === officer.id ? t("wall.shrink") : t("wall.enlarge"), () => this.toggleEnlarged(officer.id), "secondary small"),
            button(t("wall.call"), () => this.store.callOfficer(officer), "small"),
          ]
        : [],
    );
  }

  private feedOf(watchId: string): Feed | undefined {
    return [...this.feeds.values()].find((f) => f.watchId === watchId);
  }

  /** Watch exactly `officers`: stop what no tile shows first (the server bounds how many
   * we watch at once), then start the new ones. */
  private reconcile(officers: string[]): void {
    this.release(officers);
    const now = Date.now();
    for (const officer of officers) {
      const feed = this.feeds.get(officer);
      if ((this.retryAfter.get(officer) ?? 0) > now) continue;
      // A refused or failed watch shows "no video" until it is asked again.
      const failed = feed && (feed.error || feed.media?.pc.connectionState === "failed");
      if (feed && !failed) continue;
      if (feed) this.drop(feed, true);
      void this.watch(officer);
    }
  }

  /** Stop watching whoever is not in `officers`. */
  private release(officers: string[]): void {
    const wanted = new Set(officers);
    for (const feed of [...this.feeds.values()]) if (!wanted.has(feed.officer)) this.drop(feed, true);
  }

  private async watch(officer: string): Promise<void> {
    const feed: Feed = { officer, watchId: null, media: null, error: null };
    this.feeds.set(officer, feed);
    try {
      const reply = await this.store.hub.request("watch", { officer });
      const watchId = String(reply.watch_id);
      if (this.feeds.get(officer) !== feed) {
        // The tile moved on while we asked.
        this.store.hub.request("unwatch", { watch_id: watchId }).catch(() => {});
        return;
      }
      feed.watchId = watchId;
      feed.media = new CallMedia(this.store.hub, watchId, null, () => this.render());
      await feed.media.start();
    } catch (err) {
      feed.error = err instanceof Error ? err.message : String(err);
      this.retryAfter.set(officer, Date.now() + RETRY_MS);
    }
    this.render();
  }

  private drop(feed: Feed, unwatch: boolean): void {
    if (this.feeds.get(feed.officer) === feed) this.feeds.delete(feed.officer);
    feed.media?.close();
    if (unwatch && feed.watchId && this.connected) {
      this.store.hub.request("unwatch", { watch_id: feed.watchId }).catch(() => {});
    }
  }
}
