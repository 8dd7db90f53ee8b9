// Large files go up resumably, over tus at /v1/tus/ with tus-js-client, in 8 MiB chunks: a
// dropped connection costs at most the chunk in flight, and a pause holds nothing on the
// server but the bytes so far. tus-js-client keeps each upload's URL in localStorage under
// the file's name, type, size and modification time, so the same file chosen again after
// a reload goes on from the server's offset.

import {
  ApiError,
  apiJSON,
  currentKey,
  errorOf,
  keyAfterRefusal,
  MAX_KEY_ATTEMPTS,
  NETWORK_ERROR,
} from "./api.js";
import { h } from "./dom.js";

const MiB = 1024 * 1024;
/** Files larger than this go over tus; smaller ones in one request, which costs less. */
export const RESUMABLE_ABOVE = 8 * MiB;
const CHUNK_SIZE = 8 * MiB;
const LIBRARY = "/static/vendor/tus.min.js";
// tus-js-client retries network errors, 409 and 423. A writer cut off mid-chunk (a reload)
// may hold the upload's lease for up to 10 s, hence delays that reach past it.
const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 15000];

let library = null;

/** tus-js-client, loaded the first time a large file is sent: most visits never need it. */
function loadLibrary() {
  library ??= new Promise((resolve, reject) => {
    // A classic script, as the build expects (it sets window.tus); 'self' in the CSP.
    const script = h("script", { src: LIBRARY });
    script.addEventListener("load", () => {
      if (window.tus && window.tus.isSupported) resolve(window.tus);
      else reject(new ApiError("This browser cannot send files resumably."));
    });
    script.addEventListener("error", () => {
      library = null; // the next large file tries again
      script.remove();
      reject(new ApiError(NETWORK_ERROR));
    });
    document.head.append(script);
  });
  return library;
}

/**
 * tus-js-client's rule (network errors, 5xx, 409 and 423 are retried) and 429: more
 * uploads in flight for the key than the server allows, which a later try may find free.
 */
function shouldRetry(error) {
  const status = error.originalResponse ? error.originalResponse.getStatus() : 0;
  const worthIt = status < 400 || status >= 500 || [409, 423, 429].includes(status);
  return worthIt && navigator.onLine !== false;
}

const stopped = () => new DOMException("The upload was stopped.", "AbortError");

/** The file a completed upload became: `File-Id`, else the `Link` to it. */
function fileIdOf(response) {
  const id = response.getHeader("File-Id");
  if (id) return id;
  const link = /<\/v1\/files\/([0-9a-f]+)>/.exec(response.getHeader("Link") || "");
  return link ? link[1] : null;
}

/**
 * One file sent over tus. `send()` starts it, or goes on after `pause()` or a failure, and
 * resolves to the FileRecord it became; `pause()` and `cancel()` make a running `send()`
 * reject with an AbortError, and `cancel()` also ends the upload on the server.
 */
export class ResumableUpload {
  constructor(file, onProgress) {
    this.file = file;
    this.onProgress = onProgress;
    this.upload = null;
    this.pending = null; // { resolve, reject } of the send() under way
    this.halted = false;
    this.sentKey = null;
    this.keyAttempts = 0;
  }

  async send() {
    this.halted = false;
    const done = new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
    });
    try {
      const tus = await loadLibrary();
      if (!this.upload) {
        this.upload = new tus.Upload(this.file, this.options());
        await this.resumePrevious();
      }
    } catch (error) {
      this.settle((pending) => pending.reject(error));
    }
    if (!this.halted && this.pending) this.upload.start();
    return done;
  }

  pause() {
    this.halt(false);
  }

  cancel() {
    this.halt(true);
  }

  halt(terminate) {
    this.halted = true;
    // A DELETE that fails leaves the upload to expire on the server.
    if (this.upload) this.upload.abort(terminate).catch(() => {});
    this.settle((pending) => pending.reject(stopped()));
  }

  /** Go on from the newest upload of this file that an earlier page left unfinished. */
  async resumePrevious() {
    const previous = await this.upload.findPreviousUploads();
    previous.sort((a, b) => String(b.creationTime).localeCompare(String(a.creationTime)));
    if (previous.length) this.upload.resumeFromPreviousUpload(previous[0]);
  }

  options() {
    const metadata = { filename: this.file.name };
    if (this.file.type) metadata.filetype = this.file.type;
    return {
      endpoint: new URL("/v1/tus/", window.location.href).href,
      chunkSize: CHUNK_SIZE,
      retryDelays: RETRY_DELAYS,
      onShouldRetry: shouldRetry,
      metadata,
      // A finished upload is a file: the same file chosen again is a new upload.
      removeFingerprintOnSuccess: true,
      onBeforeRequest: (request) => {
        this.sentKey = currentKey();
        if (this.sentKey) request.setHeader("Authorization", `Bearer ${this.sentKey}`);
      },
      onProgress: (sent, total) => this.onProgress(sent, total),
      onSuccess: ({ lastResponse }) => this.finish(lastResponse),
      onError: (error) => this.fail(error),
    };
  }

  async finish(response) {
    const id = fileIdOf(response);
    try {
      if (!id) throw new ApiError("The server did not say which file the upload became.");
      const record = await apiJSON(`/v1/files/${encodeURIComponent(id)}`);
      this.settle((pending) => pending.resolve(record));
    } catch (error) {
      this.settle((pending) => pending.reject(error));
    }
  }

  async fail(error) {
    const response = error.originalResponse || null;
    const status = response ? response.getStatus() : 0;
    if (status === 401 && this.keyAttempts < MAX_KEY_ATTEMPTS && this.pending) {
      this.keyAttempts++;
      try {
        await keyAfterRefusal(response.getBody(), this.sentKey);
      } catch (declined) {
        this.settle((pending) => pending.reject(declined));
        return;
      }
      if (!this.halted && this.pending) this.upload.start();
      return;
    }
    let failure;
    if (response) failure = errorOf(status, "", response.getBody());
    else if (error.originalRequest) failure = new ApiError(NETWORK_ERROR);
    else failure = new ApiError("The file could not be read. Choose it again.");
    this.settle((pending) => pending.reject(failure));
  }

  settle(how) {
    const pending = this.pending;
    this.pending = null;
    if (pending) how(pending);
  }
}
