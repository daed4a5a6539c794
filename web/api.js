// The gateway's HTTP API as this page uses it: OpenAI's GA WebRTC flow with the demo token, or
// a GPT-Live session the gateway opens for the page.

/** An HTTP error from the gateway, carrying OpenAI's `{error: {message, type, code}}` body. */
export class ApiError extends Error {
  constructor(step, status, error) {
    super(error?.message || `HTTP ${status}`);
    this.name = "ApiError";
    this.step = step;
    this.status = status;
    this.code = error?.code ?? null;
    this.type = error?.type ?? null;
  }
}

/** The gateway could not be reached at all (the fetch itself failed). */
export class UnreachableError extends Error {
  constructor(step, url, cause) {
    super(`Could not reach ${url}`, { cause });
    this.name = "UnreachableError";
    this.step = step;
    this.url = url;
  }
}

async function request(step, url, init) {
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    // fetch rejects only when no HTTP answer came back (refused, reset, DNS, CORS).
    throw new UnreachableError(step, url, err);
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw new ApiError(step, response.status, body?.error);
  }
  return response;
}

/** A client secret for this page: `{value: "ek_…", expires_at, session}`. */
export async function fetchDemoToken(base) {
  const response = await request("token", new URL("/demo/token", base), { method: "POST" });
  return response.json();
}

/** POST the SDP offer exactly as OpenAI's WebRTC guide does; the answer and the call id. */
export async function postOffer(base, token, sdp) {
  const response = await request("call", new URL("/v1/realtime/calls", base), {
    method: "POST",
    body: sdp,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/sdp" },
  });
  const location = response.headers.get("Location") ?? "";
  return { sdp: await response.text(), callId: location.split("/").pop() || null };
}

/**
 * Ask the gateway to open a GPT-Live session for this offer. Live has no browser key: the
 * gateway is the trusted server that creates it, with its own settings. Live answers with JSON
 * (`{session: {id}, transport: {type: "webrtc", sdp}}`), not SDP and a Location header.
 */
export async function postLiveOffer(base, sdp) {
  const response = await request("live", new URL("/demo/live", base), {
    method: "POST",
    body: JSON.stringify({ sdp }),
    headers: { "Content-Type": "application/json" },
  });
  const body = await response.json();
  return { sdp: body.transport?.sdp, callId: body.session?.id ?? null };
}

/** End the call server-side; `keepalive` lets it finish while the page unloads. */
export function hangup(base, token, callId) {
  const url = new URL(`/v1/realtime/calls/${encodeURIComponent(callId)}/hangup`, base);
  return fetch(url, {
    method: "POST",
    keepalive: true,
    headers: { Authorization: `Bearer ${token}` },
  }).catch(() => null);
}
