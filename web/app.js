// Minimal client: the same GA flow as OpenAI's WebRTC guide, pointed at this gateway.
const $ = (id) => document.getElementById(id);
let pc = null;
let mic = null;

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function addEvent(event) {
  const li = document.createElement("li");
  li.textContent = event.type;
  $("events").prepend(li);
  if (event.type === "conversation.item.input_audio_transcription.completed") {
    addLine("user", event.transcript);
  } else if (event.type === "response.output_audio_transcript.done") {
    addLine("assistant", event.transcript);
  } else if (event.type === "error") {
    setStatus(`Error: ${event.error?.message ?? "unknown"}`, true);
  }
}

function addLine(role, text) {
  const li = document.createElement("li");
  li.className = role;
  li.textContent = text;
  $("transcript").append(li);
}

async function connect() {
  $("connect").disabled = true;
  try {
    setStatus("Getting a token…");
    const tokenResponse = await fetch("/demo/token", { method: "POST" });
    const token = await tokenResponse.json();
    if (!tokenResponse.ok) throw new Error(token.error?.message ?? tokenResponse.statusText);

    setStatus("Opening the microphone…");
    mic = await navigator.mediaDevices.getUserMedia({ audio: true });
    pc = new RTCPeerConnection();
    pc.ontrack = (e) => { $("remote").srcObject = e.streams[0] ?? new MediaStream([e.track]); };
    pc.addTrack(mic.getTracks()[0]);
    const channel = pc.createDataChannel("oai-events");
    channel.onmessage = (e) => addEvent(JSON.parse(e.data));
    channel.onopen = () => setStatus("Connected — say something");
    pc.onconnectionstatechange = () => {
      if (pc && ["failed", "closed"].includes(pc.connectionState)) disconnect("Disconnected");
    };

    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    setStatus("Connecting…");
    const answer = await fetch("/v1/realtime/calls", {
      method: "POST",
      body: offer.sdp,
      headers: { Authorization: `Bearer ${token.value}`, "Content-Type": "application/sdp" },
    });
    if (!answer.ok) {
      const body = await answer.json().catch(() => ({}));
      throw new Error(body.error?.message ?? `HTTP ${answer.status}`);
    }
    window.callId = answer.headers.get("Location")?.split("/").pop();
    await pc.setRemoteDescription({ type: "answer", sdp: await answer.text() });
    $("disconnect").disabled = false;
  } catch (err) {
    disconnect(`Could not connect: ${err.message}`, true);
  }
}

function disconnect(message = "Idle", isError = false) {
  pc?.close();
  pc = null;
  mic?.getTracks().forEach((t) => t.stop());
  mic = null;
  $("connect").disabled = false;
  $("disconnect").disabled = true;
  setStatus(message, isError);
}

$("connect").addEventListener("click", connect);
$("disconnect").addEventListener("click", () => disconnect());
