// The demo page: wires the controls to one call at a time and every event to the views.
// A call speaks Realtime (the default) or GPT-Live, chosen before Connect.
import { fetchDemoToken } from "./api.js";
import { describeError, describeErrorEvent, describeLiveClosed } from "./errors.js";
import { openMicrophone } from "./mic.js";
import { ConnectionFailedError, RealtimeCall } from "./rtc.js";
import { liveMute, pushToTalkEnd, pushToTalkStart, sessionUpdate } from "./session.js";
import { ApiPicker } from "./ui/apipicker.js";
import { DevicePicker } from "./ui/devices.js";
import { EventLog } from "./ui/eventlog.js";
import { LiveActivity } from "./ui/liveactivity.js";
import { LevelMeter } from "./ui/meter.js";
import { PushToTalkButton } from "./ui/pushtotalk.js";
import { StatsPanel } from "./ui/stats.js";
import { Status } from "./ui/status.js";
import { Transcript } from "./ui/transcript.js";

// The data channel normally opens well under a second after the answer; past this it is hung.
const OPEN_TIMEOUT_MS = 15000;
// Audio still in flight when push-to-talk is released belongs to the turn: keep the mic on briefly.
const PTT_RELEASE_TAIL_MS = 250;
const FILTER_EXAMPLES = { realtime: "Filter, e.g. response.", live: "Filter, e.g. session." };

const $ = (id) => document.getElementById(id);
const ui = {
  connect: $("connect"),
  disconnect: $("disconnect"),
  mute: $("mute"),
  pttMode: $("ptt-mode"),
  ptt: $("ptt"),
  pttHint: $("ptt-hint"),
  pttOff: $("ptt-off"),
  filter: $("event-filter"),
  audio: $("remote"),
};
const status = new Status({
  body: document.body,
  pill: $("state"),
  alert: $("alert"),
  alertTitle: $("alert-title"),
  alertText: $("alert-text"),
  alertClose: $("alert-close"),
  orb: $("speaking"),
  orbLabel: $("speaking-label"),
});
const transcript = new Transcript($("transcript"), $("transcript-empty"));
const log = new EventLog({
  list: $("events"),
  filter: $("event-filter"),
  hideDeltas: $("hide-deltas"),
  count: $("event-count"),
  types: $("event-types"),
});
const stats = new StatsPanel($("stats"));
const meter = new LevelMeter($("level"), $("level").parentElement);
const picker = new DevicePicker($("mic"), (deviceId) => switchMicrophone(deviceId));
const apiPicker = new ApiPicker($("api"), setApi);
const activity = new LiveActivity(status);
const pttButton = new PushToTalkButton(ui.ptt, {
  active: () => pushToTalk() && connected(),
  onPress: pttPress,
  onRelease: pttRelease,
});

const session = {
  // "realtime" or "live": what the next call speaks (the picker is locked during a call).
  api: apiPicker.value,
  // The push-to-talk switch as the user left it for Realtime; GPT-Live has no push to talk.
  pushToTalkChoice: false,
  attempt: 0,
  call: null,
  stream: null,
  muted: false,
  holding: false,
  releaseTimer: null,
  responseActive: false,
  assistantSpeaking: false,
  lastError: null,
  closedReason: null,
};

const pushToTalk = () => ui.pttMode.checked && !isLive();
const connected = () => document.body.dataset.state === "connected";
const isLive = () => session.api === "live";

function micTrack() {
  return session.stream?.getAudioTracks()[0] ?? null;
}

/** The mic is live unless muted, or in push-to-talk mode while the button is not held. */
function applyMicEnabled() {
  const track = micTrack();
  if (!track) return;
  const pttIdle = pushToTalk() && !session.holding && session.releaseTimer === null;
  track.enabled = !session.muted && !pttIdle;
}

