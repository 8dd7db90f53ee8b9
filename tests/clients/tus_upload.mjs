// Uploads one file over tus with tus-js-client, as a Node program would, and prints one JSON
// line: what happened. tests/test_tus_js.py runs it against a real server.
//
//   node tests/clients/tus_upload.mjs <endpoint> <file> [options as JSON]
//
// Options (all optional):
//   headers: sent with every request (an Authorization header, say)
//   metadata: the upload's (filename, filetype)
//   chunkSize, parallelUploads, uploadDataDuringCreation, overridePatchMethod, retryDelays,
//     uploadUrl (an upload to resume, found by the caller): passed to tus-js-client as they are
//   urlStorage: a JSON file where upload URLs are kept (tus-js-client's FileUrlStorage), so
//     that a later run can resume; without it nothing is kept
//   resume: look the file up in urlStorage and resume the most recent upload found there
//   stopAfterBytes: abort once the server has acknowledged at least this many bytes in this
//     run, as a client that goes away would (the URLs stay in urlStorage)
//
// The line: {"url", "fileId", "bytesAccepted" (acknowledged in this run), "aborted",
// "resumedFrom" (the stored upload resumed, or null), "retries" (why each retry happened),
// "error" ({"message", "status"} or null)}. The exit code is 0 unless an error was reported.
//
// tus-js-client is read from .cache/node (`make test-tools`), never fetched.

import { createReadStream } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(new URL("../../.cache/node/package.json", import.meta.url));
const tus = require("tus-js-client");

const [endpoint, path, rawOptions] = process.argv.slice(2);
if (!endpoint || !path) {
  console.error("usage: node tus_upload.mjs <endpoint> <file> [options as JSON]");
  process.exit(2);
}
const options = JSON.parse(rawOptions ?? "{}");

const result = {
  url: null,
  fileId: null,
  bytesAccepted: 0,
  aborted: false,
  resumedFrom: null,
  retries: [],
  error: null,
};

// The options given, of those named: tus-js-client's defaults stand for the others.
function pick(given, ...names) {
  const present = names.filter((name) => name in given);
  return Object.fromEntries(present.map((name) => [name, given[name]]));
}

function statusOf(error) {
  const response = error?.originalResponse;
  return response ? response.getStatus() : null;
}

const settled = new Promise((resolve) => {
  const upload = new tus.Upload(createReadStream(path), {
    endpoint,
    headers: options.headers ?? {},
    metadata: options.metadata ?? {},
    ...pick(options, "chunkSize", "parallelUploads", "retryDelays", "uploadUrl"),
    uploadDataDuringCreation: Boolean(options.uploadDataDuringCreation),
    overridePatchMethod: Boolean(options.overridePatchMethod),
    ...(options.urlStorage && { urlStorage: new tus.FileUrlStorage(options.urlStorage) }),
    // The library's own rule, with each retry noted: a test sees what a user would not.
    onShouldRetry(error, attempt, uploadOptions) {
      const retry = tus.defaultOptions.onShouldRetry(error, attempt, uploadOptions);
      if (retry) result.retries.push(`${statusOf(error) ?? "no response"}: ${error.message}`);
      return retry;
    },
    // With parallelUploads each partial upload reports its own chunks: summed here.
    onChunkComplete(chunkSize) {
      result.bytesAccepted += chunkSize;
      const stop = options.stopAfterBytes ?? Number.POSITIVE_INFINITY;
      if (!result.aborted && result.bytesAccepted >= stop) {
        result.aborted = true;
        upload.abort().then(() => resolve(upload), resolve);
      }
    },
    onSuccess({ lastResponse }) {
      result.fileId = lastResponse?.getHeader("File-Id") ?? null;
      resolve(upload);
    },
    onError(error) {
      result.error = { message: error.message, status: statusOf(error) };
      resolve(upload);
    },
  });

  const begin = async () => {
    if (options.resume) {
      const previous = await upload.findPreviousUploads();
      if (previous.length > 0) {
        const latest = previous[previous.length - 1];
        result.resumedFrom = latest.uploadUrl ?? latest.parallelUploadUrls ?? null;
        upload.resumeFromPreviousUpload(latest);
      }
    }
    upload.start();
  };
  begin().catch((error) => {
    result.error = { message: String(error?.message ?? error), status: null };
    resolve(upload);
  });
});

const upload = await settled;
// An aborted parallel upload has no URL of its own yet (its parts have, in urlStorage).
result.url = upload.url ?? null;
console.log(JSON.stringify(result));
process.exitCode = result.error ? 1 : 0;
