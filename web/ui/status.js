// The call's state pill, the alert banner, and the assistant-speaking indicator.

const STATE_LABELS = {
  idle: "Idle",
  connecting: "Connecting…",
  connected: "Connected",
  ended: "Disconnected",
  error: "Error",
};

export class Status {
  constructor({ body, pill, alert, alertTitle, alertText, alertClose, orb, orbLabel }) {
    Object.assign(this, { body, pill, alert, alertTitle, alertText, orb, orbLabel });
    alertClose.addEventListener("click", () => this.clearError());
  }

  /** One of STATE_LABELS' keys; mirrored on <body data-state> for styling (and tests). */
  setState(state, label = STATE_LABELS[state]) {
    this.body.dataset.state = state;
    this.pill.textContent = label;
    if (state !== "connected") this.setSpeaking(false);
    this.#updateOrbLabel();
  }

  showError(title, text) {
    this.alertTitle.textContent = title;
    this.alertText.textContent = text;
    this.alert.hidden = false;
  }

  clearError() {
    this.alert.hidden = true;
  }

  /** Whether the assistant's audio is playing (output_audio_buffer.started/stopped). */
  setSpeaking(speaking) {
    this.orb.dataset.speaking = String(speaking);
    this.#updateOrbLabel();
  }

  /** Whether the user is talking: as the server's turn detection hears it (Realtime), or as
   * the timing of GPT-Live's transcripts says (ui/liveactivity.js). */
  setListening(listening) {
    this.orb.dataset.listening = String(listening);
    this.#updateOrbLabel();
  }

  #updateOrbLabel() {
    const state = this.body.dataset.state;
    let label = "Not connected";
    if (state === "connecting") label = "Connecting…";
    else if (state === "connected") {
      if (this.orb.dataset.speaking === "true") label = "Assistant speaking";
      else if (this.orb.dataset.listening === "true") label = "Listening to you";
      else label = "Ready — say something";
    }
    this.orbLabel.textContent = label;
  }
}
