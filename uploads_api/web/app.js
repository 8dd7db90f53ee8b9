// The upload page: wires the drop zone, the upload queue, the gallery and the dialogs.

import { allowKeyPrompt, currentKey, forgetKey, onKeyChange, setKeyPrompt } from "./api.js";
import { DetailsDialog } from "./details.js";
import { announce, byId, h, setText } from "./dom.js";
import { Gallery } from "./gallery.js";
import { LiveEvents } from "./live.js";
import { UploadQueue } from "./uploads.js";

const banner = byId("banner");

/** One message at a time above the queue; `action` is an optional [label, handler]. */
function showBanner(message, action) {
  if (!message) {
    banner.hidden = true;
    banner.replaceChildren();
    return;
  }
  const children = [h("p", { text: message })];
  if (action) {
    children.push(h("button", { type: "button", class: "button small", text: action[0], onclick: action[1] }));
  }
  banner.replaceChildren(...children);
  banner.hidden = false;
}

function showGalleryError(error) {
  if (!error) {
    if (banner.dataset.source === "gallery") showBanner(null);
    return;
  }
  banner.dataset.source = "gallery";
  if (error.status === 401) {
    showBanner("This server needs an API key to show and accept files.", [
      "Enter API key",
      () => {
        allowKeyPrompt();
        gallery.refresh();
      },
    ]);
  } else {
    showBanner(`Could not load the files: ${error.message}`, ["Try again", () => gallery.refresh()]);
  }
}

// --- API key -----------------------------------------------------------------------------

const keyDialog = byId("key-dialog");
const keyForm = byId("key-form");
const keyInput = byId("key-input");
const keyError = byId("key-error");
const forgetButton = byId("forget-key");

/** Ask for the key in a small form; resolves to the key, or null when cancelled. */
function askForKey(reason, wasWrong) {
  return new Promise((resolve) => {
    setText(byId("key-reason"), wasWrong ? "" : reason);
    setText(keyError, wasWrong ? reason : "");
    keyError.hidden = !wasWrong;
    keyInput.value = "";
    keyInput.setAttribute("aria-invalid", wasWrong ? "true" : "false");
    const finish = () => {
      keyDialog.removeEventListener("close", finish);
      const value = keyDialog.returnValue === "ok" ? keyInput.value.trim() : "";
      keyInput.value = "";
      resolve(value || null);
    };
    keyDialog.addEventListener("close", finish);
    keyDialog.returnValue = "";
    keyDialog.showModal();
    keyInput.focus();
  });
}

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!keyInput.value.trim()) {
    setText(keyError, "Enter the API key, or cancel.");
    keyError.hidden = false;
    keyInput.focus();
    return;
  }
  keyDialog.close("ok");
});
byId("key-cancel").addEventListener("click", () => keyDialog.close("cancel"));

setKeyPrompt(askForKey);
onKeyChange((key) => {
  forgetButton.hidden = !key;
  live.restart();
});
forgetButton.hidden = !currentKey();
forgetButton.addEventListener("click", () => {
  forgetKey();
  allowKeyPrompt();
  announce("The API key was forgotten for this tab.");
  gallery.refresh();
});

// --- Queue, gallery, details -------------------------------------------------------------

const queue = new UploadQueue({
  list: byId("queue-list"),
  section: byId("queue"),
  summary: byId("queue-summary"),
  clearButton: byId("clear-finished"),
  onUploaded: (record) => gallery.add(record),
  onActivity: () => gallery.wake(),
});

const gallery = new Gallery({
  grid: byId("gallery-grid"),
  status: byId("gallery-status"),
  moreButton: byId("load-more"),
  isBusy: () => queue.active,
  onOpen: (record, opener) => details.open(record, opener),
  onRecord: (record) => {
    queue.follow(record);
    details.update(record);
  },
  onError: showGalleryError,
});

const details = new DetailsDialog({
  gallery,
  onDeleted: (record) => queue.follow({ ...record, status: "deleted" }),
});

byId("refresh").addEventListener("click", () => gallery.refresh());

// --- Live updates --------------------------------------------------------------------------

const live = new LiveEvents({
  onEvent: (type, record) => gallery.apply(type, record),
  onOpen: (resumed) => {
    gallery.setLive(true);
    // A new stream starts from now: what changed before it opened comes with a listing.
    // A resumed one carries on after the last event seen, so nothing was missed.
    const synced = resumed ? Promise.resolve() : gallery.refresh();
    synced.finally(() => {
      if (live.open) document.documentElement.dataset.live = "true";
    });
  },
  onDown: () => {
    gallery.setLive(false);
    delete document.documentElement.dataset.live;
  },
  wanted: () => !gallery.unauthorized,
});

// --- Choosing files: picker, drag and drop, paste ----------------------------------------

const dropzone = byId("dropzone");
const input = byId("file-input");

byId("pick").addEventListener("click", () => input.click());
input.addEventListener("change", () => {
  queue.add([...input.files]);
  input.value = ""; // choosing the same file again fires change again
});

/** Files in a drop, folders walked (where the browser exposes them) to their files. */
async function droppedFiles(dataTransfer) {
  const entries = [...(dataTransfer.items || [])]
    .filter((item) => item.kind === "file")
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
  if (!entries.some((entry) => entry && entry.isDirectory)) return [...dataTransfer.files];
  const files = [];
  const walk = async (entry) => {
    if (!entry) return;
    if (entry.isFile) {
      files.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
      return;
    }
    const reader = entry.createReader();
    // readEntries hands out a directory in batches until it returns an empty one.
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      for (const child of batch) await walk(child);
    }
  };
  for (const entry of entries) await walk(entry);
  return files;
}

let dragDepth = 0;
const hasFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");

// The whole window takes drops, so a file that misses the zone is not opened by the browser.
window.addEventListener("dragenter", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  dragDepth++;
  dropzone.classList.add("is-over");
});
window.addEventListener("dragover", (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "copy";
});
window.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) dropzone.classList.remove("is-over");
});
window.addEventListener("drop", async (event) => {
  if (!hasFiles(event)) return;
  event.preventDefault();
  dragDepth = 0;
  dropzone.classList.remove("is-over");
  try {
    queue.add(await droppedFiles(event.dataTransfer));
  } catch {
    banner.dataset.source = "drop";
    showBanner("Some of the dropped files could not be read.");
  }
});

document.addEventListener("paste", (event) => {
  const files = [...(event.clipboardData?.files || [])];
  if (!files.length) return;
  event.preventDefault();
  queue.add(files);
});

window.addEventListener("beforeunload", (event) => {
  if (queue.active) event.preventDefault();
});

gallery.updateStatus();
// The stream opens after the first listing: by then a key was asked for if one is needed.
// Declined, the page waits for one; the server unreachable, the stream keeps trying.
gallery.refresh().then(() => {
  if (!gallery.unauthorized) live.start();
});
document.documentElement.dataset.ready = "true";
