// An evidence item's position on a small map in the item view, on Leaflet as the console's
// map (views/map.ts): the configured tile server's tiles, or, without one or when it does
// not answer, the offline map: no background, a latitude/longitude grid and a scale. The
// point is marked, with its accuracy as a circle when the phone gave one.

import * as L from "leaflet";
import "leaflet/dist/leaflet.css";

import { h } from "../dom";
import type { Position } from "./api";
import { rt } from "./text";

const ZOOM = 16;
const MAX_ZOOM = 19;
// A tile server that loads no tile this long after the map opened is taken as down.
const TILE_TIMEOUT_MS = 8000;
const TILE_ERRORS_BEFORE_OFFLINE = 4;
const MARK = "#c62828";

export interface Tiles {
  url: string;
  attribution: string;
}

export class ItemMap {
  readonly el: HTMLElement;
  private readonly mapEl = h("div", { class: "rec-map" });
  private readonly note = h("p", { class: "rec-map-note", role: "note" });
  private readonly map: L.Map;
  private readonly grid = L.layerGroup();
  private tiles: L.TileLayer | null = null;
  private offline = false;

  constructor(position: Position, tiles: Tiles | null) {
    const point = L.latLng(position.lat, position.lon);
    const label = rt("ev.map_point", { lat: position.lat.toFixed(6), lon: position.lon.toFixed(6) });
    this.mapEl.setAttribute("role", "img");
    this.mapEl.setAttribute("aria-label", rt("ev.map"));
    this.mapEl.dataset.lat = String(position.lat);
    this.mapEl.dataset.lon = String(position.lon);
    this.el = h("figure", { class: "rec-map-box" }, this.mapEl, this.note);
    this.note.hidden = true;
    this.map = L.map(this.mapEl, { zoomControl: false, attributionControl: tiles !== null, maxZoom: MAX_ZOOM });
    L.control.zoom({ zoomInTitle: rt("ev.map_zoom_in"), zoomOutTitle: rt("ev.map_zoom_out") }).addTo(this.map);
    L.control.scale({ imperial: false }).addTo(this.map);
    if (position.accuracy_m !== null && position.accuracy_m > 0) {
      L.circle(point, { radius: position.accuracy_m, color: MARK, weight: 1, fillOpacity: 0.15, interactive: false }).addTo(this.map);
    }
    L.circleMarker(point, { radius: 7, color: "#fff", weight: 2, fillColor: MARK, fillOpacity: 1 })
      .bindTooltip(label)
      .addTo(this.map);
    this.map.setView(point, ZOOM);
    this.map.on("moveend", () => this.drawGrid());
    if (tiles?.url) this.useTiles(tiles);
    else this.goOffline();
    // Made before it is in the page, so laid out later: Leaflet measures its box then, and
    // the point is centred once there is a box to centre it in.
    let placed = false;
    new ResizeObserver(() => {
      this.map.invalidateSize({ pan: false });
      if (!placed && this.mapEl.clientWidth > 0) {
        placed = true;
        this.map.setView(point, ZOOM, { animate: false });
      }
    }).observe(this.mapEl);
  }

  private useTiles(tiles: Tiles): void {
    let loaded = false;
    let errors = 0;
    const layer = L.tileLayer(tiles.url, { attribution: tiles.attribution, maxZoom: MAX_ZOOM });
    layer.on("tileload", () => {
      loaded = true;
    });
    layer.on("tileerror", () => {
      errors += 1;
      if (!loaded && errors >= TILE_ERRORS_BEFORE_OFFLINE) this.goOffline();
    });
    layer.addTo(this.map);
    this.tiles = layer;
    window.setTimeout(() => {
      if (!loaded) this.goOffline();
    }, TILE_TIMEOUT_MS);
  }

  private goOffline(): void {
    if (this.offline) return;
    this.tiles?.remove();
    this.tiles = null;
    this.offline = true;
    this.mapEl.classList.add("offline");
    this.mapEl.dataset.offline = "true";
    this.note.textContent = rt("ev.map_offline");
    this.note.hidden = false;
    this.grid.addTo(this.map);
    this.drawGrid();
  }

  // A graticule at a round step, about six lines across whatever is in view.
  private drawGrid(): void {
    if (!this.offline) return;
    this.grid.clearLayers();
    const b = this.map.getBounds();
    const span = Math.max(b.getEast() - b.getWest(), 1e-6);
    const raw = span / 6;
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude;
    const line = { color: "#9aa7b5", weight: 1, opacity: 0.6, interactive: false };
    for (let lon = Math.floor(b.getWest() / step) * step; lon <= b.getEast(); lon += step) {
      L.polyline([[b.getSouth(), lon], [b.getNorth(), lon]], line).addTo(this.grid);
    }
    for (let lat = Math.floor(b.getSouth() / step) * step; lat <= b.getNorth(); lat += step) {
      L.polyline([[lat, b.getWest()], [lat, b.getEast()]], line).addTo(this.grid);
    }
  }

  remove(): void {
    this.map.remove();
  }
}
