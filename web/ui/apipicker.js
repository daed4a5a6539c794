// The API picker: Realtime (the default) or GPT-Live, chosen before Connect and kept across
// reloads like the microphone.

const STORAGE_KEY = "realtime-gateway.api";

export class ApiPicker {
  /** `fieldset` holds one radio per API (values "realtime" and "live"). */
  constructor(fieldset, onChange) {
    this.fieldset = fieldset;
    this.radios = [...fieldset.querySelectorAll('input[type="radio"]')];
    let saved = null;
    try {
      saved = localStorage.getItem(STORAGE_KEY);
    } catch {
      // Storage may be off (private mode); the choice then lasts for this page only.
    }
    const radio = this.radios.find((r) => r.value === saved);
    if (radio) radio.checked = true;
    fieldset.addEventListener("change", () => {
      try {
        localStorage.setItem(STORAGE_KEY, this.value);
      } catch {
        // As above.
      }
      onChange(this.value);
    });
  }

  get value() {
    return this.radios.find((r) => r.checked)?.value ?? "realtime";
  }

  /** No switching during a call: it is set up for one API. */
  set disabled(disabled) {
    this.fieldset.disabled = disabled;
  }
}
