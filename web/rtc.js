// One call: the peer connection, the `oai-events` channel, and the SDP exchange with the gateway,
// for either API the page speaks: Realtime (client secret, SDP in and out) or GPT-Live (a
// session the gateway opens for the page, JSON in and out).
//
// Events dispatched (all CustomEvent, details in `detail`):
//   "server"  a server event arrived                      detail: the parsed event
//   "client"  a client event was sent                     detail: the event
//   "state"   the peer connection state changed           detail: RTCPeerConnectionState
//   "open"    the data channel opened (events can flow)
//   "ended"   the call is over, whoever ended it          detail: {reason, error?}
// Server events that arrive while an ended call is still telling the gateway (below) are
// still dispatched, after "ended".
import { hangup, postLiveOffer, postOffer } from "./api.js";

// Telling the gateway normally takes milliseconds (a hangup answered, or Live's
// `session.closed`); past this the peer is closed anyway.
const END_WAIT_MS = 2000;

export class ConnectionFailedError extends Error {
  constructor(message) {
    super(message);
    this.name = "ConnectionFailedError";
  }
}

export class RealtimeCall extends EventTarget {
  /** `api` is "realtime" (needs `token`, a client secret) or "live" (needs none). */
  constructor({ base, api = "realtime", token = null, track, audioElement }) {
    super();
    this.base = base;
    this.api = api;
    this.token = token;
    this.track = track;
    this.audioElement = audioElement;
    this.pc = null;
    this.channel = null;
    this.callId = null;
    this.ended = false;
    this.peerClosed = false;
  }

  /** The flow of OpenAI's WebRTC guides, with the gateway as the URL. */
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
    const sdp = pc.localDescription.sdp;
    const answer =
      this.api === "live"
        ? await postLiveOffer(this.base, sdp)
        : await postOffer(this.base, this.token, sdp);
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
   * End the call; safe to call more than once. The gateway is told first and the peer closed
   * once it answered, so the ending never races the gateway noticing the closed peer: a
   * Realtime call is hung up; a Live session gets `session.close`, and the peer stays up until
   * `session.closed` arrives. On page unload there is no time to wait: both go at once.
   */
  close(reason = "user") {
    if (this.ended) return;
    const ending = this.#tellGateway();
    this.#end(reason, undefined, ending && reason !== "unload" ? ending : null);
  }

  #tellGateway() {
    if (this.api === "live") {
      return this.send({ type: "session.close" }) ? this.#next("session.closed") : null;
    }
    return this.callId ? hangup(this.base, this.token, this.callId) : null;
  }

  /** Resolves when a server event of `type` arrives, or the channel closes. */
  #next(type) {
    return new Promise((resolve) => {
      this.addEventListener("server", (e) => e.detail?.type === type && resolve());
      this.channel?.addEventListener("close", () => resolve(), { once: true });
    });
  }

  #onMessage(data) {
    if (this.peerClosed) return;
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
      this.peerClosed = true;
      this.channel?.close();
      pc?.close();
    };
    if (closeAfter) {
      const bounded = new Promise((resolve) => setTimeout(resolve, END_WAIT_MS));
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
