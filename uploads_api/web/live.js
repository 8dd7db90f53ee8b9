// The live event stream (GET /v1/events): the page follows files as they change instead of
// asking again and again.
//
// An EventSource cannot send the API key, so with a key the page first asks for a token
// (POST /v1/events/tokens, valid 60 s to connect) and opens the stream with it. A dropped
// stream is opened again here rather than by the EventSource itself, because its token may
// have expired by then: each attempt gets a new token, and `last_event_id` in the URL
// resumes after the last event seen, so nothing is missed while it was down.

import { apiJSON, currentKey } from "./api.js";

export const FILE_EVENTS = ["file.created", "file.ready", "file.failed", "file.deleted"];
// Waits before each new attempt after a failure, the last one repeating.
export const RETRY_MS = [1000, 2000, 5000, 10000, 30000];

export class LiveEvents {
  /**
   * `onEvent(type, record)` for each file event; `onOpen(resumed)` when a stream opens
   * (`resumed`: it carries on after the last event seen, so nothing was missed);
   * `onDown()` when it closed or could not be opened; `wanted()` says whether to try
   * again (not while the server refuses the page for want of a key).
   */
  constructor({ onEvent, onOpen, onDown, wanted = () => true }) {
    this.onEvent = onEvent;
    this.onOpen = onOpen;
    this.onDown = onDown;
    this.wanted = wanted;
    this.source = null;
    this.lastId = "";
    this.failures = 0;
    this.timer = 0;
    this.attempt = 0; // a newer attempt makes older ones give up
    this.running = false;
  }

  get open() {
    return Boolean(this.source && this.source.readyState === EventSource.OPEN);
  }

  start() {
    if (this.running || typeof EventSource !== "function") return;
    this.running = true;
    this.connect();
  }

  /** The key changed: another owner's events, so start over from now. */
  restart() {
    this.lastId = "";
    this.failures = 0;
    this.running = false;
    this.close();
    this.start();
  }

  close() {
    clearTimeout(this.timer);
    this.timer = 0;
    this.attempt++;
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  async connect() {
    this.close();
    const attempt = this.attempt;
    const params = new URLSearchParams();
    const resumed = Boolean(this.lastId);
    if (resumed) params.set("last_event_id", this.lastId);
    if (currentKey()) {
      try {
        const { token } = await apiJSON("/v1/events/tokens", { method: "POST" });
        params.set("token", token);
      } catch {
        if (attempt === this.attempt) this.retry();
        return;
      }
      if (attempt !== this.attempt) return;
    }
    const query = params.toString();
    const source = new EventSource(`/v1/events${query ? `?${query}` : ""}`);
    this.source = source;
    source.addEventListener("open", () => {
      this.failures = 0;
      this.onOpen(resumed);
    });
    for (const type of FILE_EVENTS) {
      source.addEventListener(type, (event) => {
        let payload;
        try {
          payload = JSON.parse(event.data);
        } catch {
          return; // not this server's JSON: nothing to show
        }
        this.lastId = event.lastEventId || this.lastId;
        this.onEvent(type, payload.data);
      });
    }
    source.addEventListener("error", () => {
      if (attempt !== this.attempt) return;
      source.close();
      this.source = null;
      this.onDown();
      this.retry();
    });
  }

  retry() {
    if (!this.wanted()) {
      this.running = false; // a new key starts it again (restart)
      return;
    }
    const delay = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)];
    this.failures++;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
