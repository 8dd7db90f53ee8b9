// Talking to /v1: fetch and XHR with the API key, problem+json errors in plain words.
//
// A server with API keys answers 401 without one. The first 401 asks the person for the
// key (through the prompt the page registers); every request that hits a 401 meanwhile
// waits for that same answer, then all of them are sent again with the key. The key is
// kept in sessionStorage: for this tab only, gone when it closes.

const KEY_STORAGE = "uploads-api.key";
export const MAX_KEY_ATTEMPTS = 5;

export class ApiError extends Error {
  constructor(message, { status = 0, code = "" } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

export const NETWORK_ERROR = "Could not reach the server. Check the connection and try again.";
const KEY_NEEDED = "This server needs an API key.";

let promptForKey = async () => null;
let pendingPrompt = null;
let declined = false;
const keyListeners = new Set();

/** `prompt(reason, attempt) -> Promise<string | null>`: null when the person declines. */
export function setKeyPrompt(prompt) {
  promptForKey = prompt;
}

export function onKeyChange(listener) {
  keyListeners.add(listener);
}

export function currentKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || null;
  } catch {
    return null; // storage disabled: the key cannot be kept, requests go without it
  }
}

function storeKey(key) {
  try {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // Storage refused (private mode, quota): the key lives as long as this page does.
  }
  for (const listener of keyListeners) listener(key);
}

export function forgetKey() {
  storeKey(null);
}

/** After the person declined to give a key, ask again only when they choose to. */
export function allowKeyPrompt() {
  declined = false;
}

/**
 * A key to retry with after a 401 for a request sent with `sentKey`. When another request
 * already got a new key in the meantime, that one is used without asking again.
 */
async function keyAfter401(reason, sentKey) {
  const key = currentKey();
  if (key && key !== sentKey) return key;
  if (declined) throw new ApiError(KEY_NEEDED, { status: 401, code: "unauthorized" });
  if (!pendingPrompt) {
    // A wrong key gets the server's own words ("the API key is not valid").
    pendingPrompt = promptForKey(sentKey ? reason : KEY_NEEDED, Boolean(sentKey)).finally(() => {
      pendingPrompt = null;
    });
  }
  const entered = await pendingPrompt;
  if (!entered) {
    declined = true;
    throw new ApiError(KEY_NEEDED, { status: 401, code: "unauthorized" });
  }
  if (entered !== currentKey()) storeKey(entered);
  return entered;
}

/**
 * The key to send again with after a 401 (its body in `bodyText`) to a request that went
 * with `sentKey`; rejects with an ApiError when the person declines to give one.
 */
export function keyAfterRefusal(bodyText, sentKey) {
  return keyAfter401(problemMessage(401, "", bodyText), sentKey);
}

function withKey(headers, key) {
  const merged = new Headers(headers);
  if (key) merged.set("Authorization", `Bearer ${key}`);
  return merged;
}

/** Words for a failed response: the problem's `detail`, else something honest. */
export function problemMessage(status, statusText, bodyText) {
  try {
    const problem = JSON.parse(bodyText);
    if (problem && typeof problem.detail === "string" && problem.detail.trim()) {
      return problem.detail;
    }
    if (problem && typeof problem.title === "string" && problem.title.trim()) {
      return problem.title;
    }
  } catch {
    // Not JSON (a proxy's HTML error page, say): never shown as it is.
  }
  if (status === 0) return NETWORK_ERROR;
  if (status === 413) return "The file is larger than this server accepts.";
  if (status >= 500) return `The server had a problem (${status}). Try again in a moment.`;
  return `The server answered ${status}${statusText ? ` ${statusText}` : ""}.`;
}

function codeOf(bodyText) {
  try {
    const code = JSON.parse(bodyText).code;
    return typeof code === "string" ? code : "";
  } catch {
    return "";
  }
}

/** An ApiError for a failed answer: the problem's words and code when it has them. */
export function errorOf(status, statusText, bodyText) {
  return new ApiError(problemMessage(status, statusText, bodyText), {
    status,
    code: codeOf(bodyText),
  });
}

export async function errorFrom(response) {
  const text = await response.text().catch(() => "");
  return errorOf(response.status, response.statusText, text);
}

