// The microphone: opening a chosen device, and listing the devices to choose from.

/** Open `deviceId` (or the default device); rejects with the browser's DOMException. */
export async function openMicrophone(deviceId) {
  if (!navigator.mediaDevices?.getUserMedia) {
    const err = new Error("This page needs a secure context (https or localhost) for the microphone.");
    err.name = "InsecureContextError";
    throw err;
  }
  const audio = deviceId ? { deviceId: { exact: deviceId } } : true;
  return navigator.mediaDevices.getUserMedia({ audio });
}

/** Audio inputs; labels are empty until the user has granted the microphone once. */
export async function listMicrophones() {
  if (!navigator.mediaDevices?.enumerateDevices) return [];
  const devices = await navigator.mediaDevices.enumerateDevices();
  return devices.filter((d) => d.kind === "audioinput" && d.deviceId);
}

export function onDevicesChanged(callback) {
  navigator.mediaDevices?.addEventListener?.("devicechange", callback);
}