function setControls() {
  const state = document.body.dataset.state;
  const busy = state === "connecting" || state === "connected";
  ui.connect.disabled = busy;
  ui.disconnect.disabled = !busy;
  ui.mute.disabled = state !== "connected";
  apiPicker.disabled = busy;
  ui.pttMode.disabled = isLive();
  ui.pttOff.hidden = !isLive();
  // The note says why the switch is off; a hidden note would still be read out if referenced.
  if (isLive()) ui.pttMode.setAttribute("aria-describedby", "ptt-off");
  else ui.pttMode.removeAttribute("aria-describedby");
  ui.ptt.hidden = !pushToTalk();
  ui.pttHint.hidden = !pushToTalk();
  ui.ptt.disabled = state !== "connected";
}

/** Set the page up for the chosen API; only while no call is up (the picker is locked then). */
function setApi(api) {
  if (session.call) return;
  if (api === "live" && !isLive()) {
    session.pushToTalkChoice = ui.pttMode.checked;
    ui.pttMode.checked = false;
  } else if (api !== "live" && isLive()) {
    ui.pttMode.checked = session.pushToTalkChoice;
  }
  session.api = api;
  ui.filter.placeholder = FILTER_EXAMPLES[api] ?? FILTER_EXAMPLES.realtime;
  setControls();
}

function setState(state, label) {
  status.setState(state, label);
  stats.setState(state);
  setControls();
}

