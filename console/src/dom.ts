// A little DOM building: elements with text set through textContent (names come from
// tokens and must never be parsed as HTML) and no inline styles (the CSP forbids them).

type Attrs = Record<string, string | boolean | ((e: Event) => void) | undefined>;
type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === "function") el.addEventListener(name.replace(/^on/, ""), value);
    else if (value === true) el.setAttribute(name, "");
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child);
  }
  return el;
}

export function button(label: string, onClick: () => unknown, cls = ""): HTMLButtonElement {
  return h("button", { type: "button", class: cls, onclick: () => void onClick() }, label);
}

/**
 * Rebuild `el`'s children only when `key` (what they show) changed. A redraw that rebuilt a
 * button between the press and the release of the mouse would swallow the click, and the
 * console redraws every second for its clocks: what changes every second is updated in
 * place instead (see `ticking`).
 */
export function keyed(el: HTMLElement, key: string, build: () => Child[]): void {
  if (el.dataset.key === key) return;
  el.dataset.key = key;
  el.replaceChildren(...build().filter((c): c is Node | string => c !== null && c !== undefined && c !== false));
}

/** An element whose text is recomputed on every redraw without being replaced. */
export function ticking<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs,
  text: () => string,
  cls?: () => string,
): HTMLElementTagNameMap[K] {
  const el = h(tag, attrs, text());
  const base = el.className;
  tickers.add(() => {
    if (!el.isConnected) {
      return false;
    }
    el.textContent = text();
    if (cls) el.className = `${base} ${cls()}`.trim();
    return true;
  });
  if (cls) el.className = `${base} ${cls()}`.trim();
  return el;
}

const tickers = new Set<() => boolean>();

/** Update every ticking element on the page; forget those no longer in it. */
export function tick(): void {
  for (const update of [...tickers]) if (!update()) tickers.delete(update);
}
