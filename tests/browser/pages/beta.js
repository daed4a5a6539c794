// Beta-era browser code (openai-realtime-console, 2024-25), with only the URL changed.
import { fail, gateway, recordChannel, result, send } from "./record.js";

async function startSession() {
  // The backend called POST /v1/realtime/sessions; the browser reads client_secret.value.
  const tokenResponse = await fetch("/session");
  const data = await tokenResponse.json();
  const EPHEMERAL_KEY = data.client_secret.value;

  const pc = new RTCPeerConnection();
  window.pc = pc;
  const audioElement = document.createElement("audio");
  audioElement.autoplay = true;
  pc.ontrack = (e) => (audioElement.srcObject = e.streams[0]);

  const ms = await navigator.mediaDevices.getUserMedia({ audio: true });
  pc.addTrack(ms.getTracks()[0]);

  const dc = pc.createDataChannel("oai-events");
  recordChannel(dc);
  // Beta's flat session shape: no "type", input_audio_transcription at the top level.
  dc.addEventListener("open", () =>
    send(dc, {
      type: "session.update",
      session: {
        modalities: ["text", "audio"],
        input_audio_transcription: { model: "whisper-1" },
        turn_detection: { type: "server_vad", silence_duration_ms: 500 },
      },
    }),
  );

  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);

  const baseUrl = `${gateway}/v1/realtime`;
  const model = "gpt-4o-realtime-preview-2024-12-17";
  const sdpResponse = await fetch(`${baseUrl}?model=${model}`, {
    method: "POST",
    body: offer.sdp,
    headers: {
      Authorization: `Bearer ${EPHEMERAL_KEY}`,
      "Content-Type": "application/sdp",
    },
  });
  result.status = sdpResponse.status;
  result.location = sdpResponse.headers.get("Location");

  const answer = { type: "answer", sdp: await sdpResponse.text() };
  await pc.setRemoteDescription(answer);
  result.phase = "answered";
}

document.getElementById("start").addEventListener("click", () => startSession().catch(fail));
