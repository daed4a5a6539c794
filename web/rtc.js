// One call: the peer connection, the `oai-events` channel, and the SDP exchange with the gateway.
//
// Events dispatched (all CustomEvent, details in `detail`):
//   "server"  a server event arrived                      detail: the parsed event
//   "client"  a client event was sent                     detail: the event
//   "state"   the peer connection state changed           detail: RTCPeerConnectionState
//   "open"    the data channel opened (events can flow)
//   "ended"   the call is over, whoever ended it          detail: {reason, error?}
import { hangup, postOffer } from "./api.js";

// A hangup normally takes milliseconds; past this the peer is closed anyway.
const HANGUP_WAIT_MS = 2000;

export class ConnectionFailedError extends Error {
  constructor(message) {
    super(message);
    this.name = "ConnectionFailedError";
  }
}

export class RealtimeCall extends EventTarget {
  constructor({ base, token, track, audioElement }) {
    super();
    this.base = base;
    this.token = token;
    this.track = track;
    this.audioElement = audioElement;
    this.pc = null;
    this.channel = null;
    this.callId = null;
    this.ended = false;
  }

  /** The GA flow of OpenAI's WebRTC guide, with the gateway as the URL. */
  async open() {
    const pc = new RTCPeerConnection();
    this.pc = pc;
    pc.addEventListener("track", (e) => {
      this.audioElement.srcObject = e.streams[0] ?? new MediaStream([e.track]);
    });
    pc.addEventListener("connectionstatechange", () => this.#onConnectionState());
    pc.addTrack(this.track);
    const channel = pc.createDataChannel("oai-events");
    this.channel = channel;
    channel.addEventListener("open", () => this.#emit("open"));
    channel.addEventListener("message", (e) => this.#onMessage(e.data));
    channel.addEventListener("close", () => this.#end("remote"));

    // No waiting for ICE gathering: the offer goes out at once, as OpenAI's clients do.
    await pc.setLocalDescription(await pc.createOffer());
    const answer = await postOffer(this.base, this.token, pc.localDescription.sdp);
    this.callId = answer.callId;
    if (this.ended) return;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  }

  send(event) {
    if (this.channel?.readyState !== "open") return false;
    this.channel.send(JSON.stringify(event));
    this.#emit("client", event);
    return true;
  }

  /** Switch microphones without renegotiating. */
  async replaceTrack(track) {
    this.track = track;
    const sender = this.pc?.getSenders().find((s) => s.track?.kind === "audio" || s.track === null);
    await sender?.replaceTrack(track);
  }

  getStats() {
    return this.pc ? this.pc.getStats() : Promise.resolve(null);
  }

  /**
   * End the call; safe to call more than once. The gateway is told first (hangup) and the peer
   * closed once it answered, so the hangup never races the gateway noticing the closed peer.
   * On page unload there is no time to wait: both go at once.
   */
  close(reason = "user") {
    if (this.ended) return;
    const ending = this.callId ? hangup(this.base, this.token, this.callId) : null;
    this.#end(reason, undefined, ending && reason !== "unload" ? ending : null);
  }

  #onMessage(data) {
    if (this.ended) return;
    let event;
    try {
      event = JSON.parse(data);
    } catch {
      event = { type: "(unparsable message)", data: String(data) };
    }
    this.#emit("server", event);
  }

  #onConnectionState() {
    if (this.ended) return;
    const state = this.pc?.connectionState;
    this.#emit("state", state);
    if (state === "failed") {
      this.#end("failed", new ConnectionFailedError("The media connection to the gateway failed."));
    }
  }

  #end(reason, error, closeAfter = null) {
    if (this.ended) return;
    this.ended = true;
    const pc = this.pc;
    const closePeer = () => {
      this.channel?.close();
      pc?.close();
    };
    if (closeAfter) {
      const bounded = new Promise((resolve) => setTimeout(resolve, HANGUP_WAIT_MS));
      Promise.race([closeAfter, bounded]).finally(closePeer);
    } else {
      closePeer();
    }
    this.#emit("state", "closed");
    this.#emit("ended", { reason, error });
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
