// Connection statistics from RTCPeerConnection.getStats(), refreshed once a second.

const INTERVAL_MS = 1000;

/** The few numbers worth showing, pulled out of a getStats() report. */
export function summarize(report) {
  const out = {};
  let pairId = null;
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
  });
  report.forEach((s) => {
    if (s.type === "candidate-pair" && (s.id === pairId || (!pairId && s.nominated))) {
      if (s.currentRoundTripTime !== undefined) out.rttMs = s.currentRoundTripTime * 1000;
    } else if (s.type === "inbound-rtp" && s.kind === "audio") {
      out.packetsReceived = s.packetsReceived;
      out.packetsLost = s.packetsLost;
      out.jitterMs = s.jitter * 1000;
      out.bytesReceived = s.bytesReceived;
      out.audioEnergy = s.totalAudioEnergy;
      if (s.codecId) out.codec = report.get(s.codecId);
    } else if (s.type === "outbound-rtp" && s.kind === "audio") {
      out.packetsSent = s.packetsSent;
    } else if (s.type === "remote-inbound-rtp" && s.kind === "audio" && out.rttMs === undefined) {
      if (s.roundTripTime !== undefined) out.rttMs = s.roundTripTime * 1000;
    }
  });
  return out;
}

const ms = (v) => (Number.isFinite(v) ? `${v < 10 ? v.toFixed(1) : Math.round(v)} ms` : "—");
const num = (v) => (Number.isFinite(v) ? v.toLocaleString() : "—");

export class StatsPanel {
  constructor(root) {
    this.cells = {};
    for (const dd of root.querySelectorAll("[data-stat]")) this.cells[dd.dataset.stat] = dd;
    this.timer = null;
    this.call = null;
    this.tokens = 0;
  }

  start(call) {
    this.stop();
    this.call = call;
    this.#set("call", call.callId ?? "—");
    this.tokens = 0;
    this.#set("usage", "—");
    this.timer = setInterval(() => this.#refresh(), INTERVAL_MS);
    this.#refresh();
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.call = null;
  }

  /**
   * Usage as the server reports it: GPT-Live's seconds (`session.usage.updated` is cumulative,
   * and `session.closed` has the final figure), or Realtime's tokens summed over responses.
   */
  noteUsage(event) {
    if (event.type === "session.usage.updated" || event.type === "session.closed") {
      const seconds = event.usage?.seconds;
      if (Number.isFinite(seconds)) this.#set("usage", `${seconds.toFixed(1)} s`);
    } else if (event.type === "response.done") {
      const tokens = event.response?.usage?.total_tokens;
      if (!Number.isFinite(tokens)) return;
      this.tokens += tokens;
      this.#set("usage", `${num(this.tokens)} tokens`);
    }
  }

  setState(state) {
    this.#set("state", state);
    this.cells.state.dataset.value = state;
  }

  async #refresh() {
    const call = this.call;
    const report = await call?.getStats().catch(() => null);
    if (!report || call !== this.call) return;
    const s = summarize(report);
    this.#set("call", call.callId ?? "—");
    this.#set("rtt", ms(s.rttMs));
    this.#set("lost", num(s.packetsLost));
    this.#set("jitter", ms(s.jitterMs));
    this.#set("received", s.packetsReceived === undefined ? "—" : `${num(s.packetsReceived)} packets`);
    this.#set("sent", s.packetsSent === undefined ? "—" : `${num(s.packetsSent)} packets`);
    if (s.codec) {
      const channels = s.codec.channels ? `/${s.codec.channels}` : "";
      this.#set("codec", `${s.codec.mimeType.replace("audio/", "")} ${s.codec.clockRate / 1000} kHz${channels}`);
    }
  }

  #set(key, text) {
    if (this.cells[key] && this.cells[key].textContent !== text) this.cells[key].textContent = text;
  }
}
