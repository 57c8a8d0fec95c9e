// The map: officers' live positions and the courts, on Leaflet. With a tile server
// (`[console] tile_url`) it draws its tiles; without one, or when it does not answer, an
// offline map: no background, a latitude/longitude grid with a scale, the courts and the
// officers, so that positions still show relative to each other and to the courts.
// Hundreds of officers are clustered (leaflet.markercluster): a bubble with a count stands
// for those too close to tell apart at this zoom, its ring coloured by what they are doing
// (in a call, signal lost, emergency, the rest online) with a badge for each that is not
// plain online, so a bubble of 100 says that 3 are in calls without a click. An officer with
// an emergency, and the one selected, are never in a cluster: their marker sits on the map
// itself, always seen. A position older than `[console] position_stale_s` (the phone's clock,
// corrected to the server's) is stale: its marker is grey with 旧位, and a bubble says how many
// of its officers' positions are stale; re-judged as time passes, not only on a report.

import * as L from "leaflet";
import "leaflet.markercluster";
import "leaflet/dist/leaflet.css";
import "leaflet.markercluster/dist/MarkerCluster.css";
import "leaflet.markercluster/dist/MarkerCluster.Default.css";

import { h } from "../dom";
import { t } from "../i18n";
import type { RosterEntry } from "../protocol";
import type { Store } from "../store";
import { statusKey } from "./roster";

// A tile server that has loaded no tile this long after the map opened is taken as down.
const TILE_TIMEOUT_MS = 8000;
const TILE_ERRORS_BEFORE_OFFLINE = 4;
const FOCUS_ZOOM = 15;
const MAX_ZOOM = 19;
// Where the map opens with nothing to show: mainland China.
const HOME: L.LatLngTuple = [33, 110];
// Clusters up to this many pixels across; none from CLUSTER_UNTIL_ZOOM on (a street's
// officers one by one).
const CLUSTER_RADIUS_PX = 60;
const CLUSTER_UNTIL_ZOOM = 17;

// The ring's colours, in the ring's order from the top, clockwise; the rest is online.
const RING = { emergency: "#c62828", in_call: "#1565c0", away: "#90a4ae" } as const;
const ONLINE = "#1e7d3a";
type Busy = keyof typeof RING;
// How often stale positions are judged again (a position ages without any message).
const STALE_CHECK_MS = 5000;

// The plugin extends the global L that Leaflet sets, not this module's namespace object.
function clusterGroup(bubble: (cluster: L.MarkerCluster) => L.DivIcon): L.MarkerClusterGroup {
  const global = (window as unknown as { L: typeof L }).L;
  return global.markerClusterGroup({
    maxClusterRadius: CLUSTER_RADIUS_PX,
    disableClusteringAtZoom: CLUSTER_UNTIL_ZOOM,
    chunkedLoading: true,
    showCoverageOnHover: false,
    iconCreateFunction: bubble,
  });
}

/** What an officer on the map is doing, as the bubble counts it (the roster's order). */
function busyOf(entry: RosterEntry | undefined): Busy | null {
  if (!entry) return null;
  if (entry.emergency) return "emergency";
  if (entry.status === "away") return "away";
  return entry.call_id ? "in_call" : null;
}

/** Whether `entry`'s position is older than `staleMs` at `nowMs` (the server's clock). */
export function isStale(entry: RosterEntry | undefined, nowMs: number, staleMs: number): boolean {
  return !!entry?.position && nowMs - entry.position.device_time > staleMs;
}

interface OfficerMarker {
  marker: L.Marker;
  label: HTMLElement;
  dot: HTMLElement;
  /** The 旧位 badge, shown while the position is stale. */
  staleBadge: HTMLElement;
  stale: boolean;
  /** What its cluster's bubble counts it as, when it was last drawn. */
  busy: Busy | null;
  /** Drawn on the map itself (an emergency, the selection) rather than in the cluster group. */
  alone: boolean;
  lat: number;
  lon: number;
}

export class MapView {
  readonly el: HTMLElement;
  readonly map: L.Map;
  offline = true;
  private readonly mapEl = h("div", { class: "map", role: "region" });
  private readonly banner = h("p", { class: "map-offline", role: "note" });
  private readonly officers = new Map<string, OfficerMarker>();
  private readonly cluster = clusterGroup((c) => this.bubble(c));
  // Which officer each clustered marker is, for the bubbles' counts.
  private readonly markerIds = new WeakMap<L.Marker, string>();
  private readonly courts = L.layerGroup();
  private readonly grid = L.layerGroup();
  private tiles: L.TileLayer | null = null;
  // The selected officer's track of today, and which track it is (redrawn only on change).
  private readonly trackLayer = L.layerGroup();
  private drawnTrack: Store["track"] = null;
  private readonly trackNote = h("p", { class: "map-track", role: "status" });
  private fitted = false;
  // Until the person moves the map, a resize (a call opening, a phone's width) re-frames it on
  // the officer it jumped to, or on everyone.
  private focused: string | null = null;
  private moved = false;

