// The upload queue: one row per file, three files at a time. A file goes up in one request,
// or, past RESUMABLE_ABOVE, resumably over tus, in chunks, with Pause and Resume.

import { uploadFile } from "./api.js";
import { announce, h, setText } from "./dom.js";
import { extensionLabel, formatBytes, formatPercent } from "./format.js";
import { RESUMABLE_ABOVE, ResumableUpload } from "./resumable.js";

export const CONCURRENCY = 3;
// Local previews decode the original in the page; past this size they cost too much.
const PREVIEW_MAX_BYTES = 25_000_000;

let nextId = 1;

// Rows still to finish: "Clear finished" leaves them.
const UNFINISHED = ["queued", "uploading", "paused"];

/**
 * States: queued → uploading → uploaded (→ processed or failed via `follow`), or failed,
 * or cancelled. A failed or cancelled row can be sent again. A resumable upload can also
 * be paused (it leaves its slot) and resumed (queued again; it goes on from its offset).
 */
export class UploadQueue {
  constructor({ list, section, summary, clearButton, onUploaded, onActivity }) {
    this.list = list;
    this.section = section;
    this.summary = summary;
    this.clearButton = clearButton;
    this.onUploaded = onUploaded;
    this.onActivity = onActivity;
    this.items = [];
    this.lastSummary = "";
    clearButton.addEventListener("click", () => this.clearFinished());
  }

  get active() {
    return this.items.some((item) => item.state === "queued" || item.state === "uploading");
  }

  add(files) {
    const added = [];
    for (const file of files) {
      const item = { id: nextId++, file, state: "queued", loaded: 0, record: null, error: "" };
      item.row = this.renderRow(item);
      this.updateRow(item);
      this.items.push(item);
      this.list.append(item.row);
      added.push(item);
    }
    if (!added.length) return;
    this.section.hidden = false;
    announce(added.length === 1 ? `Uploading ${added[0].file.name}` : `Uploading ${added.length} files`);
    this.pump();
  }

  /** Start queued uploads while fewer than CONCURRENCY are running. */
  pump() {
    let running = this.items.filter((item) => item.state === "uploading").length;
    for (const item of this.items) {
      if (running >= CONCURRENCY) break;
      if (item.state !== "queued") continue;
      running++;
      this.start(item);
    }
    this.update();
  }

  async start(item) {
    item.state = "uploading";
    item.error = "";
    item.pausing = false;
    const transfer = this.transfer(item);
    item.abort = () => transfer.abort();
    this.updateRow(item);
    this.onActivity();
    try {
      item.record = await transfer.done;
      item.loaded = item.file.size;
      item.state = "uploaded";
      this.onUploaded(item.record);
    } catch (error) {
      if (error && error.name === "AbortError") {
        item.state = item.pausing ? "paused" : "cancelled";
      } else {
        item.state = "failed";
        item.error = (error && error.message) || "The upload failed.";
        announce(`${item.file.name} was not uploaded: ${item.error}`);
      }
    } finally {
      item.abort = null;
      this.updateRow(item);
      this.pump();
    }
  }

  /** One request, or a resumable upload that goes on where it stopped when started again. */
  transfer(item) {
    const onProgress = (loaded) => {
      item.loaded = loaded;
      this.updateRow(item);
      this.updateSummary();
    };
    if (item.file.size <= RESUMABLE_ABOVE) {
      item.loaded = 0;
      return uploadFile(item.file, onProgress);
    }
    item.resumable ??= new ResumableUpload(item.file, onProgress);
    return { done: item.resumable.send(), abort: () => item.resumable.cancel() };
  }

  pause(item) {
    if (item.state !== "uploading" || !item.resumable) return;
    item.pausing = true;
    item.resumable.pause();
    announce(`Paused ${item.file.name}`);
  }

  resume(item) {
    if (item.state !== "paused") return;
    item.state = "queued";
    this.updateRow(item);
    this.pump();
    this.onActivity();
    announce(`Resuming ${item.file.name}`);
  }

  cancel(item) {
    if (item.state === "queued" || item.state === "paused") {
      // Ends the upload on the server too, if it was started.
      if (item.resumable) item.resumable.cancel();
      item.state = "cancelled";
      this.updateRow(item);
      this.update();
    } else if (item.state === "uploading" && item.abort) {
      item.abort();
    }
    announce(`Cancelled ${item.file.name}`);
  }

  retry(item) {
    // A failed resumable upload goes on from its offset; a cancelled one was ended.
    if (item.state === "cancelled") item.resumable = null;
    if (!item.resumable) item.loaded = 0;
    item.state = "queued";
    item.error = "";
    this.updateRow(item);
    this.pump();
    this.onActivity();
  }

  remove(item) {
    if (UNFINISHED.includes(item.state)) this.cancel(item);
    const index = this.items.indexOf(item);
    const next = this.items[index + 1] || this.items[index - 1];
    this.items.splice(index, 1);
    if (item.previewURL) URL.revokeObjectURL(item.previewURL);
    item.row.remove();
    if (next) next.row.querySelector("button")?.focus();
    this.update();
  }

  clearFinished() {
    for (const item of [...this.items]) {
      if (!UNFINISHED.includes(item.state)) this.remove(item);
    }
    if (!this.items.length) this.section.hidden = true;
  }

  /** A gallery record changed: rows of files uploaded here follow their processing. */
  follow(record) {
    for (const item of this.items) {
      if (item.record && item.record.id === record.id) {
        item.record = record;
        this.updateRow(item);
      }
    }
    this.updateSummary();
  }

