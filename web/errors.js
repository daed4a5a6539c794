// Every failure the page can meet, as a title and a sentence a person can act on.
import { ApiError, UnreachableError } from "./api.js";
import { ConnectionFailedError } from "./rtc.js";

const MIC_ERRORS = {
  NotAllowedError: [
    "Microphone blocked",
    "The browser denied access to the microphone. Allow it for this site (the icon in the " +
      "address bar) and press Connect again.",
  ],
  SecurityError: [
    "Microphone blocked",
    "The browser does not allow the microphone here. Open the page over https or on localhost.",
  ],
  NotFoundError: ["No microphone", "No microphone was found. Plug one in and press Connect again."],
  OverconstrainedError: [
    "Microphone unavailable",
    "The selected microphone is gone. Pick another one and press Connect again.",
  ],
  NotReadableError: [
    "Microphone busy",
    "The microphone could not be opened; another application may be using it.",
  ],
  InsecureContextError: [
    "Microphone unavailable",
    "The microphone needs a secure page: open it over https, or on localhost.",
  ],
};

function fromApi(err) {
  const detail = err.message;
  if (err.step === "token" && err.status === 404) {
    return [
      "Demo disabled",
      "This gateway does not hand out demo tokens (GATEWAY_DEMO is off). Use your app's backend " +
        "to mint client secrets instead.",
    ];
  }
  if (err.step === "live" && err.status === 404) {
    return [
      "Demo disabled",
      "This gateway does not open demo sessions (GATEWAY_DEMO is off). Create GPT-Live " +
        "sessions from your app's backend with the gateway key instead.",
    ];
  }
  if (err.code === "demo_local_only") return ["Demo only on this machine", detail];
  if (err.status === 401) {
    const expired = err.code === "expired_client_secret";
    return [
      expired ? "Token expired" : "Token refused",
      `${expired ? "The client secret expired" : "The gateway did not accept the client secret"}` +
        ` — press Connect to get a fresh one. The gateway said: ${detail}`,
    ];
  }
  if (err.status === 403) return ["Origin not allowed", detail];
  if (err.status === 429) return ["Upstream rate limit", detail];
  if (err.status === 503) return ["Gateway busy", detail];
  // The gateway's own message already says what the upstream did (failed, timed out, refused).
  const calling = err.step === "call" || err.step === "live";
  if (calling && err.status >= 500) return ["Upstream error", detail];
  if (calling && err.status === 400) return ["Call refused", detail];
  return ["Request failed", `${detail} (HTTP ${err.status})`];
}

/** `[title, text]` for an exception thrown while connecting or during a call. */
export function describeError(err) {
  if (err instanceof UnreachableError) {
    return [
      "Gateway unreachable",
      `Could not reach the gateway at ${new URL(err.url).origin}. Is it running, and is this ` +
        "the right address?",
    ];
  }
  if (err instanceof ApiError) return fromApi(err);
  if (err instanceof ConnectionFailedError) {
    return [
      "Connection failed",
      "The audio connection to the gateway failed. The gateway may be unreachable over UDP from " +
        "here (check GATEWAY_ICE_ADDRESSES, firewalls, or configure a TURN server).",
    ];
  }
  if (err?.name in MIC_ERRORS) return MIC_ERRORS[err.name];
  return ["Something went wrong", err?.message || String(err)];
}

/** `[title, text]` for an `error` event from the upstream, sent on the data channel. */
export function describeErrorEvent(event) {
  const error = event.error ?? {};
  const code = error.code ? ` (${error.code})` : "";
  return ["Upstream error", `${error.message || "The upstream reported an error."}${code}`];
}

// Why a GPT-Live session ended (`session.closed.reason`), when the page did not end it.
const LIVE_CLOSE_REASONS = {
  expired: "the session reached its time limit.",
  content: "a safety filter ended the session.",
  remote_hangup: "the session was hung up.",
  connection_lost: "the connection to the model was lost.",
  close_requested: "the session was closed.",
};

/** A sentence's end for `session.closed`'s reason, or null without one. */
export function describeLiveClosed(reason) {
  if (!reason) return null;
  return LIVE_CLOSE_REASONS[reason] ?? `the session closed (${reason}).`;
}