  constructor(private readonly store: Store) {
    this.el = h("section", { class: "panel map-panel" }, this.mapEl, this.banner, this.trackNote);
    // maxZoom set here, not only by a tile layer: the offline map has none, and the
    // cluster group needs to know how far the map zooms.
    this.map = L.map(this.mapEl, { zoomControl: true, attributionControl: true, worldCopyJump: true, maxZoom: MAX_ZOOM }).setView(HOME, 5);
    L.control.scale({ imperial: false }).addTo(this.map);
    this.courts.addTo(this.map);
    this.cluster.addTo(this.map);
    this.trackLayer.addTo(this.map);
    this.map.on("moveend", () => this.drawGrid());
    this.map.on("dragstart", () => {
      this.moved = true;
    });
    this.mapEl.addEventListener("wheel", () => {
      this.moved = true;
    });
    new ResizeObserver(() => this.resized()).observe(this.mapEl);
    window.setInterval(() => this.judgeStale(), STALE_CHECK_MS);
  }

  private staleNow(entry: RosterEntry | undefined): boolean {
    return isStale(entry, this.store.serverNow(), this.store.settings.position_stale_s * 1000);
  }

  /** Positions age without a message: each marker judged again, its bubble redrawn when it
   * changed. */
  private judgeStale(): void {
    for (const [id, m] of this.officers) this.markStale(m, this.staleNow(this.store.roster.get(id)));
  }

  private markStale(m: OfficerMarker, stale: boolean): void {
    m.staleBadge.hidden = !stale;
    m.label.parentElement?.classList.toggle("is-stale", stale);
    if (m.stale === stale) return;
    m.stale = stale;
    if (!m.alone) this.cluster.refreshClusters(m.marker);
  }

  private resized(): void {
    this.map.invalidateSize({ pan: false });
    if (this.moved) return;
    if (this.focused) this.focus(this.focused);
    else this.fitAll();
  }

  /** After the settings arrive: tiles if configured, the courts' markers. */
  configure(): void {
    const settings = this.store.settings;
    if (settings.tile_url) this.useTiles(settings.tile_url, settings.tile_attribution);
    else this.goOffline();
    this.courts.clearLayers();
    for (const court of settings.courts) {
      if (!court.position) continue;
      const label = h("span", { class: "court-label" }, court.name);
      const icon = L.divIcon({ className: "court-marker", html: h("span", {}, h("span", { class: "court-dot" }), label), iconSize: [0, 0], iconAnchor: [0, 0] });
      L.marker([court.position.lat, court.position.lon], { icon, keyboard: false, title: t("map.court", { name: court.name }) }).addTo(this.courts);
    }
    this.fitAll();
  }

  private useTiles(url: string, attribution: string): void {
    this.offline = false;
    let loaded = false;
    let errors = 0;
    const tiles = L.tileLayer(url, { attribution, maxZoom: MAX_ZOOM });
    tiles.on("tileload", () => {
      loaded = true;
    });
    tiles.on("tileerror", () => {
      errors += 1;
      if (!loaded && errors >= TILE_ERRORS_BEFORE_OFFLINE) this.goOffline();
    });
    tiles.addTo(this.map);
    this.tiles = tiles;
    window.setTimeout(() => {
      if (!loaded) this.goOffline();
    }, TILE_TIMEOUT_MS);
  }

  private goOffline(): void {
    if (this.tiles) {
      this.tiles.remove();
      this.tiles = null;
    }
    this.offline = true;
    this.mapEl.classList.add("offline");
    this.grid.addTo(this.map);
    this.drawGrid();
    this.render();
  }

  // A graticule at a round step, about eight lines across whatever is in view.
  private drawGrid(): void {
    if (!this.offline) return;
    this.grid.clearLayers();
    const b = this.map.getBounds();
    const span = Math.max(b.getEast() - b.getWest(), 1e-6);
    const raw = span / 8;
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
    const south = Math.max(b.getSouth(), -85);
    const north = Math.min(b.getNorth(), 85);
    const line = { color: "#9aa7b5", weight: 1, opacity: 0.6, interactive: false };
    for (let lon = Math.floor(b.getWest() / step) * step; lon <= b.getEast(); lon += step) {
      L.polyline([[south, lon], [north, lon]], line).addTo(this.grid);
    }
    for (let lat = Math.floor(south / step) * step; lat <= north; lat += step) {
      L.polyline([[lat, b.getWest()], [lat, b.getEast()]], line).addTo(this.grid);
    }
  }