  renderRow(item) {
    const { file } = item;
    const preview = h("span", { class: "upload-thumb", "aria-hidden": "true" });
    if (file.type.startsWith("image/") && file.size <= PREVIEW_MAX_BYTES) {
      item.previewURL = URL.createObjectURL(file);
      const img = h("img", { alt: "", src: item.previewURL, decoding: "async" });
      // Formats the browser cannot show (HEIC, TIFF) fall back to the type label.
      img.addEventListener("error", () => img.replaceWith(h("span", { text: extensionLabel(file.name) })));
      preview.append(img);
    } else {
      preview.append(h("span", { text: extensionLabel(file.name) }));
    }
    const progress = h("progress", { max: "100", value: "0" });
    progress.setAttribute("aria-label", `Upload of ${file.name}`);
    const row = h(
      "li",
      { class: "upload", dataset: { uploadId: String(item.id) } },
      preview,
      h(
        "div",
        { class: "upload-line" },
        h("bdi", { class: "upload-name", title: file.name, text: file.name || "(no name)" }),
        h("span", { class: "upload-size", text: formatBytes(file.size) }),
      ),
      progress,
      h("span", { class: "upload-status" }),
      h("div", { class: "upload-actions" }),
    );
    item.progress = progress;
    item.status = row.querySelector(".upload-status");
    item.actions = row.querySelector(".upload-actions");
    item.shownActions = "";
    return row;
  }

  updateRow(item) {
    const { row, file, progress } = item;
    let state = item.state;
    if (state === "uploaded" && item.record) {
      if (item.record.status === "ready") state = "done";
      else if (item.record.status === "failed") state = "processing-failed";
      else if (item.record.status === "deleted") state = "deleted";
    }
    row.dataset.state = state;
    const total = file.size;
    const fraction = total > 0 ? item.loaded / total : item.state === "queued" ? 0 : 1;
    const percent = ["uploaded", "done", "processing-failed", "deleted"].includes(state) ? 100 : Math.floor(fraction * 100);
    if (progress.value !== percent) progress.value = percent;
    progress.setAttribute("aria-valuetext", `${percent} %`);
    const status = {
      queued: "Waiting to upload",
      uploading: `${formatPercent(fraction)} · ${formatBytes(item.loaded)} of ${formatBytes(total)}`,
      paused: `Paused · ${formatPercent(fraction)} · ${formatBytes(item.loaded)} of ${formatBytes(total)}`,
      uploaded: "100 % · processing…",
      done: "100 % · ready",
      "processing-failed": "100 % · uploaded, but processing failed",
      deleted: "100 % · deleted since",
      failed: item.error,
      cancelled: "Cancelled",
    }[state];
    setText(item.status, status);
    item.status.classList.toggle("is-error", state === "failed");
    this.renderActions(item, state);
  }

  renderActions(item, state) {
    let kind = "done";
    if (state === "uploading" && item.resumable) kind = "pause";
    else if (state === "paused") kind = "resume";
    else if (["queued", "uploading"].includes(state)) kind = "cancel";
    else if (["failed", "cancelled"].includes(state)) kind = "retry";
    if (item.shownActions === kind) return;
    const hadFocus = item.actions.contains(document.activeElement);
    item.shownActions = kind;
    const name = item.file.name;
    const button = (text, label, onclick, style = "button small") =>
      h("button", { type: "button", class: style, text, "aria-label": label, onclick });
    const remove = () =>
      button("Remove", `Remove ${name} from the list`, () => this.remove(item), "button small subtle");
    const cancel = () => button("Cancel", `Cancel upload of ${name}`, () => this.cancel(item));
    // Pause and Resume come first: the one clicked is replaced by the other, which takes focus.
    const buttons = {
      pause: [button("Pause", `Pause upload of ${name}`, () => this.pause(item)), cancel()],
      resume: [button("Resume", `Resume upload of ${name}`, () => this.resume(item)), cancel()],
      cancel: [cancel()],
      retry: [button("Retry", `Retry upload of ${name}`, () => this.retry(item)), remove()],
      done: [remove()],
    }[kind];
    item.actions.replaceChildren(...buttons);
    if (hadFocus) buttons[0].focus();
  }

  update() {
    this.updateSummary();
    const finished = this.items.some((item) => !UNFINISHED.includes(item.state));
    this.clearButton.hidden = !finished;
  }

  updateSummary() {
    const items = this.items;
    if (!items.length) {
      setText(this.summary, "");
      return;
    }
    const sending = items.filter((item) => item.state === "uploading" || item.state === "queued");
    const failed = items.filter((item) => item.state === "failed").length;
    const paused = items.filter((item) => item.state === "paused").length;
    const sent = items.filter((item) => item.state === "uploaded").length;
    let text;
    if (sending.length) {
      const counted = items.filter((item) => ["queued", "uploading", "uploaded"].includes(item.state));
      const total = counted.reduce((sum, item) => sum + item.file.size, 0);
      const loaded = counted.reduce(
        (sum, item) => sum + (item.state === "uploaded" ? item.file.size : item.loaded),
        0,
      );
      // Steps of 10 % keep screen readers from reading out every progress event.
      const percent = total ? Math.floor((loaded / total) * 10) * 10 : 0;
      const left = sending.length === 1 ? "1 file left" : `${sending.length} files left`;
      text = `Uploading · ${left} · ${percent} % done`;
      if (paused) text += ` · ${paused} paused`;
    } else {
      text = `${sent} uploaded`;
      if (failed) text += ` · ${failed} failed`;
      if (paused) text += ` · ${paused} paused`;
      const cancelled = items.filter((item) => item.state === "cancelled").length;
      if (cancelled) text += ` · ${cancelled} cancelled`;
    }
    if (text !== this.lastSummary) {
      this.lastSummary = text;
      setText(this.summary, text);
    }
  }
}
