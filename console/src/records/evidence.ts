// The evidence browser: a search (case number, officer, court, period) answered by the
// server a page at a time, and an item with its hash, times, clock offset, position, its
// call, its audit trail, its position on a small map, the original shown in the page and
// hashed here (SHA-256 with @noble/hashes, read as it arrives, so a long recording is never
// held whole and no secure context is needed), downloads with proof, and the chain check
// run on the server (from where the last one ended, or in full).

import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex } from "@noble/hashes/utils.js";

import { button, h } from "../dom";
import type { CourtPlace } from "../store";
import { ApiError, type ChainCheck, type EvidenceAudit, type EvidenceItem, type RecordsApi, when } from "./api";
import { courtSelect, facts, field, type Names, reindexing, status, table, textInput } from "./form";
import { ItemMap, type Tiles } from "./itemmap";
import { named, rt } from "./text";

const PAGE = 20;

export class EvidenceView {
  readonly el: HTMLElement;
  private readonly caseInput = textInput("case");
  private readonly officerInput = textInput("officer");
  private readonly court: HTMLSelectElement;
  private readonly from = textInput("from", "date");
  private readonly to = textInput("to", "date");
  private readonly state = status();
  private readonly list = h("div", { class: "rec-list" });
  private readonly pager = h("div", { class: "rec-pager" });
  private readonly detail = h("section", { class: "rec-detail", "aria-label": rt("ev.detail") });
  private offset = 0;
  private lastCheck: ChainCheck | null = null;
  private shownUrl: string | null = null;
  private itemMap: ItemMap | null = null;
  current: EvidenceAudit | null = null;