  render(): void {
    this.banner.textContent = t("map.offline");
    this.banner.hidden = !this.offline;
    this.mapEl.setAttribute("aria-label", t("map.title"));
    const seen = new Set<string>();
    for (const entry of this.store.roster.values()) {
      if (!entry.position) continue;
      seen.add(entry.officer.id);
      this.place(entry);
    }
    for (const [id, m] of this.officers) {
      if (!seen.has(id)) {
        this.detach(m);
        this.officers.delete(id);
      }
    }
    if (!this.fitted && this.officers.size > 0) this.fitAll();
    this.drawTrack();
  }

  // The track as a line from the first position to the last, its start marked; framed once
  // when it is first shown.
  private drawTrack(): void {
    const track = this.store.track;
    const name = track ? (this.store.roster.get(track.officerId)?.officer.name ?? track.officerId) : "";
    this.trackNote.hidden = !track;
    if (track) {
      this.trackNote.textContent = track.points.length === 0 ? t("map.trackEmpty") : t("map.track", { name, count: track.points.length });
    }
    if (track === this.drawnTrack) return;
    this.drawnTrack = track;
    this.trackLayer.clearLayers();
    if (!track || track.points.length === 0) return;
    const line: L.LatLngTuple[] = track.points.map((p) => [p.lat, p.lon]);
    L.polyline(line, { color: "#c2410c", weight: 4, opacity: 0.85, className: "officer-track" }).addTo(this.trackLayer);
    L.circleMarker(line[0], { radius: 5, color: "#c2410c", fillOpacity: 1, className: "officer-track-start" }).addTo(this.trackLayer);
    this.moved = true;
    if (line.length === 1) this.map.setView(line[0], Math.max(this.map.getZoom(), FOCUS_ZOOM), { animate: false });
    else this.map.fitBounds(L.latLngBounds(line), { padding: [60, 60], maxZoom: FOCUS_ZOOM, animate: false });
  }

  /** For tests: the track drawn, as [lat, lon] pairs. */
  trackDrawn(): [number, number][] {
    return this.drawnTrack ? this.drawnTrack.points.map((p) => [p.lat, p.lon]) : [];
  }

  private place(entry: RosterEntry): void {
    const pos = entry.position;
    if (!pos) return;
    const id = entry.officer.id;
    const alone = entry.emergency || this.store.selected === id;
    let m = this.officers.get(id);
    if (!m) {
      const dot = h("span", { class: "officer-dot" });
      const label = h("span", { class: "officer-label" });
      const staleBadge = h("span", { class: "officer-stale" });
      staleBadge.hidden = true;
      const html = h("span", { class: "officer-pin", "data-officer": id }, dot, label, staleBadge);
      const icon = L.divIcon({ className: "officer-marker", html, iconSize: [0, 0], iconAnchor: [0, 0] });
      const marker = L.marker([pos.lat, pos.lon], { icon, riseOnHover: true });
      marker.on("click", () => this.store.select(id));
      this.markerIds.set(marker, id);
      m = { marker, label, dot, staleBadge, stale: false, busy: busyOf(entry), alone, lat: pos.lat, lon: pos.lon };
      this.attach(m);
      this.officers.set(id, m);
    }
    if (m.alone !== alone || m.lat !== pos.lat || m.lon !== pos.lon) {
      // The cluster group places a marker when it is added: a move, or an emergency raised
      // or cleared, is a removal and an addition (to the group, or to the map itself).
      this.detach(m);
      m.alone = alone;
      m.lat = pos.lat;
      m.lon = pos.lon;
      m.marker.setLatLng([pos.lat, pos.lon]);
      this.attach(m);
    }
    const busy = busyOf(entry);
    if (m.busy !== busy) {
      m.busy = busy;
      // The bubble holding it counts it differently now: drawn again (markercluster keeps
      // a bubble's icon until told).
      if (!m.alone) this.cluster.refreshClusters(m.marker);
    }
    m.label.textContent = entry.officer.name;
    m.staleBadge.textContent = t("map.stale");
    this.markStale(m, this.staleNow(entry));
    const pin = m.label.parentElement;
    pin?.setAttribute("aria-label", t("map.officer", { name: entry.officer.name }));
    pin?.setAttribute("title", `${entry.officer.name} · ${t(statusKey(entry))}`);
    pin?.classList.toggle("is-emergency", entry.emergency);
    pin?.classList.toggle("is-away", entry.status === "away");
    pin?.classList.toggle("is-selected", this.store.selected === id);
    m.marker.setZIndexOffset(entry.emergency ? 1000 : 0);
  }

  private attach(m: OfficerMarker): void {
    if (m.alone) m.marker.addTo(this.map);
    else this.cluster.addLayer(m.marker);
  }

