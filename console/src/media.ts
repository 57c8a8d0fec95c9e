/*
 * One call's media: ONE RTCPeerConnection with the server (docs/protocol.md, *Media
 * negotiation*). We offer our microphone (talk back); the server answers, then offers the
 * other members' tracks, each stream named by its publisher's user id. Every negotiation step
 * runs on one promise chain, so a server offer is never applied while ours awaits its answer.
 */

import type { Hub } from "./protocol";

export class CallMedia {
  readonly pc: RTCPeerConnection;
  /** Publisher user id -> their stream. */
  readonly remote = new Map<string, MediaStream>();
  error: string | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private answered = false;
  private held: RTCIceCandidateInit[] = [];
  private closed = false;
  // Our camera's sender: there from the start (no renegotiation to turn the camera on),
  // sending nothing while the camera is off.
  private camera: RTCRtpTransceiver | null = null;

  constructor(
    private readonly hub: Hub,
    readonly callId: string,
    readonly local: MediaStream | null,
    private readonly changed: () => void,
    private readonly sendsVideo = false,
  ) {
    this.pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
    this.pc.onicecandidate = (e) => this.localCandidate(e.candidate);
    this.pc.ontrack = (e) => {
      const stream = e.streams[0] ?? new MediaStream([e.track]);
      this.remote.set(stream.id, stream);
      stream.onremovetrack = () => {
        if (stream.getTracks().length === 0) this.remote.delete(stream.id);
        this.changed();
      };
      this.changed();
    };
    this.pc.onconnectionstatechange = () => this.changed();
  }

  start(): Promise<unknown> {
    const tracks = this.local?.getTracks() ?? [];
    if (this.local && tracks.length > 0) {
      for (const track of tracks) this.pc.addTransceiver(track, { direction: "sendonly", streams: [this.local] });
    } else {
      // An offer needs at least one m-line; with nothing to send we ask for audio.
      this.pc.addTransceiver("audio", { direction: "recvonly" });
    }
    if (this.sendsVideo) this.camera = this.pc.addTransceiver("video", { direction: "sendonly" });
    return this.run(async () => {
      await this.pc.setLocalDescription();
      const reply = await this.hub.request("offer", { call_id: this.callId, sdp: this.pc.localDescription?.sdp });
      await this.pc.setRemoteDescription({ type: "answer", sdp: String(reply.sdp) });
      this.answered = true;
      for (const c of this.held.splice(0)) this.sendCandidate(c);
    });
  }

  serverOffer(sdp: string): Promise<unknown> {
    return this.run(async () => {
      await this.pc.setRemoteDescription({ type: "offer", sdp });
      await this.pc.setLocalDescription();
      await this.hub.request("answer", { call_id: this.callId, sdp: this.pc.localDescription?.sdp });
    });
  }

  setMuted(muted: boolean): void {
    for (const track of this.local?.getAudioTracks() ?? []) track.enabled = !muted;
  }

  /** Send `track` as our camera, or (null) stop sending video. */
  async setCamera(track: MediaStreamTrack | null): Promise<void> {
    await this.camera?.sender.replaceTrack(track);
  }

  close(): void {
    this.closed = true;
    this.pc.close();
    for (const track of this.local?.getTracks() ?? []) track.stop();
    this.remote.clear();
  }

  async inboundStats(): Promise<Record<string, unknown>[]> {
    const out: Record<string, unknown>[] = [];
    (await this.pc.getStats()).forEach((s: Record<string, unknown>) => {
      if (s.type !== "inbound-rtp") return;
      out.push({
        kind: s.kind,
        packetsReceived: s.packetsReceived,
        framesDecoded: s.framesDecoded,
        frameWidth: s.frameWidth,
        totalAudioEnergy: s.totalAudioEnergy,
      });
    });
    return out;
  }

  private localCandidate(candidate: RTCIceCandidate | null): void {
    const c: RTCIceCandidateInit = candidate ? candidate.toJSON() : { candidate: "", sdpMid: null, sdpMLineIndex: null };
    // The server ignores mDNS (.local) names; sending them would only cost messages.
    if (c.candidate?.includes(".local ")) return;
    if (this.answered) this.sendCandidate(c);
    else this.held.push(c);
  }

  private sendCandidate(c: RTCIceCandidateInit): void {
    const fields: Record<string, unknown> = { call_id: this.callId, candidate: c.candidate ?? "" };
    if (c.sdpMid != null) fields.sdp_mid = c.sdpMid;
    if (c.sdpMLineIndex != null) fields.sdp_mline_index = c.sdpMLineIndex;
    this.hub.request("ice_candidate", fields).catch((err: Error) => this.failed(err));
  }

  private run(step: () => Promise<unknown>): Promise<unknown> {
    this.chain = this.chain.then(() => (this.closed ? undefined : step())).catch((err: Error) => this.failed(err));
    return this.chain;
  }

  private failed(err: Error): void {
    if (this.closed) return;
    this.error = err.message;
    this.changed();
  }
}

/**
 * The microphone for talking back, or why there is none (we still receive without it):
 * "insecure" when the page is not HTTPS (browsers then offer no microphone at all), else the
 * browser's error name: NotAllowedError when the permission is refused, NotFoundError when
 * there is no microphone, NotReadableError when another program holds it.
 */
export async function microphone(): Promise<{ stream: MediaStream | null; problem: string | null }> {
  if (!window.isSecureContext || !navigator.mediaDevices) return { stream: null, problem: "insecure" };
  try {
    return { stream: await navigator.mediaDevices.getUserMedia({ audio: true }), problem: null };
  } catch (err) {
    return { stream: null, problem: err instanceof DOMException ? err.name : "Error" };
  }
}
