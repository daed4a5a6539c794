// The microphone picker: lists audio inputs and keeps the choice across reloads.
import { listMicrophones, onDevicesChanged } from "../mic.js";

const STORAGE_KEY = "realtime-gateway.microphone";

export class DevicePicker {
  constructor(select, onChange) {
    this.select = select;
    select.addEventListener("change", () => {
      try {
        localStorage.setItem(STORAGE_KEY, select.value);
      } catch {
        // Storage may be off (private mode); the choice then lasts for this page only.
      }
      onChange(select.value);
    });
    onDevicesChanged(() => this.refresh());
  }

  get value() {
    return this.select.value;
  }

  async refresh() {
    const devices = await listMicrophones().catch(() => []);
    let saved = this.select.value;
    try {
      saved ||= localStorage.getItem(STORAGE_KEY) ?? "";
    } catch {
      // As above: no storage, no remembered choice.
    }
    const options = [new Option("Default microphone", "")];
    devices.forEach((d, i) => {
      if (d.deviceId === "default") return;
      options.push(new Option(d.label || `Microphone ${i + 1}`, d.deviceId));
    });
    this.select.replaceChildren(...options);
    this.select.value = options.some((o) => o.value === saved) ? saved : "";
  }
}
