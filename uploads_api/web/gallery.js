// Recent uploads as a grid of cards, kept live by the event stream (live.js); polled
// slowly instead, while anything is processing, only when the stream cannot be opened.

import { apiJSON, imageURL, releaseURL } from "./api.js";
import { announce, h, setText } from "./dom.js";
import { extensionLabel, formatBytes, formatDuration } from "./format.js";
import { thumbHashToDataURL } from "./thumbhash.js";

export const PAGE_SIZE = 24;
export const POLL_MS = 5000;
const GRID_THUMB = 256;

export const STATUS_LABELS = { processing: "Processing", ready: "Ready", failed: "Failed" };

/** The thumbnail of `size`, else the nearest larger one, else the largest there is. */
export function pickThumbnail(record, size) {
  const thumbs = [...(record.thumbnails || [])].sort((a, b) => a.size - b.size);
  return thumbs.find((t) => t.size === size) || thumbs.find((t) => t.size > size) || thumbs.at(-1);
}

/** "1.2 MB · 1600 × 1200", "3.4 MB · 12 pages", "800 bytes · ZIP". */
export function summary(record) {
  const meta = record.metadata || {};
  const parts = [formatBytes(record.size)];
  const playable = meta.video || meta.audio;
  if (meta.image && meta.image.width) parts.push(`${meta.image.width}\u00a0×\u00a0${meta.image.height}`);
  else if (playable && playable.duration) parts.push(formatDuration(playable.duration));
  else if (meta.pdf && meta.pdf.pages) parts.push(meta.pdf.pages === 1 ? "1\u00a0page" : `${meta.pdf.pages}\u00a0pages`);
  else parts.push(extensionLabel(record.filename, (record.content_type.split("/")[1] || "file").toUpperCase()));
  return parts.join(" · ");
}

const placeholderCache = new Map();

/** The decoded ThumbHash of a record as a data URL, memoised per hash. */
export function placeholderOf(record) {
  const hash = record.metadata && record.metadata.thumbhash;
  if (typeof hash !== "string" || !hash) return null;
  if (!placeholderCache.has(hash)) placeholderCache.set(hash, thumbHashToDataURL(hash));
  return placeholderCache.get(hash);
}

/**
 * A picture frame: a ThumbHash placeholder under an <img> that fades in once loaded; a
 * file-type tile when there is no picture. `set(record, size)` may be called on every
 * update; it only does work when something changed.
 */
export class Picture {
  constructor(className) {
    this.placeholder = h("span", { class: "picture-placeholder" });
    this.img = h("img", { alt: "", decoding: "async" });
    this.icon = h("span", { class: "file-icon", "aria-hidden": "true" });
    this.node = h("span", { class: `picture ${className}` }, this.placeholder, this.img, this.icon);
    this.path = null;
    this.url = null;
    this.hash = null;
    this.controller = null;
    this.img.addEventListener("load", () => this.node.classList.add("is-loaded"));
    this.img.addEventListener("error", () => {
      if (this.img.getAttribute("src")) this.node.classList.add("is-broken");
    });
  }

  set(record, size) {
    const kind = record.metadata ? record.metadata.kind : record.content_type.startsWith("image/") ? "image" : "other";
    this.node.dataset.kind = kind || "other";
    setText(this.icon, extensionLabel(record.filename, kind === "pdf" ? "PDF" : "FILE"));

    const placeholder = placeholderOf(record);
    if (placeholder !== this.hash) {
      this.hash = placeholder;
      // CSSOM, not a style attribute: allowed by the page's CSP.
      this.placeholder.style.backgroundImage = placeholder ? `url("${placeholder}")` : "";
      this.node.classList.toggle("has-placeholder", Boolean(placeholder));
    }

    const thumb = pickThumbnail(record, size);
    this.node.classList.toggle("has-picture", Boolean(thumb));
    if (!thumb || thumb.url === this.path) return;
    this.path = thumb.url;
    this.load(thumb.url);
  }