  private detach(m: OfficerMarker): void {
    if (m.alone) m.marker.remove();
    else this.cluster.removeLayer(m.marker);
  }

  /** A cluster's bubble: the count in the middle, a ring whose arcs are the shares of
   * officers in an emergency, in a call and with their signal lost (the rest online), and
   * a badge with the number of each of those, so that a person reads it without colours. */
  private bubble(cluster: L.MarkerCluster): L.DivIcon {
    const children = cluster.getAllChildMarkers();
    const total = children.length;
    const counts: Record<Busy, number> = { emergency: 0, in_call: 0, away: 0 };
    // Stale is apart from what they are doing: an officer in a call may have an old position.
    let stale = 0;
    for (const marker of children) {
      const id = this.markerIds.get(marker);
      const entry = id ? this.store.roster.get(id) : undefined;
      const busy = busyOf(entry);
      if (busy) counts[busy] += 1;
      if (id && this.officers.get(id)?.stale) stale += 1;
    }
    const kinds = (Object.keys(RING) as Busy[]).filter((k) => counts[k] > 0);
    const parts = kinds.map((k) => t(`map.cluster.${k}`, { n: counts[k] }));
    if (stale > 0) parts.push(t("map.cluster.stale", { n: stale }));
    const label = parts.length ? t("map.cluster.busy", { n: total, parts: parts.join(t("map.cluster.sep")) }) : t("map.cluster", { n: total });
    const ring = h("span", { class: "cluster-ring" }, h("span", { class: "cluster-count" }, String(total)));
    // Arcs through the CSSOM (the policy's style-src governs style attributes, not this).
    let from = 0;
    const stops: string[] = [];
    for (const k of kinds) {
      const to = from + (counts[k] / total) * 100;
      stops.push(`${RING[k]} ${from}% ${to}%`);
      from = to;
    }
    stops.push(`${ONLINE} ${from}% 100%`);
    ring.style.background = `conic-gradient(${stops.join(", ")})`;
    const badges = h("span", { class: "cluster-badges" }, ...kinds.map((k) => h("span", { class: `cluster-badge is-${k}`, "data-kind": k, "data-count": String(counts[k]) }, t(`map.cluster.badge.${k}`, { n: counts[k] }))));
    if (stale > 0) badges.append(h("span", { class: "cluster-badge is-stale", "data-kind": "stale", "data-count": String(stale) }, t("map.cluster.badge.stale", { n: stale })));
    const html = h("span", { class: "cluster-bubble", role: "img", "aria-label": label, title: label }, ring, badges);
    const size = total < 10 ? 36 : total < 100 ? 42 : 48;
    html.classList.add(`cluster-${size}`);
    return L.divIcon({ html, className: "marker-cluster cluster-status", iconSize: L.point(size, size) });
  }

  /** For tests: the clusters drawn now, each as how many officers it holds, and the
   * officers drawn on their own (an emergency, the selection, or one far enough from the
   * others); officers out of view are in neither. */
  clusters(): { clusters: number[]; alone: string[] } {
    const clusters = new Set<L.MarkerCluster>();
    const alone: string[] = [];
    for (const [id, m] of this.officers) {
      const parent = m.alone ? m.marker : this.cluster.getVisibleParent(m.marker);
      if (parent === m.marker) alone.push(id);
      else if (parent) clusters.add(parent as L.MarkerCluster);
    }
    return { clusters: [...clusters].map((c) => c.getChildCount()).sort((a, b) => b - a), alone };
  }

  /** Every officer and court in view. */
  fitAll(): void {
    const points: L.LatLngTuple[] = [];
    for (const e of this.store.roster.values()) if (e.position) points.push([e.position.lat, e.position.lon]);
    for (const c of this.store.settings.courts) if (c.position) points.push([c.position.lat, c.position.lon]);
    if (points.length === 0) return;
    this.fitted = this.officers.size > 0;
    if (points.length === 1) this.map.setView(points[0], FOCUS_ZOOM, { animate: false });
    else this.map.fitBounds(L.latLngBounds(points), { padding: [60, 60], maxZoom: FOCUS_ZOOM, animate: false });
  }

  /** Jump to an officer (an emergency, a selection). */
  focus(officerId: string): void {
    const pos = this.store.roster.get(officerId)?.position;
    if (!pos) return;
    this.fitted = true;
    this.focused = officerId;
    this.moved = false;
    // No animation: a jump in an emergency should be at once, and an animation under way
    // would be cut short by the next resize anyway.
    this.map.setView([pos.lat, pos.lon], Math.max(this.map.getZoom(), FOCUS_ZOOM), { animate: false });
  }

  /** For tests: the officers drawn on the map, by id. */
  drawn(): string[] {
    return [...this.officers.keys()];
  }
}
