// Who is talking in a GPT-Live session, for the speaking indicator. Live sends no speech or
// playback events, only transcript deltas timed from the session's start (`start_ms`/`end_ms`):
// a side counts as talking until the end of its latest delta, plus a short grace. The session's
// start is taken as the moment `session.started` arrived.

const GRACE_MS = 600;
// A delta timed far ahead (or a clock gone wrong) must not light the indicator for long.
const MAX_AHEAD_MS = 15000;

export class LiveActivity {
  /** `status` is the page's Status (setSpeaking, setListening). */
  constructor(status) {
    this.status = status;
    this.origin = null;
    this.timers = { speaking: null, listening: null };
  }

  /** Feed one server event; only Live's start and transcript deltas count. */
  handle(event) {
    if (event.type === "session.started") this.origin = performance.now();
    else if (event.type === "session.input_transcript.delta") this.#talking("listening", event);
    else if (event.type === "session.output_transcript.delta") this.#talking("speaking", event);
  }

  reset() {
    this.#set("speaking", false);
    this.#set("listening", false);
    this.origin = null;
  }

  #talking(side, event) {
    // One side at a time: the user talking over an answer stops it (Live has nothing to cancel).
    this.#set(side === "speaking" ? "listening" : "speaking", false);
    this.#set(side, true);
    const now = performance.now();
    const timed = this.origin !== null && Number.isFinite(event.end_ms);
    const end = timed ? this.origin + event.end_ms : now;
    const wait = Math.min(Math.max(end - now, 0) + GRACE_MS, MAX_AHEAD_MS);
    this.timers[side] = setTimeout(() => this.#set(side, false), wait);
  }

  #set(side, on) {
    clearTimeout(this.timers[side]);
    this.timers[side] = null;
    if (side === "speaking") this.status.setSpeaking(on);
    else this.status.setListening(on);
  }
}
