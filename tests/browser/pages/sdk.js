// An app built on OpenAI's Agents SDK, pointed at the gateway with `baseUrl` and nothing else.
import { OpenAIRealtimeWebRTC, RealtimeAgent, RealtimeSession } from "/sdk/agents-realtime.js";
import { fail, gateway, result } from "./record.js";

result.history = [];
result.warnings = [];
result.sdkErrors = [];

// The SDK warns (it does not fail) when session.updated does not come within 5 s.
const warn = console.warn.bind(console);
console.warn = (...args) => {
  result.warnings.push(args.map(String).join(" "));
  warn(...args);
};

const agent = new RealtimeAgent({
  name: "Assistant",
  instructions: "You are a helpful assistant. Answer briefly.",
});
const transport = new OpenAIRealtimeWebRTC({ baseUrl: `${gateway}/v1/realtime/calls` });
const session = new RealtimeSession(agent, { transport, model: "gpt-realtime" });
window.session = session;
window.transport = transport;

result.transcribed = [];
session.on("transport_event", (event) => {
  if (event.type) result.events.push(event.type);
  if (event.type === "conversation.item.input_audio_transcription.completed") {
    result.transcribed.push(event.transcript);
  }
});
session.on("error", (e) => result.sdkErrors.push(String(e?.error?.message ?? e?.error ?? e)));
session.on("history_updated", (history) => {
  result.history = history
    .filter((item) => item.type === "message")
    .map((item) => ({
      role: item.role,
      status: item.status,
      text: item.content
        .map((c) => c.transcript ?? c.text ?? "")
        .join(""),
    }));
});
transport.on("connection_change", (status) => (result.phase = status));

async function start() {
  const { value } = await (await fetch("/token", { method: "POST" })).json();
  result.apiKeyPrefix = value.slice(0, 3);
  const started = performance.now();
  await session.connect({ apiKey: value });
  result.connectMs = performance.now() - started;
  result.callId = transport.callId;
  result.connected = true;
}

document.getElementById("start").addEventListener("click", () => start().catch(fail));
document.getElementById("stop").addEventListener("click", () => session.close());
