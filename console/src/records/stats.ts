// The statistics dashboard: the figures of `commandcenter stats` for a period and a court
// (the same query, so the same numbers), how each is counted, and charts per day and per
// court drawn with uPlot from the server's series.

import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import { h } from "../dom";
import type { CourtPlace } from "../store";
import { type RecordsApi, type StatsAnswer } from "./api";
import { courtSelect, field, lastWeek, status, textInput, withCode } from "./form";
import { explained, named, rt } from "./text";

// The figures charted: DOMAIN.md's headline ones.
const CHARTED = ["sign_ins", "command_connections", "evidence_items", "conferences"] as const;
const COLOURS = ["#1f6feb", "#d9480f", "#2b8a3e", "#9c36b5"];

export class StatsView {
  readonly el: HTMLElement;
  private readonly from = textInput("from", "date");
  private readonly to = textInput("to", "date");
  private readonly court: HTMLSelectElement;
  private readonly state = status();
  private readonly figures = h("div", { class: "rec-figures" });
  private readonly byDay = h("div", { class: "rec-chart", role: "img", "aria-label": rt("stats.by_day") });
  private readonly byCourt = h("div", { class: "rec-chart", role: "img", "aria-label": rt("stats.by_court") });
  private charts: uPlot[] = [];
  private readonly courtFigure = h("select", { name: "figure" });
  current: StatsAnswer | null = null;

  constructor(
    private readonly api: RecordsApi,
    private readonly courts: () => CourtPlace[],
  ) {
    this.court = courtSelect(courts);
    lastWeek(this.from, this.to);
    const form = h(
      "form",
      { class: "rec-form", role: "search" },
      field(rt("form.from"), this.from),
      field(rt("form.to"), this.to),
      field(rt("form.court"), this.court),
      h("button", { type: "submit" }, rt("form.search")),
    );
    for (const name of CHARTED) this.courtFigure.append(h("option", { value: name }, named("fig", name)));
    this.courtFigure.value = "evidence_items";
    this.courtFigure.addEventListener("change", () => this.current && this.showCharts(this.current));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.load();
    });
    this.el = h(
      "section",
      { class: "rec-view", "aria-label": rt("stats.title") },
      h("h2", {}, rt("stats.title")),
      form,
      this.state,
      h(
        "div",
        { class: "rec-stats" },
        this.figures,
        h("div", { class: "rec-charts" }, h("h3", {}, rt("stats.by_day")), this.byDay, h("h3", {}, rt("stats.by_court")), field(rt("stats.figure"), this.courtFigure), this.byCourt),
      ),
    );
  }

  async load(): Promise<void> {
    this.state.textContent = rt("form.loading");
    try {
      const answer = await this.api.stats({ from: this.from.value, to: this.to.value, court: this.court.value });
      this.current = answer;
      // Days and the court's name, not the wire's timestamps and court code.
      const court = answer.court === null ? rt("stats.all") : courtLabel(this.courts(), answer.court);
      this.state.textContent = rt("stats.over", { over: `${answer.from.slice(0, 10)} – ${answer.to.slice(0, 10)}, ${court}` });
      this.showFigures(answer);
      this.showCharts(answer);
    } catch (err) {
      this.state.textContent = rt("form.failed", { reason: (err as Error).message });
    }
  }

  private showFigures(answer: StatsAnswer): void {
    const rows = Object.entries(answer.figures).map(([name, value]) =>
      h(
        "tr",
        { "data-figure": name },
        h("th", { scope: "row" }, named("fig", name)),
        h("td", { class: "num", "aria-label": named("fig", name) }, value === null ? "–" : String(value)),
        h("td", { class: "how" }, h("code", {}, name), " ", ...withCode(explained(name, answer.how[name] ?? ""))),
      ),
    );
    this.figures.replaceChildren(
      h(
        "table",
        { class: "rec-table rec-figtable" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, rt("stats.figure")), h("th", { scope: "col" }, rt("stats.value")), h("th", { scope: "col" }, rt("stats.how")))),
        h("tbody", {}, ...rows),
      ),
      h("p", { class: "rec-over" }, rt("stats.over", { over: rt("stats.over_text") })),
    );
  }

  private showCharts(answer: StatsAnswer): void {
    for (const c of this.charts) c.destroy();
    this.charts = [];
    const width = Math.max(280, Math.min(900, this.byDay.clientWidth || 600));
    // Days and courts are categories: x is their index, labelled with the day or the name.
    const days = answer.by_day.map((d) => d.day.slice(5));
    const daily: uPlot.AlignedData = [
      days.map((_, i) => i),
      ...CHARTED.map((name) => answer.by_day.map((d) => d.figures[name] ?? 0)),
    ];
    this.charts.push(
      new uPlot(
        {
          width,
          height: 220,
          series: [
            { label: rt("col.at"), value: (_u, i) => days[i] ?? "" },
            ...CHARTED.map((name, i) => ({ label: named("fig", name), stroke: COLOURS[i], width: 2, points: { size: 6 } })),
          ],
          scales: { x: { time: false, range: [-0.5, Math.max(0.5, days.length - 0.5)] } },
          axes: [{ values: (_u, ticks) => ticks.map((i) => days[i] ?? ""), incrs: [1] }, {}],
        },
        daily,
        this.byDay,
      ),
    );
    // One figure per court, as bars: the one chosen beside the chart.
    const courts = answer.by_court;
    const figure = this.courtFigure.value || "evidence_items";
    const perCourt: uPlot.AlignedData = [courts.map((_, i) => i), courts.map((c) => c.figures[figure] ?? 0)];
    const bars = uPlot.paths.bars ? uPlot.paths.bars({ size: [0.6, 60] }) : undefined;
    this.charts.push(
      new uPlot(
        {
          width,
          height: 240,
          series: [
            { label: rt("ev.col.court"), value: (_u, i) => courts[i]?.name ?? "" },
            { label: named("fig", figure), stroke: COLOURS[0], fill: `${COLOURS[0]}aa`, paths: bars, points: { show: false } },
          ],
          scales: { x: { time: false, range: [-0.5, Math.max(0.5, courts.length - 0.5)] } },
          axes: [{ values: (_u, ticks) => ticks.map((i) => courts[i]?.name ?? ""), incrs: [1] }, {}],
        },
        perCourt,
        this.byCourt,
      ),
    );
  }
}

/** A court as the court pickers show it: its name, then its code. */
function courtLabel(courts: CourtPlace[], code: string): string {
  const name = courts.find((c) => c.code === code)?.name;
  return name ? `${name}（${code}）` : code;
}