/** `fetch` with the key, asking for one on a 401. Resolves to the final Response. */
export async function apiFetch(path, init = {}) {
  for (let attempt = 0; ; attempt++) {
    const key = currentKey();
    let response;
    try {
      response = await fetch(path, {
        ...init,
        headers: withKey(init.headers, key),
        credentials: "same-origin",
      });
    } catch (error) {
      if (error && error.name === "AbortError") throw error;
      throw new ApiError(NETWORK_ERROR);
    }
    if (response.status !== 401 || attempt >= MAX_KEY_ATTEMPTS) return response;
    await keyAfterRefusal(await response.text().catch(() => ""), key);
  }
}

/** JSON of a successful response; an ApiError with the server's words otherwise. */
export async function apiJSON(path, init = {}) {
  const response = await apiFetch(path, init);
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return null;
  return response.json();
}

/**
 * Send one file, one request, reporting upload progress. PUT with the name in the path;
 * names a URL path cannot carry ("", ".", "..") and "check" (the hash check's path, where
 * PUT is not an upload) go as a multipart POST instead.
 * Returns `{ done, abort }`: `done` resolves to the FileRecord; after `abort()` it rejects
 * with an AbortError.
 */
export function uploadFile(file, onProgress) {
  let xhr = null;
  let aborted = false;
  const asForm = ["", ".", "..", "check"].includes(file.name);

  const sendOnce = (key) =>
    new Promise((resolve, reject) => {
      xhr = new XMLHttpRequest();
      if (asForm) xhr.open("POST", "/v1/files");
      else xhr.open("PUT", `/v1/files/${encodeURIComponent(file.name)}`);
      if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
      // Listeners on xhr.upload must exist before send() for progress events to fire.
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress(event.loaded, event.total);
      });
      xhr.addEventListener("load", () =>
        resolve({ status: xhr.status, statusText: xhr.statusText, text: xhr.responseText }),
      );
      xhr.addEventListener("error", () => reject(new ApiError(NETWORK_ERROR)));
      xhr.addEventListener("abort", () =>
        reject(new DOMException("The upload was cancelled.", "AbortError")),
      );
      if (asForm) {
        const form = new FormData();
        form.append("file", file, file.name || "unnamed");
        xhr.send(form);
      } else {
        xhr.send(file);
      }
    });

  const done = (async () => {
    for (let attempt = 0; ; attempt++) {
      const key = currentKey();
      const answer = await sendOnce(key);
      if (answer.status === 401 && attempt < MAX_KEY_ATTEMPTS) {
        await keyAfterRefusal(answer.text, key);
        if (aborted) throw new DOMException("The upload was cancelled.", "AbortError");
        onProgress(0, file.size);
        continue;
      }
      if (answer.status < 200 || answer.status >= 300) {
        throw errorOf(answer.status, answer.statusText, answer.text);
      }
      const body = JSON.parse(answer.text);
      return asForm ? body.files[0] : body;
    }
  })();

  return {
    done,
    abort() {
      aborted = true;
      if (xhr) xhr.abort();
    },
  };
}

/**
 * A URL an <img> can show for an API image. Without a key the API URL itself; with one,
 * the bytes are fetched with the header and shown from a blob: URL, since an <img> cannot
 * send headers. The caller revokes blob URLs it no longer shows (see `releaseURL`).
 */
export async function imageURL(path, signal) {
  if (!currentKey()) return path;
  const response = await apiFetch(path, { signal });
  if (!response.ok) throw await errorFrom(response);
  return URL.createObjectURL(await response.blob());
}

export function releaseURL(url) {
  if (url && url.startsWith("blob:")) URL.revokeObjectURL(url);
}

/**
 * Save a file's original bytes. Without a key a plain link does it (the server sends
 * `Content-Disposition: attachment`, and the browser streams to disk); with a key the
 * bytes are fetched with the header and saved from a blob.
 */
export async function download(path, filename) {
  let href = path;
  if (currentKey()) {
    const response = await apiFetch(path);
    if (!response.ok) throw await errorFrom(response);
    href = URL.createObjectURL(await response.blob());
  }
  const link = document.createElement("a");
  link.href = href;
  link.download = filename || "download";
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The download has started by now; revoking later than needed costs only memory.
  if (href !== path) setTimeout(() => URL.revokeObjectURL(href), 60_000);
}
