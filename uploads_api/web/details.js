// The details dialog: a larger preview, the metadata, the tasks, download, a shareable
// link and delete.

import { ApiError, apiJSON, download } from "./api.js";
import { announce, byId, h, setText } from "./dom.js";
import {
  formatBytes,
  formatCoordinate,
  formatDate,
  formatDuration,
  formatExifDate,
  formatExposure,
  formatNumber,
} from "./format.js";
import { Picture, STATUS_LABELS } from "./gallery.js";

const PREVIEW_SIZE = 1024;
// A shared link reads the file without a key for this long (the server's default maximum).
const LINK_SECONDS = 7 * 24 * 3600;
const KINDS = {
  image: "Image",
  video: "Video",
  audio: "Audio",
  pdf: "PDF document",
  other: "Other file",
};
const TASK_NAMES = { metadata: "Metadata", thumbnails: "Thumbnails", cleanup: "Clean-up" };
const TASK_STATES = {
  queued: "Waiting",
  running: "Running",
  succeeded: "Done",
  failed: "Failed",
  skipped: "Skipped",
};

/** [label, value] pairs; a value may be a node. Missing fields are left out. */
export function metadataRows(record) {
  const meta = record.metadata || {};
  const rows = [
    ["Type", meta.mime_type || record.content_type],
    ["Kind", KINDS[meta.kind] || meta.kind],
    ["Size", `${formatBytes(record.size)} (${record.size.toLocaleString()} bytes)`],
    ["Uploaded", formatDate(record.created_at)],
  ];
  const image = meta.image;
  if (image) {
    rows.push(["Dimensions", `${image.width} × ${image.height} px`]);
    const format = [image.format, image.frames > 1 ? `${image.frames} frames` : null];
    rows.push(["Format", format.filter(Boolean).join(" · ")]);
    rows.push(["Colour", [image.mode, image.has_alpha ? "with transparency" : null].filter(Boolean).join(", ")]);
    const exif = image.exif || {};
    const camera = [exif.make, exif.model].filter(Boolean).join(" ");
    if (camera) rows.push(["Camera", camera]);
    if (exif.lens) rows.push(["Lens", exif.lens]);
    if (exif.datetime_original) rows.push(["Taken", formatExifDate(exif.datetime_original)]);
    if (exif.exposure_time) rows.push(["Exposure", formatExposure(exif.exposure_time)]);
    if (exif.f_number) rows.push(["Aperture", `f/${formatNumber(exif.f_number)}`]);
    if (exif.iso) rows.push(["ISO", String(exif.iso)]);
    if (exif.focal_length) rows.push(["Focal length", `${formatNumber(exif.focal_length)} mm`]);
    const gps = exif.gps;
    if (gps && Number.isFinite(Number(gps.latitude)) && Number.isFinite(Number(gps.longitude))) {
      rows.push(["Location", locationNode(gps)]);
    }
  }
  const video = meta.video;
  if (video) {
    rows.push(["Duration", formatDuration(video.duration)]);
    rows.push(["Dimensions", `${video.width} × ${video.height} px`]);
    const stream = [video.codec, video.fps ? `${formatNumber(video.fps, 2)} fps` : null];
    rows.push(["Video", stream.filter(Boolean).join(" · ")]);
    rows.push(["Sound", video.has_audio ? "Yes" : "No"]);
  }
  const audio = meta.audio;
  if (audio) {
    const tags = audio.tags || {};
    if (tags.title) rows.push(["Title", tags.title]);
    if (tags.artist) rows.push(["Artist", tags.artist]);
    const album = [tags.album, tags.year ? `(${tags.year})` : null].filter(Boolean).join(" ");
    if (album) rows.push(["Album", album]);
    if (tags.track) rows.push(["Track", String(tags.track)]);
    if (tags.genre) rows.push(["Genre", tags.genre]);
    rows.push(["Duration", formatDuration(audio.duration)]);
    const quality = [
      audio.sample_rate ? `${formatNumber(audio.sample_rate / 1000, 1)} kHz` : null,
      audio.channels ? `${audio.channels} ch` : null,
      audio.bit_rate ? `${Math.round(audio.bit_rate / 1000)} kbit/s` : null,
    ];
    rows.push(["Audio", quality.filter(Boolean).join(" · ")]);
  }
  const pdf = meta.pdf;
  if (pdf) {
    if (pdf.title) rows.push(["Title", pdf.title]);
    if (pdf.author) rows.push(["Author", pdf.author]);
    if (pdf.pages !== undefined && pdf.pages !== null) rows.push(["Pages", String(pdf.pages)]);
    if (pdf.created) rows.push(["Created", formatExifDate(pdf.created)]);
    if (pdf.encrypted) rows.push(["Protected", "Encrypted"]);
  }
  rows.push(["SHA-256", h("code", { class: "hash", text: record.sha256 })]);
  return rows.filter(([, value]) => value !== undefined && value !== null && value !== "");
}

