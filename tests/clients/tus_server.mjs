// The reference tus server, @tus/server with its file store, for tests/test_tus_interop.py:
//
//   node tests/clients/tus_server.mjs <port> <directory>
//
// serves /v1/tus/ on 127.0.0.1 (the path this project's clients use) and prints one JSON
// line once it listens. The packages are read from .cache/node (`make test-tools`).

import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const require = createRequire(new URL("../../.cache/node/package.json", import.meta.url));
const load = async (name) => import(pathToFileURL(require.resolve(name)).href);
const { Server } = await load("@tus/server");
const { FileStore } = await load("@tus/file-store");

const [port, directory] = process.argv.slice(2);
const server = new Server({ path: "/v1/tus", datastore: new FileStore({ directory }) });
server.listen({ host: "127.0.0.1", port: Number(port) }, () => {
  console.log(JSON.stringify({ listening: Number(port) }));
});
