// The push-to-talk control: the button held with a pointer, or Space held anywhere on the page.

// Space already means something on these elements (typing, pressing, opening): leave it to them.
function ownsSpace(target, button) {
  if (!(target instanceof Element) || target === button) return false;
  return Boolean(target.closest("input, select, textarea, button, summary, [contenteditable]"));
}

export class PushToTalkButton {
  /** `active()` says whether presses count now; `onPress`/`onRelease` run once per hold. */
  constructor(button, { active, onPress, onRelease }) {
    this.button = button;
    this.held = false;
    const press = () => {
      if (this.held || !active()) return;
      this.#show(true);
      onPress();
    };
    const release = () => {
      if (!this.held) return;
      this.#show(false);
      onRelease();
    };
    button.addEventListener("pointerdown", (e) => {
      // Keep receiving the pointer's events even if the finger slides off the button.
      button.setPointerCapture?.(e.pointerId);
      press();
    });
    button.addEventListener("pointerup", release);
    button.addEventListener("pointercancel", release);
    button.addEventListener("contextmenu", (e) => e.preventDefault()); // long-press on phones
    document.addEventListener("keydown", (e) => {
      if (e.code !== "Space" || ownsSpace(e.target, button) || !active()) return;
      e.preventDefault();
      if (!e.repeat) press();
    });
    document.addEventListener("keyup", (e) => {
      if (e.code !== "Space" || ownsSpace(e.target, button)) return;
      e.preventDefault();
      release();
    });
  }

  /** Show the button released without reporting a release (the call is already gone). */
  reset() {
    this.#show(false);
  }

  #show(held) {
    this.held = held;
    this.button.classList.toggle("held", held);
    this.button.textContent = held ? "Release to send" : "Hold to talk";
  }
}
