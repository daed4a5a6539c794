// What the page asks of the session, as client events: Realtime's (protocol.md §4), and the
// one GPT-Live command it sends besides `session.close` (rtc.js).

const TRANSCRIPTION = { model: "gpt-4o-mini-transcribe" };
const SERVER_VAD = { type: "server_vad", create_response: true, interrupt_response: true };

/**
 * The session.update sent once the channel opens, and again when the mode changes.
 * Transcription is asked for so the user's side of the transcript appears; push-to-talk
 * turns server turn detection off, as OpenAI's guide does for WebRTC.
 */
export function sessionUpdate({ pushToTalk }) {
  return {
    type: "session.update",
    session: {
      type: "realtime",
      audio: {
        input: { transcription: TRANSCRIPTION, turn_detection: pushToTalk ? null : SERVER_VAD },
      },
    },
  };
}

/** Pressed: drop what the mic sent before, and stop the assistant if it is still talking. */
export function pushToTalkStart({ responseActive, assistantSpeaking }) {
  const events = [];
  if (responseActive) events.push({ type: "response.cancel" });
  if (assistantSpeaking || responseActive) events.push({ type: "output_audio_buffer.clear" });
  events.push({ type: "input_audio_buffer.clear" });
  return events;
}

/** Released: what was said since the press becomes a turn, and the model answers it. */
export function pushToTalkEnd() {
  return [{ type: "input_audio_buffer.commit" }, { type: "response.create" }];
}

/** GPT-Live's mute: the session stops listening (and says so: `session.input_audio.muted`). */
export function liveMute(muted) {
  return { type: muted ? "session.input_audio.mute" : "session.input_audio.unmute" };
}
