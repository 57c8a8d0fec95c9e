// The call in progress: the officer's video large, our talk-back microphone with mute, our
// camera (off until turned on: the video sender is there from the start and sends nothing;
// the others are told with set_camera), add a supervisor, push into a conference, and
// hang up. Its media (one RTCPeerConnection with the server) starts when the store has an
// active call and stops when it has none. The <video> elements live as long as the view, so
// a redraw never interrupts playback.

import { button, h, keyed } from "../dom";
import { currentLang, t, type TextKey } from "../i18n";
import { CallMedia, microphone } from "../media";
import type { Store } from "../store";
import { ShareControl } from "./supervision";
import { TransferControl } from "./transfers";

export class CallView {
  readonly el: HTMLElement;
  media: CallMedia | null = null;
  private muted = false;
  private starting: string | null = null;
  private readonly title = h("h2", { id: "call-heading" });
  private readonly info = h("p", { class: "call-info" });
  // The server records every call it relays (GET /api/console/settings `recording`): said
  // in the call, as a body camera's red light says it.
  private readonly recording = h("span", { class: "recording", role: "status", hidden: true });
  private readonly video = h("video", { class: "call-video", autoplay: true, playsinline: true });
  private readonly audio = h("audio", { autoplay: true });
  private readonly waiting = h("p", { class: "call-waiting" });
  private readonly talk = h("span", { class: "talk" });
  private readonly controls = h("div", { class: "call-controls" });
  private readonly shots = h("ul", { class: "snapshots" });
  // Why we cannot talk back (the microphone refused, or the page not HTTPS), said plainly.
  private readonly micProblem = h("p", { class: "media-problem", role: "alert", hidden: true });
  private problem: string | null = null;
  private readonly transfer: TransferControl;
  private readonly share: ShareControl;
  // Our camera while it is on (stopped when off, so that its light goes out too).
  private camera: MediaStreamTrack | null = null;
  private cameraBusy = false;
  private readonly selfView = h("video", { class: "call-self", autoplay: true, playsinline: true, hidden: true });

  constructor(private readonly store: Store) {
    this.video.muted = true; // sound goes through the <audio>, so the video may autoplay
    this.transfer = new TransferControl(store);
    this.share = new ShareControl(store);
    this.selfView.muted = true;
    this.el = h(
      "section",
      { class: "panel call", "aria-labelledby": "call-heading", hidden: true },
      h("div", { class: "call-head" }, this.title, this.recording, this.info),
      h("div", { class: "call-stage" }, this.video, this.waiting, this.selfView, this.audio),
      this.micProblem,
      h("div", { class: "call-bar" }, this.talk, this.shots, this.transfer.el, this.share.el, this.controls),
    );
    store.onMediaPush = (msg) => {
      if (msg.type === "offer" && this.media?.callId === msg.call_id) void this.media.serverOffer(msg.sdp);
      // The server moved the call's media (its worker died): a new peer connection, offered again.
      if (msg.type === "media_restart" && this.media?.callId === msg.call_id) {
        this.stop();
        void this.start(msg.call_id);
      }
    };
  }

  render(): void {
    const store = this.store;
    const call = store.call;
    this.el.hidden = !call;
    document.body.classList.toggle("in-call", !!call);
    if (!call) {
      this.stop();
      return;
    }
    if (this.media?.callId !== call.call_id) void this.start(call.call_id);
    const court = store.settings.courts.find((c) => c.code === call.officer.court)?.name ?? call.officer.court;
    this.title.textContent = t("call.title");
    const parts = [t("call.with", { name: call.officer.name, court })];
    if (call.case_number) parts.push(t("call.case", { case: call.case_number }));
    const watching = call.supervisors.filter((s) => s.id !== store.user?.id).map((s) => s.name);
    if (watching.length) parts.push(t("call.supervisors", { names: watching.join("、") }));
    if (this.media) {
      const state = t(`media.${this.media.pc.connectionState}` as TextKey);
      parts.push(t("call.media", { state: this.media.error ? `${state} (${this.media.error})` : state }));
    }
    this.info.textContent = parts.join(" · ");
    this.recording.hidden = !store.settings.recording;
    this.recording.textContent = t("call.recording");
    const officerStream = this.media?.remote.get(call.officer.id) ?? null;
    if (this.video.srcObject !== officerStream) this.video.srcObject = officerStream;
    const heard = this.media ? new MediaStream([...this.media.remote.values()].flatMap((s) => s.getAudioTracks())) : null;
    const audioIds = heard?.getTracks().map((tr) => tr.id).join() ?? "";
    if (this.audio.dataset.tracks !== audioIds) {
      this.audio.dataset.tracks = audioIds;
      this.audio.srcObject = heard;
    }
    // A camera the officer turned off shows as such, not as its last frame.
    const officerCameraOff = store.camerasOff.has(call.officer.id);
    this.waiting.textContent = officerCameraOff
      ? t("call.officer_camera_off", { name: call.officer.name })
      : officerStream
        ? ""
        : t("call.no_video");
    this.waiting.hidden = !!officerStream && !officerCameraOff;
    this.video.classList.toggle("camera-off", officerCameraOff);
    // The operator, and a supervisor who joined openly, talk back; a silent one only listens.
    const party = store.speaks();
    const talking = party && this.problem === null;
    this.talk.textContent = !party
      ? t("call.monitor")
      : !talking
        ? t("media.listening_only")
        : this.muted
          ? t("call.muted")
          : t("call.talk");
    this.talk.classList.toggle("is-muted", this.muted || !talking);
    this.micProblem.hidden = this.problem === null;
    this.micProblem.textContent =
      this.problem === null ? "" : this.problem === "insecure" ? t("media.insecure") : t("media.denied", { name: this.problem });
    this.renderShots(call.call_id);
    this.transfer.render();
    this.share.render();
    const cameraOn = this.camera !== null;
    this.selfView.hidden = !cameraOn;
    this.selfView.setAttribute("aria-label", t("call.my_camera"));
    const operator = call.operator?.id === store.user?.id;
    keyed(this.controls, JSON.stringify([currentLang(), talking, party, this.muted, cameraOn, operator]), () => [
      button(t("call.snapshot"), () => store.snapshot(), "secondary"),
      talking ? button(this.muted ? t("call.unmute") : t("call.mute"), () => this.toggleMute(), "secondary") : "",
      party ? button(cameraOn ? t("call.camera_off") : t("call.camera_on"), () => this.toggleCamera(), "secondary") : "",
      operator ? button(t("call.invite"), () => store.inviteSupervisor(), "secondary") : "",
      button(t("call.hangup"), () => store.hangup(), "danger"),
    ]);
  }