  async load(path) {
    if (this.controller) this.controller.abort();
    const controller = new AbortController();
    this.controller = controller;
    this.node.classList.remove("is-loaded", "is-broken");
    try {
      const url = await imageURL(path, controller.signal);
      if (controller.signal.aborted) return releaseURL(url);
      releaseURL(this.url);
      this.url = url;
      this.img.src = url;
    } catch (error) {
      if (error && error.name === "AbortError") return;
      this.node.classList.add("is-broken");
      this.path = null; // try again on the next update
    }
  }

  /** Forget the picture (the dialog closed, the card went away) and free its blob URL. */
  release() {
    if (this.controller) this.controller.abort();
    releaseURL(this.url);
    this.url = null;
    this.path = null;
    this.hash = null;
    this.img.removeAttribute("src");
    this.placeholder.style.backgroundImage = "";
    this.node.classList.remove("is-loaded", "is-broken", "has-placeholder", "has-picture");
  }
}

export class Gallery {
  constructor({ grid, status, moreButton, isBusy, onOpen, onRecord, onError }) {
    this.grid = grid;
    this.status = status;
    this.moreButton = moreButton;
    this.isBusy = isBusy;
    this.onOpen = onOpen;
    this.onRecord = onRecord;
    this.onError = onError;
    this.records = new Map();
    this.cards = new Map();
    this.watched = new Set(); // ids uploaded from this page: their outcome is announced
    this.nextCursor = null;
    this.loading = null;
    this.timer = 0;
    this.loaded = false;
    this.live = false; // the event stream is open: no polling
    moreButton.addEventListener("click", () => this.loadMore());
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && !this.live) this.refresh();
    });
  }

  get processing() {
    for (const record of this.records.values()) if (record.status === "processing") return true;
    return false;
  }

  /** Reload the first page (as many files as are shown), then poll if anything is busy. */
  refresh() {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    clearTimeout(this.timer);
    this.timer = 0;
    const limit = Math.min(1000, Math.max(PAGE_SIZE, this.records.size));
    this.loading = apiJSON(`/v1/files?limit=${limit}`)
      .then((body) => {
        this.show(body.files, { replace: true });
        this.nextCursor = body.next_cursor;
        this.failed = false;
        this.unauthorized = false;
        this.onError(null);
      })
      .catch((error) => {
        this.failed = true;
        this.unauthorized = Boolean(error && error.status === 401);
        this.onError(error);
      })
      .finally(() => {
        this.loading = null;
        this.loaded = true;
        this.updateStatus();
        if (this.again) {
          this.again = false;
          this.refresh();
        } else {
          this.schedule();
        }
      });
    return this.loading;
  }

  /**
   * Without the stream: poll again in POLL_MS while files are processing or uploads are
   * running; else stop. With it, events say what changed.
   */
  schedule() {
    clearTimeout(this.timer);
    this.timer = 0;
    if (this.live || document.hidden || !(this.processing || this.isBusy())) return;
    this.timer = setTimeout(() => this.refresh(), POLL_MS);
  }

  /** The stream opened (`true`) or went down: stop polling, or fall back to it. */
  setLive(live) {
    this.live = live;
    this.schedule();
  }

  /** An event from the stream: `record` as the API answered for it then. */
  apply(type, record) {
    if (!record || typeof record.id !== "string") return;
    // A listing on its way may predate this event: ask again once it is in.
    if (this.loading) this.again = true;
    const card = this.cards.get(record.id);
    if (type === "file.deleted") {
      if (!card) return;
      this.forget(record.id);
      this.onRecord({ ...record, status: "deleted" });
    } else if (card) {
      this.update(card, record);
    } else if (type === "file.created") {
      // Newest first: a new file goes on top, wherever it was uploaded from.
      this.show([record], { replace: false, prepend: true });
    }
    this.updateStatus();
  }

  /** Something started (an upload): make sure the polling loop runs. */
  wake() {
    if (!this.loading && !this.timer) this.schedule();
  }

  async loadMore() {
    if (!this.nextCursor) return;
    this.moreButton.disabled = true;
    try {
      const cursor = encodeURIComponent(this.nextCursor);
      const body = await apiJSON(`/v1/files?limit=${PAGE_SIZE}&cursor=${cursor}`);
      this.show(body.files, { replace: false });
      this.nextCursor = body.next_cursor;
      this.onError(null);
    } catch (error) {
      this.onError(error);
    } finally {
      this.moreButton.disabled = false;
      this.updateStatus();
    }
  }

  /** A file just uploaded from this page: show it at once, and say when it is processed. */
  add(record) {
    this.watched.add(record.id);
    const known = this.records.get(record.id);
    // The stream may have told of it first, with a copy as new or newer: the queue's row
    // follows that one.
    if (known) this.onRecord(known);
    else this.show([record], { replace: false, prepend: true });
    this.updateStatus();
    this.wake();
  }

  forget(id) {
    const card = this.cards.get(id);
    if (card) {
      card.picture.release();
      card.node.remove();
    }
    this.cards.delete(id);
    this.records.delete(id);
    this.watched.delete(id);
    this.updateStatus();
  }

  show(files, { replace, prepend = false }) {
    const ids = new Set(files.map((record) => record.id));
    if (replace) {
      for (const id of [...this.records.keys()]) if (!ids.has(id)) this.forget(id);
    }
    // Insert or move only the cards whose place changed: a focused card keeps its focus.
    let anchor = prepend ? this.grid.firstElementChild : null;
    for (const record of files) {
      const card = this.cards.get(record.id) || this.createCard(record);
      this.update(card, record);
      if (replace) {
        const expected = anchor ? anchor.nextElementSibling : this.grid.firstElementChild;
        if (expected !== card.node) this.grid.insertBefore(card.node, expected);
        anchor = card.node;
      } else if (prepend) {
        this.grid.insertBefore(card.node, anchor);
      } else if (!card.node.parentNode) {
        this.grid.append(card.node);
      }
    }
  }

  createCard(record) {
    const picture = new Picture("card-picture");
    const name = h("bdi", { class: "card-name" });
    const meta = h("span", { class: "card-meta" });
    const badge = h("span", { class: "badge" });
    // No aria-label: the button is named by what it shows (file name, size, the badge when
    // there is one), so people who click by voice can say what they see (WCAG 2.5.3).
    const button = h(
      "button",
      { type: "button", class: "card-open", "aria-haspopup": "dialog" },
      picture.node,
      h("span", { class: "card-text" }, name, meta),
      badge,
    );
    const node = h("li", { class: "card" }, button);
    const card = { node, button, picture, name, meta, badge, status: null };
    button.addEventListener("click", () => this.onOpen(this.records.get(card.id), button));
    card.id = record.id;
    node.dataset.id = record.id;
    this.cards.set(record.id, card);
    return card;
  }

  update(card, record) {
    const previous = this.records.get(record.id);
    this.records.set(record.id, record);
    card.node.dataset.status = record.status;
    setText(card.name, record.filename);
    card.name.title = record.filename;
    setText(card.meta, summary(record));
    setText(card.badge, STATUS_LABELS[record.status] || record.status);
    card.picture.set(record, GRID_THUMB);
    if (previous && previous.status !== record.status && this.watched.has(record.id)) {
      if (record.status === "ready") announce(`${record.filename} is ready`);
      if (record.status === "failed") announce(`Processing ${record.filename} failed`);
    }
    if (record.status !== "processing") this.watched.delete(record.id);
    this.onRecord(record);
  }

  updateStatus() {
    const count = this.records.size;
    let text = "";
    // After a failed load the banner says why; "no files" would not be true.
    if (!this.loaded && !count) text = "Loading files…";
    else if (!count && !this.failed) text = "No files yet. Files you upload appear here.";
    setText(this.status, text);
    this.status.hidden = !text;
    this.moreButton.hidden = !this.nextCursor;
  }
}