async function connect() {
  if (session.call || connected() || document.body.dataset.state === "connecting") return;
  // Disconnect may be pressed while this is still awaiting: each step checks it still counts.
  const attempt = ++session.attempt;
  const current = () => attempt === session.attempt;
  status.clearError();
  setState("connecting");
  const api = session.api;
  try {
    // GPT-Live has no client secret: the gateway opens the session for the page's offer.
    const token = api === "live" ? null : await fetchDemoToken(location.origin);
    if (!current()) return;
    const stream = await openMicrophone(picker.value);
    if (!current()) {
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    session.stream = stream;
    picker.refresh(); // device labels become available once the microphone is granted
    const track = micTrack();
    meter.attach(track);
    applyMicEnabled();
    const call = new RealtimeCall({
      base: location.origin,
      api,
      token: token?.value,
      track,
      audioElement: ui.audio,
    });
    session.call = call;
    wire(call);
    await call.open();
    if (!current()) return;
    stats.start(call);
    setTimeout(() => {
      if (current() && !connected()) {
        // Almost always ICE that never connects (UDP blocked, wrong GATEWAY_ICE_ADDRESSES).
        fail(new ConnectionFailedError("The call did not open in time."));
      }
    }, OPEN_TIMEOUT_MS);
  } catch (err) {
    if (current()) fail(err);
  }
}

function wire(call) {
  call.addEventListener("open", () => {
    // A Live session counts as connected at `session.started`: commands wait for it.
    if (call.api === "live") return;
    call.send(sessionUpdate({ pushToTalk: pushToTalk() }));
    setState("connected");
  });
  call.addEventListener("server", (e) => {
    if (call === session.call) onServerEvent(e.detail);
    else afterEnd(e.detail);
  });
  call.addEventListener("client", (e) => log.add("client", e.detail));
  call.addEventListener("state", (e) => stats.setState(e.detail));
  call.addEventListener("ended", (e) => {
    if (call !== session.call) return;
    const { reason, error } = e.detail;
    if (error) fail(error);
    else if (reason === "remote") {
      // The gateway says why in an error event just before it closes (shutdown, upstream end);
      // a Live session says why it closed in `session.closed`.
      const why = session.lastError?.message ?? describeLiveClosed(session.closedReason);
      teardown("ended");
      status.showError("Call ended", why ? `The call ended: ${why}` : "The gateway closed the call.");
    }
  });
}

function onServerEvent(event) {
  log.add("server", event);
  transcript.handle(event);
  stats.noteUsage(event);
  if (isLive()) activity.handle(event);
  switch (event.type) {
    case "output_audio_buffer.started":
      session.assistantSpeaking = true;
      status.setSpeaking(true);
      break;
    case "output_audio_buffer.stopped":
    case "output_audio_buffer.cleared":
      session.assistantSpeaking = false;
      status.setSpeaking(false);
      break;
    case "input_audio_buffer.speech_started":
      status.setListening(true);
      break;
    case "input_audio_buffer.speech_stopped":
    case "input_audio_buffer.committed":
      status.setListening(false);
      break;
    case "response.created":
      session.responseActive = true;
      break;
    case "response.done":
      session.responseActive = false;
      break;
    case "error":
      session.lastError = event.error ?? null;
      status.showError(...describeErrorEvent(event));
      break;
    case "session.started":
      if (!isLive() || document.body.dataset.state !== "connecting") break;
      setState("connected");
      if (session.muted) session.call.send(liveMute(true));
      break;
    case "session.closed":
      session.closedReason = event.reason ?? null;
      break;
  }
}

/** What arrives while a call the page ended says goodbye (Live's `session.closed`): logged. */
function afterEnd(event) {
  log.add("server", event);
  if (event.type === "session.closed") stats.noteUsage(event);
}

function fail(err) {
  console.error(err);
  teardown("error");
  status.showError(...describeError(err));
}

function disconnect() {
  teardown("ended");
}

/** Close the call (hanging up at the gateway) and release the microphone. */
function teardown(state) {
  session.attempt += 1;
  const call = session.call;
  session.call = null;
  call?.close("user");
  stats.stop();
  meter.detach();
  session.stream?.getTracks().forEach((t) => t.stop());
  session.stream = null;
  session.holding = false;
  pttButton.reset();
  clearTimeout(session.releaseTimer);
  session.releaseTimer = null;
  session.responseActive = false;
  session.assistantSpeaking = false;
  session.lastError = null;
  session.closedReason = null;
  ui.audio.srcObject = null;
  transcript.endCall();
  activity.reset();
  status.setListening(false);
  setState(state);
}

async function switchMicrophone(deviceId) {
  if (!session.call) return;
  try {
    const stream = await openMicrophone(deviceId);
    const track = stream.getAudioTracks()[0];
    await session.call.replaceTrack(track);
    session.stream?.getTracks().forEach((t) => t.stop());
    session.stream = stream;
    meter.attach(track);
    applyMicEnabled();
  } catch (err) {
    status.showError(...describeError(err));
  }
}

function toggleMute() {
  session.muted = !session.muted;
  ui.mute.setAttribute("aria-pressed", String(session.muted));
  ui.mute.textContent = session.muted ? "Unmute" : "Mute";
  // The track is disabled either way, so no audio leaves the page; a Live session is also told,
  // and answers `session.input_audio.muted`/`.unmuted`.
  applyMicEnabled();
  if (isLive()) session.call?.send(liveMute(session.muted));
}

function setPushToTalk() {
  setControls();
  applyMicEnabled();
  session.call?.send(sessionUpdate({ pushToTalk: pushToTalk() }));
}

function pttPress() {
  session.holding = true;
  clearTimeout(session.releaseTimer);
  session.releaseTimer = null;
  for (const event of pushToTalkStart(session)) session.call.send(event);
  applyMicEnabled();
}

function pttRelease() {
  session.holding = false;
  for (const event of pushToTalkEnd()) session.call?.send(event);
  session.releaseTimer = setTimeout(() => {
    session.releaseTimer = null;
    applyMicEnabled();
  }, PTT_RELEASE_TAIL_MS);
}

ui.connect.addEventListener("click", connect);
ui.disconnect.addEventListener("click", disconnect);
ui.mute.addEventListener("click", toggleMute);
ui.pttMode.addEventListener("change", setPushToTalk);
$("transcript-clear").addEventListener("click", () => transcript.clear());
$("events-clear").addEventListener("click", () => log.clear());
window.addEventListener("pagehide", () => session.call?.close("unload"));

setApi(session.api);
picker.refresh();

// A handle for the browser console (and the tests): the live call and a way to send events.
window.realtimeDemo = {
  get call() {
    return session.call;
  },
  get api() {
    return session.api;
  },
  send: (event) => session.call?.send(event) ?? false,
};
