/*
 * Sounds generated in the page with WebAudio (no audio file): a two-tone siren for an
 * emergency, repeated until it is acknowledged, and a soft double ring for ordinary calls.
 * Browsers start audio only after the person has touched the page; until then `blocked()` is
 * true and the header offers a button that turns sound on.
 */

export type Sound = "none" | "ring" | "alarm";

export class Alarm {
  private ctx: AudioContext | null = null;
  private sound: Sound = "none";
  private timer: number | undefined;

  /** What plays now. */
  playing(): Sound {
    return this.sound;
  }

  running(): boolean {
    return this.ctx?.state === "running";
  }

  blocked(): boolean {
    return this.sound !== "none" && !this.running();
  }

  /** Call from a click: browsers let audio start only from a user gesture. */
  unlock(): void {
    this.context();
    void this.ctx?.resume().then(() => this.onChange?.());
  }

  /** Told when the sound becomes possible (the header drops its button). */
  onChange: (() => void) | null = null;

  play(sound: Sound): void {
    if (sound === this.sound) return;
    this.sound = sound;
    window.clearInterval(this.timer);
    if (sound === "none") return;
    const [every, pattern] = sound === "alarm" ? [1600, () => this.siren()] : [3000, () => this.ring()];
    pattern();
    this.timer = window.setInterval(pattern, every);
  }

  private context(): AudioContext {
    this.ctx ??= new AudioContext();
    return this.ctx;
  }

  private tone(freq: number, start: number, length: number, gain: number, type: OscillatorType): void {
    const ctx = this.context();
    if (ctx.state !== "running") void ctx.resume();
    const osc = ctx.createOscillator();
    const amp = ctx.createGain();
    osc.type = type;
    osc.frequency.value = freq;
    const t0 = ctx.currentTime + start;
    amp.gain.setValueAtTime(0, t0);
    amp.gain.linearRampToValueAtTime(gain, t0 + 0.02);
    amp.gain.setValueAtTime(gain, t0 + length - 0.03);
    amp.gain.linearRampToValueAtTime(0, t0 + length);
    osc.connect(amp).connect(ctx.destination);
    osc.start(t0);
    osc.stop(t0 + length);
  }

  // Alternating high and low square tones: nothing like a phone's ring.
  private siren(): void {
    for (let i = 0; i < 4; i++) this.tone(i % 2 === 0 ? 1046 : 698, i * 0.35, 0.33, 0.25, "square");
  }

  private ring(): void {
    this.tone(880, 0, 0.4, 0.12, "sine");
    this.tone(880, 0.55, 0.4, 0.12, "sine");
  }
}
