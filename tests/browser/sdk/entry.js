// What the drop-in test page uses of OpenAI's Agents SDK, bundled for the browser by esbuild.
export { OpenAIRealtimeWebRTC, RealtimeAgent, RealtimeSession } from "@openai/agents-realtime";
