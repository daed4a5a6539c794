// The live transcript: one line per conversation item, streamed as deltas arrive.
//
// Lines are keyed by item id. A user line appears when speech starts (so it sits above the
// answer it causes) and fills in when the transcription arrives. An assistant line grows with
// each transcript delta and is marked when the user cut it off: the server truncates the item
// (`conversation.item.truncated`), clears the output audio, or cancels the response.
//
// GPT-Live has no items, no done events and no responses: its transcripts are bare deltas timed
// from the session's start (`start_ms`/`end_ms`), so there a turn is one side's deltas until
// the other side speaks.

const USER_PENDING = "…";
// Between two deltas of one Live turn, a gap this long (ms) is a pause: the texts get a space.
const LIVE_PAUSE_MS = 500;
// A Live answer has no end event: its cursor goes once no delta came for this long (ms).
const LIVE_QUIET_MS = 1500;

export class Transcript {
  constructor(list, empty) {
    this.list = list;
    this.empty = empty;
    this.lines = new Map();
    this.byResponse = new Map();
    this.handlers = {
      "input_audio_buffer.speech_started": (e) => this.#user(e.item_id),
      "input_audio_buffer.committed": (e) => this.#user(e.item_id),
      "conversation.item.input_audio_transcription.delta": (e) => this.#userDelta(e),
      "conversation.item.input_audio_transcription.completed": (e) =>
        this.#userDone(e.item_id, e.transcript),
      "conversation.item.input_audio_transcription.failed": (e) =>
        this.#userDone(e.item_id, "(transcription failed)"),
      "conversation.item.added": (e) => this.#itemAdded(e.item),
      "response.output_audio_transcript.delta": (e) => this.#assistantDelta(e),
      "response.output_text.delta": (e) => this.#assistantDelta(e),
      "response.output_audio_transcript.done": (e) => this.#assistantDone(e, e.transcript),
      "response.output_text.done": (e) => this.#assistantDone(e, e.text),
      "conversation.item.truncated": (e) => this.#interrupt(this.lines.get(e.item_id)),
      "output_audio_buffer.cleared": (e) => this.#interruptResponse(e.response_id),
      "response.done": (e) => this.#responseDone(e.response),
      "session.input_transcript.delta": (e) => this.#liveDelta("user", e),
      "session.output_transcript.delta": (e) => this.#liveDelta("assistant", e),
    };
    this.liveTurn = null;
    this.liveQuiet = null;
  }

  /** Feed one server event; events that do not touch the transcript are ignored. */
  handle(event) {
    this.handlers[event.type]?.(event);
  }

  /**
   * The call is over, however it ended: nothing more will arrive for its lines. A user turn
   * still waiting for its transcription (the `…` placeholder) is removed, one with part of its
   * transcription keeps that text, and an answer still streaming loses its cursor.
   */
  endCall() {
    const lines = (selector) => this.list.querySelectorAll(selector);
    for (const li of lines(".line.pending")) li.remove();
    for (const li of lines(".line.streaming")) li.classList.remove("streaming");
    this.lines.clear();
    this.byResponse.clear();
    this.liveTurn = null;
    clearTimeout(this.liveQuiet);
    this.#update();
  }

  clear() {
    this.list.replaceChildren();
    this.lines.clear();
    this.byResponse.clear();
    this.liveTurn = null;
    clearTimeout(this.liveQuiet);
    this.#update();
  }