  // The call's stills, each with the start of its hash; rebuilt only when one is added or
  // fetched, so the images do not flicker on every redraw.
  private renderShots(callId: string): void {
    const shots = this.store.snapshots.filter((s) => s.callId === callId).slice(-3);
    const key = shots.map((s) => `${s.evidenceId}:${s.url ? 1 : 0}`).join();
    if (this.shots.dataset.key === key) return;
    this.shots.dataset.key = key;
    this.shots.replaceChildren(
      ...shots.map((s) =>
        h(
          "li",
          { class: "snapshot", title: s.sha256 },
          s.url ? h("img", { src: s.url, alt: t("call.snapshot_alt", { id: s.evidenceId }) }) : "",
          h("span", {}, t("call.snapshot_taken", { hash: s.sha256.slice(0, 12) })),
        ),
      ),
    );
  }

  /** Camera on: ask for it and send it; off: stop sending and release it. The others are
   * told either way (set_camera), so that they show "camera off", not a frozen frame. */
  private async toggleCamera(): Promise<void> {
    const media = this.media;
    if (!media || this.cameraBusy) return;
    this.cameraBusy = true;
    try {
      if (this.camera) {
        const track = this.camera;
        this.camera = null;
        await media.setCamera(null);
        track.stop();
        this.selfView.srcObject = null;
        await this.store.tellCamera(false);
      } else {
        let stream: MediaStream;
        try {
          stream = await navigator.mediaDevices.getUserMedia({ video: true });
        } catch (err) {
          this.store.notice(t("call.camera_problem", { name: err instanceof DOMException ? err.name : "Error" }));
          return;
        }
        const track = stream.getVideoTracks()[0];
        if (this.media !== media) {
          track.stop();
          return;
        }
        this.camera = track;
        this.selfView.srcObject = stream;
        await media.setCamera(track);
        await this.store.tellCamera(true);
      }
    } finally {
      this.cameraBusy = false;
      this.render();
    }
  }

  /** Whether we send our camera now (for the tests). */
  cameraOn(): boolean {
    return this.camera !== null;
  }

  private toggleMute(): void {
    this.muted = !this.muted;
    this.media?.setMuted(this.muted);
    this.render();
  }

  private async start(callId: string): Promise<void> {
    if (this.starting === callId) return;
    this.starting = callId;
    try {
      // The answering operator, and a supervisor who joined openly, talk back; a silent
      // monitor only listens (and the server forwards nothing of theirs anyway).
      const party = this.store.speaks();
      const mic = party ? await microphone() : { stream: null, problem: null };
      const local = mic.stream;
      this.problem = mic.problem;
      if (this.store.call?.call_id !== callId) {
        for (const track of local?.getTracks() ?? []) track.stop();
        return;
      }
      this.media?.close();
      this.muted = false;
      this.media = new CallMedia(this.store.hub, callId, local, () => this.render(), party);
      await this.media.start();
      // Our camera starts off: said at once, so the others show that, not a black picture.
      if (party) void this.store.tellCamera(false);
    } finally {
      this.starting = null;
      this.render();
    }
  }

  private stop(): void {
    if (!this.media) return;
    this.camera?.stop();
    this.camera = null;
    this.selfView.srcObject = null;
    this.media.close();
    this.media = null;
    this.problem = null;
    this.video.srcObject = null;
    this.audio.srcObject = null;
  }
}