function locationNode(gps) {
  const lat = Number(gps.latitude);
  const lon = Number(gps.longitude);
  let text = `${formatCoordinate(lat, "N", "S")}, ${formatCoordinate(lon, "E", "W")}`;
  if (Number.isFinite(Number(gps.altitude))) text += ` · ${formatNumber(gps.altitude, 0)} m`;
  const url = `https://www.openstreetmap.org/?mlat=${lat}&mlon=${lon}#map=15/${lat}/${lon}`;
  return h(
    "span",
    {},
    text,
    " ",
    h("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: "Map" }),
  );
}

function taskLine(task) {
  let state = TASK_STATES[task.state] || task.state;
  if (task.attempts > 1) state += ` (attempt ${task.attempts})`;
  return h(
    "li",
    { class: "task", dataset: { state: task.state } },
    h("span", { class: "task-name", text: TASK_NAMES[task.name] || task.name }),
    h("span", { class: "task-state", text: state }),
    task.error ? h("span", { class: "task-error", text: task.error }) : null,
  );
}

export class DetailsDialog {
  constructor({ gallery, onDeleted }) {
    this.gallery = gallery;
    this.onDeleted = onDeleted;
    this.dialog = byId("details");
    this.title = byId("details-title");
    this.statusLine = byId("details-status");
    this.meta = byId("details-meta");
    this.tasks = byId("details-tasks");
    this.error = byId("details-error");
    this.shareStatus = byId("details-share-status");
    this.confirm = byId("delete-confirm");
    this.confirmText = byId("confirm-text");
    this.buttons = {
      close: byId("details-close"),
      download: byId("details-download"),
      share: byId("details-share"),
      retry: byId("details-retry"),
      del: byId("details-delete"),
      confirmDelete: byId("confirm-delete"),
      cancelDelete: byId("cancel-delete"),
    };
    this.picture = new Picture("details-picture");
    byId("details-preview").append(this.picture.node);
    this.record = null;

    this.buttons.close.addEventListener("click", () => this.dialog.close());
    this.buttons.download.addEventListener("click", () => this.download());
    this.buttons.share.addEventListener("click", () => this.share());
    this.buttons.retry.addEventListener("click", () => this.retry());
    this.buttons.del.addEventListener("click", () => this.askDelete());
    this.buttons.cancelDelete.addEventListener("click", () => this.cancelDelete());
    this.buttons.confirmDelete.addEventListener("click", () => this.delete());
    // A click on the backdrop (the dialog box itself, outside its content) closes it.
    this.dialog.addEventListener("click", (event) => {
      if (event.target === this.dialog) this.dialog.close();
    });
    this.dialog.addEventListener("close", () => {
      this.picture.release();
      this.record = null;
      if (this.returnFocus && this.returnFocus.isConnected) this.returnFocus.focus();
      else byId("gallery-heading").focus();
    });
  }

  open(record, opener) {
    this.returnFocus = opener;
    this.record = record;
    this.cancelDelete(false);
    this.showError(null);
    this.showShared(null);
    this.render(record);
    if (!this.dialog.open) this.dialog.showModal();
    this.buttons.close.focus();
  }

  /** The gallery got a newer copy of a record: refresh the dialog if it shows that one. */
  update(record) {
    if (this.record && this.record.id === record.id && this.dialog.open) {
      this.record = record;
      this.render(record);
    }
  }

  render(record) {
    setText(this.title, record.filename);
    this.title.title = record.filename;
    this.dialog.dataset.status = record.status;
    setText(this.statusLine, STATUS_LABELS[record.status] || record.status);
    this.statusLine.dataset.status = record.status;
    this.picture.set(record, PREVIEW_SIZE);
    const image = record.metadata && record.metadata.image;
    this.picture.node.classList.toggle("is-portrait", Boolean(image && image.height > image.width));
    this.meta.replaceChildren(
      ...metadataRows(record).map(([label, value]) =>
        h("div", { class: "meta-row" }, h("dt", { text: label }), h("dd", {}, value)),
      ),
    );
    if (!record.metadata) {
      this.meta.append(
        h("div", { class: "meta-row" }, h("dt", { text: "Metadata" }), h("dd", { text: "Not read yet" })),
      );
    }
    this.tasks.replaceChildren(...(record.tasks || []).map(taskLine));
    this.buttons.retry.hidden = record.status !== "failed";
  }

  showError(error) {
    setText(this.error, error ? error.message : "");
    this.error.hidden = !error;
  }

  async download() {
    const record = this.record;
    if (!record) return;
    this.buttons.download.disabled = true;
    this.showError(null);
    try {
      await download(record.links.content, record.filename);
    } catch (error) {
      this.showError(error);
    } finally {
      this.buttons.download.disabled = false;
    }
  }

  showShared(text) {
    setText(this.shareStatus, text || "");
    this.shareStatus.hidden = !text;
  }

  /** A signed link to the bytes, valid for a week without a key, put on the clipboard. */
  async share() {
    const record = this.record;
    if (!record) return;
    this.buttons.share.disabled = true;
    this.showError(null);
    this.showShared(null);
    try {
      const link = await apiJSON(`/v1/files/${encodeURIComponent(record.id)}/links`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ target: "content", expires_in: LINK_SECONDS }),
      });
      const until = formatDate(link.expires_at);
      try {
        await navigator.clipboard.writeText(link.url);
        this.showShared(`Link copied. Anyone with it can download this file until ${until}.`);
        announce(`Link to ${record.filename} copied`);
      } catch {
        // No clipboard (permission refused, not a secure context): show it to copy by hand.
        this.showShared(`Copy this link (it works until ${until}): ${link.url}`);
      }
    } catch (error) {
      this.showError(error);
    } finally {
      this.buttons.share.disabled = false;
    }
  }

  async retry() {
    const record = this.record;
    if (!record) return;
    this.buttons.retry.disabled = true;
    this.showError(null);
    try {
      const updated = await apiJSON(`/v1/files/${encodeURIComponent(record.id)}/retry`, { method: "POST" });
      this.gallery.show([updated], { replace: false });
      this.gallery.wake();
      announce(`Processing ${record.filename} again`);
    } catch (error) {
      this.showError(error);
    } finally {
      this.buttons.retry.disabled = false;
    }
  }

  askDelete() {
    if (!this.record) return;
    setText(this.confirmText, `Delete “${this.record.filename}”? This cannot be undone.`);
    this.confirm.hidden = false;
    this.buttons.del.hidden = true;
    this.buttons.cancelDelete.focus();
  }

  cancelDelete(refocus = true) {
    const wasOpen = !this.confirm.hidden;
    this.confirm.hidden = true;
    this.buttons.del.hidden = false;
    this.buttons.confirmDelete.disabled = false;
    if (refocus && wasOpen) this.buttons.del.focus();
  }

  async delete() {
    const record = this.record;
    if (!record) return;
    this.buttons.confirmDelete.disabled = true;
    this.showError(null);
    try {
      await apiJSON(`/v1/files/${encodeURIComponent(record.id)}`, { method: "DELETE" });
    } catch (error) {
      // Already gone is what was asked for.
      if (!(error instanceof ApiError && error.status === 404)) {
        this.buttons.confirmDelete.disabled = false;
        this.showError(error);
        return;
      }
    }
    const next = this.nextFocus(record.id);
    this.gallery.forget(record.id);
    this.onDeleted(record);
    this.returnFocus = next;
    this.dialog.close();
    announce(`Deleted ${record.filename}`);
  }

  /** Where focus goes once a card is gone: its neighbour, else the gallery heading. */
  nextFocus(id) {
    const card = this.gallery.cards.get(id);
    const li = card && card.node;
    const neighbour = li && (li.nextElementSibling || li.previousElementSibling);
    return neighbour ? neighbour.querySelector("button") : null;
  }
}