  #line(itemId, role) {
    let line = itemId ? this.lines.get(itemId) : undefined;
    if (line) return line;
    const li = document.createElement("li");
    li.className = `line ${role}`;
    li.dataset.role = role;
    if (itemId) li.dataset.itemId = itemId;
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "Assistant";
    const text = document.createElement("span");
    text.className = "text";
    li.append(who, text);
    const stick = this.#atBottom();
    this.list.append(li);
    line = { li, text, role, final: false, interrupted: false };
    if (itemId) this.lines.set(itemId, line);
    this.#update(stick);
    return line;
  }

  #user(itemId) {
    const line = this.#line(itemId, "user");
    if (!line.text.textContent) {
      line.text.textContent = USER_PENDING;
      line.li.classList.add("pending");
    }
  }

  #userDelta(e) {
    const line = this.#line(e.item_id, "user");
    if (line.li.classList.contains("pending")) line.text.textContent = "";
    line.li.classList.remove("pending");
    this.#write(line, line.text.textContent + (e.delta ?? ""));
  }

  #userDone(itemId, transcript) {
    const line = this.#line(itemId, "user");
    line.li.classList.remove("pending");
    line.final = true;
    this.#write(line, transcript || "(no speech recognised)");
  }

  #itemAdded(item) {
    // Typed messages have their text at once; audio items wait for transcription.
    if (item?.type !== "message" || item.role !== "user") return;
    const typed = (item.content ?? []).find((c) => c.type === "input_text");
    if (typed) this.#userDone(item.id, typed.text);
  }

  #assistantDelta(e) {
    const line = this.#assistantLine(e);
    this.#write(line, line.text.textContent + (e.delta ?? ""));
    line.li.classList.add("streaming");
  }

  #assistantDone(e, transcript) {
    const line = this.#assistantLine(e);
    line.li.classList.remove("streaming");
    line.final = true;
    // A truncated item's final transcript covers only what was played; keep what was shown.
    if (!line.interrupted && typeof transcript === "string") this.#write(line, transcript);
  }

  #assistantLine(e) {
    const line = this.#line(e.item_id, "assistant");
    if (e.response_id) {
      line.responseId = e.response_id;
      const lines = this.byResponse.get(e.response_id) ?? new Set();
      lines.add(line);
      this.byResponse.set(e.response_id, lines);
    }
    return line;
  }

  /** A Live transcript delta: the current turn grows, or the other side's turn begins. */
  #liveDelta(role, e) {
    let turn = this.liveTurn;
    if (turn?.role !== role) {
      turn?.line.li.classList.remove("streaming");
      turn = this.liveTurn = { role, line: this.#line(null, role), endMs: null };
    }
    const delta = e.delta ?? "";
    let text = turn.line.text.textContent;
    const paused = turn.endMs !== null && e.start_ms - turn.endMs >= LIVE_PAUSE_MS;
    if (paused && text && !/\s$/.test(text) && !/^\s/.test(delta)) text += " ";
    if (Number.isFinite(e.end_ms)) turn.endMs = e.end_ms;
    this.#write(turn.line, text + delta);
    if (role !== "assistant") return;
    turn.line.li.classList.add("streaming");
    clearTimeout(this.liveQuiet);
    this.liveQuiet = setTimeout(() => turn.line.li.classList.remove("streaming"), LIVE_QUIET_MS);
  }

  #interruptResponse(responseId) {
    for (const line of this.byResponse.get(responseId) ?? []) this.#interrupt(line);
  }

  #responseDone(response) {
    if (response?.status !== "cancelled") {
      for (const line of this.byResponse.get(response?.id) ?? []) {
        line.li.classList.remove("streaming");
      }
      return;
    }
    for (const item of response.output ?? []) this.#interrupt(this.lines.get(item.id));
    this.#interruptResponse(response.id);
  }

  #interrupt(line) {
    if (!line || line.role !== "assistant" || line.interrupted) return;
    line.interrupted = true;
    line.li.classList.remove("streaming");
    line.li.classList.add("interrupted");
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "interrupted";
    badge.title = "You spoke over the assistant; the rest of this answer was not played.";
    line.li.append(badge);
  }

  #write(line, text) {
    const stick = this.#atBottom();
    line.text.textContent = text;
    this.#update(stick);
  }

  #atBottom() {
    const el = this.list;
    return el.scrollHeight - el.scrollTop - el.clientHeight < 24;
  }

  #update(stick = false) {
    this.empty.hidden = this.list.childElementCount > 0;
    if (stick) this.list.scrollTop = this.list.scrollHeight;
  }
}