  constructor(
    private readonly api: RecordsApi,
    courts: () => CourtPlace[],
    private readonly names: Names,
    private readonly openCall: (callId: string) => void,
    private readonly tiles: () => Tiles | null = () => null,
  ) {
    this.court = courtSelect(courts);
    // Before the first search the page is not empty without a word: it says what to do.
    this.state.textContent = rt("ev.hint");
    const form = h(
      "form",
      { class: "rec-form", role: "search" },
      field(rt("form.case"), this.caseInput),
      field(rt("form.officer"), this.officerInput),
      field(rt("form.court"), this.court),
      field(rt("form.from"), this.from),
      field(rt("form.to"), this.to),
      h("button", { type: "submit" }, rt("form.search")),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.offset = 0;
      void this.search();
    });
    this.el = h(
      "section",
      { class: "rec-view", "aria-label": rt("ev.title") },
      h("h2", {}, rt("ev.title")),
      form,
      this.state,
      h("div", { class: "rec-split" }, h("div", {}, this.list, this.pager), this.detail),
    );
  }

  async search(): Promise<void> {
    this.state.textContent = rt("form.loading");
    const params = {
      case: this.caseInput.value,
      officer: this.officerInput.value,
      court: this.court.value,
      from: this.from.value,
      to: this.to.value,
      limit: String(PAGE),
      offset: String(this.offset),
    };
    if (!Object.entries(params).some(([k, v]) => k !== "limit" && k !== "offset" && v.trim())) {
      // The server wants at least one term: an empty search is the last 90 days.
      const since = new Date(Date.now() - 90 * 86400_000);
      params.from = since.toISOString().slice(0, 10);
    }
    try {
      const found = await this.api.search(params);
      await this.names.load(found.items.map((item) => item.uploader));
      this.state.textContent = found.total
        ? rt("page.range", { a: found.offset + 1, b: found.offset + found.items.length, n: found.total })
        : rt("page.none");
      this.list.replaceChildren(this.rows(found.items));
      this.pager.replaceChildren(
        button(rt("page.prev"), () => this.page(-PAGE), "secondary"),
        button(rt("page.next"), () => this.page(PAGE), "secondary"),
      );
      const [prev, next] = this.pager.querySelectorAll("button");
      prev.disabled = found.offset === 0;
      next.disabled = found.offset + found.items.length >= found.total;
    } catch (err) {
      this.state.textContent = rt("form.failed", { reason: (err as Error).message });
    }
  }

  private page(delta: number): Promise<void> {
    this.offset = Math.max(0, this.offset + delta);
    return this.search();
  }

  private rows(items: EvidenceItem[]): HTMLTableElement {
    return table(
      [rt("ev.col.time"), rt("ev.col.case"), rt("ev.col.officer"), rt("ev.col.court"), rt("ev.col.kind"), rt("ev.col.hash")],
      items.map((item) => [
        button(when(item.received_at), () => this.open(item.evidence_id), "link"),
        item.case_number,
        this.names.user(item.uploader),
        this.names.court(item.court),
        named("kind", item.kind),
        h("code", {}, item.sha256.slice(0, 12)),
      ]),
    );
  }

  async open(evidenceId: string): Promise<void> {
    try {
      const audit = await this.api.evidenceAudit(evidenceId);
      await this.names.load([audit.item.uploader, ...audit.records.map((r) => String(r.data.user ?? r.data.requested_by ?? ""))]);
      this.current = audit;
      this.lastCheck = null;
      this.showDetail(audit);
      void this.preview(audit.item);
    } catch (err) {
      this.state.textContent = rt("form.failed", { reason: (err as Error).message });
    }
  }

  private showDetail(audit: EvidenceAudit): void {
    const item = audit.item;
    const offset =
      item.clock_offset_ms === null
        ? rt("ev.offset_none", { reason: named("unverified", item.time_unverified_reason ?? "") })
        : `${item.clock_offset_ms.toFixed(0)} ms`;
    const pos = item.position
      ? `${item.position.lat.toFixed(6)}, ${item.position.lon.toFixed(6)}` +
        (item.position.accuracy_m !== null ? ` (±${item.position.accuracy_m} m)` : "")
      : rt("ev.position_none");
    const call = audit.call
      ? h("span", {}, h("code", {}, audit.call), " ", button(rt("ev.call_open"), () => this.openCall(audit.call as string), "link"))
      : rt("audit.none");
    const verdict = status();
    const trail = table(
      [rt("col.seq"), rt("col.at"), rt("col.event"), rt("col.who"), rt("col.hash")],
      audit.records.map((r) => [
        `#${r.seq}`,
        when(r.at),
        named("event", r.kind),
        this.names.user(String(r.data.user ?? r.data.requested_by ?? "")),
        h("code", {}, r.hash.slice(0, 12)),
      ]),
      "rec-trail",
    );
    this.itemMap?.remove();
    this.itemMap = item.position ? new ItemMap(item.position, this.tiles()) : null;
    this.detail.replaceChildren(
      h("h3", {}, rt("ev.detail")),
      ...reindexing(audit.reindex_remaining),
      facts([
        [rt("ev.id"), h("code", {}, item.evidence_id)],
        [rt("ev.sha256"), h("code", { class: "hash" }, item.sha256)],
        [rt("ev.capture"), when(item.capture_time / 1000)],
        [rt("ev.received"), when(item.received_at)],
        [rt("ev.offset"), offset],
        [rt("ev.position"), this.itemMap ? h("div", {}, pos, this.itemMap.el) : pos],
        [rt("ev.col.case"), item.case_number],
        [rt("ev.col.officer"), this.names.user(item.uploader)],
        [rt("ev.col.court"), this.names.court(item.court)],
        // As the phone or the server gave them: data, not words to translate.
        [rt("ev.device"), h("span", { translate: "no" }, item.device)],
        [rt("ev.file"), h("span", { translate: "no" }, `${item.file_name} · ${item.media_type} · ${item.size} B`)],
        [rt("ev.call"), call],
      ]),
      h("div", { class: "rec-preview", "aria-label": rt("ev.preview") }),
      h("p", { class: "rec-local rec-status", "aria-label": rt("ev.local") }),
      h(
        "div",
        { class: "rec-actions" },
        button(rt("ev.download"), () => this.download(item)),
        button(rt("ev.proof"), () => this.proof(audit), "secondary"),
        button(rt("ev.verify"), () => this.verify(verdict, false), "secondary"),
        button(rt("ev.verify_full"), () => this.verify(verdict, true), "secondary"),
      ),
      verdict,
      h("h4", {}, rt("ev.trail")),
      trail,
    );
  }

  private async preview(item: EvidenceItem): Promise<void> {
    const box = this.detail.querySelector(".rec-preview");
    if (!box) return;
    const major = item.media_type.split("/")[0];
    if (major === "video" || major === "audio") {
      // Streamed, not fetched whole: the element asks for ranges as it plays and seeks,
      // with the token in the player's cookie (an element cannot send the header), each a
      // part of one recorded view rather than a download.
      const src = await this.api.view(item.evidence_id);
      box.replaceChildren(h(major, { src, controls: true, preload: "metadata", "aria-label": item.file_name }));
      const out = this.detail.querySelector<HTMLElement>(".rec-local");
      if (out) out.textContent = rt("ev.local_recording");
      // A part cannot be checked against the whole file's hash: the whole file, on request
      // (a download in the trace), read as it arrives.
      const check = button(rt("ev.local_check"), () => void this.streamCheck(item, check), "secondary");
      this.detail.querySelector(".rec-actions")?.prepend(check);
      return;
    }
    const blob = await this.api.content(item.evidence_id);
    if (this.shownUrl) URL.revokeObjectURL(this.shownUrl);
    const url = (this.shownUrl = URL.createObjectURL(blob));
    const hasher = sha256.create();
    hasher.update(new Uint8Array(await blob.arrayBuffer()));
    this.showLocal(bytesToHex(hasher.digest()), item);
    if (major === "image") box.replaceChildren(h("img", { src: url, alt: item.file_name }));
  }

  /** The whole recording fetched and hashed piece by piece as it arrives. */
  private async streamCheck(item: EvidenceItem, check: HTMLButtonElement): Promise<void> {
    const out = this.detail.querySelector<HTMLElement>(".rec-local");
    if (!out) return;
    check.disabled = true;
    try {
      const resp = await this.api.contentResponse(item.evidence_id);
      const reader = resp.body?.getReader();
      const hasher = sha256.create();
      let read = 0;
      out.textContent = rt("ev.local_hashing", { pct: 0 });
      if (reader) {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          hasher.update(value);
          read += value.length;
          out.textContent = rt("ev.local_hashing", { pct: Math.floor((100 * read) / Math.max(item.size, 1)) });
        }
      } else {
        hasher.update(new Uint8Array(await resp.arrayBuffer()));
      }
      this.showLocal(bytesToHex(hasher.digest()), item);
    } catch (err) {
      out.textContent = rt("form.failed", { reason: (err as Error).message });
    } finally {
      check.disabled = false;
    }
  }

  /** The bytes this page received, hashed here, against the record: 一致 or 不一致. */
  private showLocal(hex: string, item: EvidenceItem): void {
    const out = this.detail.querySelector<HTMLElement>(".rec-local");
    if (!out || this.current?.item.evidence_id !== item.evidence_id) return;
    out.dataset.sha256 = hex;
    out.dataset.ok = String(hex === item.sha256);
    out.textContent = hex === item.sha256 ? rt("ev.local_ok") : rt("ev.local_bad", { hash: hex });
  }

  private async download(item: EvidenceItem): Promise<void> {
    save(await this.api.content(item.evidence_id), item.file_name);
  }

  /** The item's proof: its record, its audit trail with each record's hash, and the last
   * chain check run here; with `commandcenter audit verify --anchor SEQ:HASH` anyone can
   * check the trail against the trace. */
  private proof(audit: EvidenceAudit): void {
    const proof = {
      evidence_id: audit.item.evidence_id,
      sha256: audit.item.sha256,
      item: audit.item,
      call: audit.call,
      records: audit.records,
      anchors: audit.records.map((r) => `${r.seq}:${r.hash}`),
      chain_check: this.lastCheck,
      made_at: new Date().toISOString(),
    };
    const text = JSON.stringify(proof, null, 2);
    save(new Blob([text], { type: "application/json" }), `${audit.item.evidence_id}-proof.json`);
  }

  private async verify(out: HTMLElement, full: boolean): Promise<void> {
    out.textContent = rt("ev.verifying");
    delete out.dataset.ok;
    try {
      const check = await this.api.verify(full);
      this.lastCheck = check;
      out.dataset.ok = String(check.ok);
      out.dataset.full = String(check.full);
      if (!check.ok) {
        out.textContent = rt("ev.verify_bad", { seq: check.seq ?? "?", problem: named("problem", check.problem ?? "") });
      } else if (check.full) {
        out.textContent = rt("ev.verify_ok_full", { n: check.checked, seq: check.head_seq });
      } else {
        out.textContent = rt("ev.verify_ok_since", { from: check.from_seq + 1, n: check.checked, seq: check.head_seq, before: check.from_seq });
      }
    } catch (err) {
      const code = err instanceof ApiError ? err.code : "";
      out.textContent =
        code === "checkpoint_invalid" ? rt("ev.verify_refused") : code === "busy" ? rt("ev.verify_busy") : rt("form.failed", { reason: (err as Error).message });
    }
  }
}

function save(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
