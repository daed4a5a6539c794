// What every drop-in page reports to the test, on `window.result`.
export const result = {
  phase: "loading",
  status: null,
  location: null,
  contentType: null,
  sent: [],
  events: [],
  error: null,
};
window.result = result;

export const gateway = new URL(location.href).searchParams.get("gateway");

export function fail(err) {
  result.phase = "failed";
  result.error = `${err?.name ?? "Error"}: ${err?.message ?? err}`;
}

/** Record every event of `dc` (the oai-events channel) by type, in order. */
export function recordChannel(dc) {
  dc.addEventListener("message", (e) => {
    const event = JSON.parse(e.data);
    result.events.push(event.type);
    if (event.type === "error") result.lastError = event.error;
  });
  dc.addEventListener("open", () => (result.phase = "open"));
  dc.addEventListener("close", () => (result.phase = "closed"));
}

export function send(dc, event) {
  dc.send(JSON.stringify(event));
  result.sent.push(event.type);
}
