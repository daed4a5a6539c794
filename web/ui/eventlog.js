// The event log: every event both ways, filterable by type, each expandable to its JSON.

const MAX_ENTRIES = 500;
// Streaming deltas arrive many times a second and bury everything else unless hidden.
const isDelta = (type) => type.endsWith(".delta");

/**
 * `type` as text with a line-break opportunity (<wbr>) after each `.` and `_`, so a long name
 * that has to wrap (narrow screens) breaks between its words. The text is unchanged.
 */
function breakable(type) {
  const nodes = [];
  let start = 0;
  for (let i = 0; i < type.length - 1; i += 1) {
    if (type[i] === "." || type[i] === "_") {
      nodes.push(type.slice(start, i + 1), document.createElement("wbr"));
      start = i + 1;
    }
  }
  nodes.push(type.slice(start));
  return nodes;
}

export class EventLog {
  constructor({ list, filter, hideDeltas, count, types }) {
    this.list = list;
    this.filter = filter;
    this.hideDeltas = hideDeltas;
    this.count = count;
    this.types = types;
    this.seen = new Set();
    this.total = 0;
    filter.addEventListener("input", () => this.#applyFilter());
    hideDeltas.addEventListener("change", () => this.#applyFilter());
  }

  /** Log `event`; `direction` is "server" (received) or "client" (sent). */
  add(direction, event) {
    const type = typeof event?.type === "string" ? event.type : "(no type)";
    const li = document.createElement("li");
    li.className = `event ${direction}`;
    li.dataset.type = type;
    if (type === "error") li.classList.add("is-error");

    const details = document.createElement("details");
    const summary = document.createElement("summary");
    const arrow = document.createElement("span");
    arrow.className = "dir";
    arrow.textContent = direction === "server" ? "↓" : "↑";
    arrow.title = direction === "server" ? "received from the server" : "sent by this page";
    const name = document.createElement("span");
    name.className = "type";
    name.title = type;
    name.append(...breakable(type));
    const time = document.createElement("time");
    time.textContent = new Date().toLocaleTimeString([], { hour12: false });
    summary.append(arrow, name, time);
    details.append(summary);
    // Pretty-printing every event would cost more than the log is worth: do it when opened.
    details.addEventListener(
      "toggle",
      () => {
        const pre = document.createElement("pre");
        pre.textContent = JSON.stringify(event, null, 2);
        details.append(pre);
      },
      { once: true },
    );
    li.append(details);
    li.hidden = !this.#matches(type);

    const stick = this.list.scrollTop < 8;
    this.list.prepend(li);
    if (stick) this.list.scrollTop = 0;
    while (this.list.childElementCount > MAX_ENTRIES) this.list.lastElementChild.remove();
    this.total += 1;
    this.count.textContent = String(this.total);
    this.#remember(type);
  }

  clear() {
    this.list.replaceChildren();
    this.total = 0;
    this.count.textContent = "0";
  }

  #remember(type) {
    if (this.seen.has(type)) return;
    this.seen.add(type);
    const option = document.createElement("option");
    option.value = type;
    this.types.append(option);
  }

  #matches(type) {
    if (this.hideDeltas.checked && isDelta(type)) return false;
    const terms = this.filter.value
      .split(/[\s,]+/)
      .map((t) => t.trim().toLowerCase())
      .filter(Boolean);
    return terms.length === 0 || terms.some((t) => type.toLowerCase().includes(t));
  }

  #applyFilter() {
    for (const li of this.list.children) li.hidden = !this.#matches(li.dataset.type);
  }
}
