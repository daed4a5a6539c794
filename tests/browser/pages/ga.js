// The browser code of OpenAI's WebRTC guide (GA), with only the URL changed to the gateway.
import { fail, gateway, recordChannel, result, send } from "./record.js";

async function init() {
  // Get a session token for OpenAI Realtime API (here: minted by this app's backend).
  const tokenResponse = await fetch("/token");
  const data = await tokenResponse.json();
  const EPHEMERAL_KEY = data.value;

  // Create a peer connection
  const pc = new RTCPeerConnection();
  window.pc = pc;

  // Set up to play remote audio from the model
  const audioElement = document.createElement("audio");
  audioElement.autoplay = true;
  pc.ontrack = (e) => (audioElement.srcObject = e.streams[0]);

  // Add local audio track for microphone input in the browser
  const ms = await navigator.mediaDevices.getUserMedia({ audio: true });
  pc.addTrack(ms.getTracks()[0]);

  // Set up data channel for sending and receiving events
  const dc = pc.createDataChannel("oai-events");
  recordChannel(dc);
  dc.addEventListener("open", () =>
    send(dc, {
      type: "session.update",
      session: {
        type: "realtime",
        audio: { input: { transcription: { model: "gpt-4o-mini-transcribe" } } },
      },
    }),
  );

  // Start the session using the Session Description Protocol (SDP)
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);

  const sdpResponse = await fetch(`${gateway}/v1/realtime/calls`, {
    method: "POST",
    body: offer.sdp,
    headers: {
      Authorization: `Bearer ${EPHEMERAL_KEY}`,
      "Content-Type": "application/sdp",
    },
  });
  result.status = sdpResponse.status;
  result.location = sdpResponse.headers.get("Location");
  result.contentType = sdpResponse.headers.get("Content-Type");

  const answer = { type: "answer", sdp: await sdpResponse.text() };
  await pc.setRemoteDescription(answer);
  result.phase = "answered";
}

document.getElementById("start").addEventListener("click", () => init().catch(fail));
