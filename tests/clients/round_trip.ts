/**
 * Runs client.ts against a server: `node round_trip.js BASE_URL [API_KEY]` uploads a file each
 * way, reads one back, finds it in the listing, deletes both and prints what it saw as JSON.
 * tests/test_generated_clients.py compiles and runs it.
 */
import { type FileOut, ProblemError, UploadsClient } from "./client.js";

declare const process: { argv: string[] };

async function roundTrip(client: UploadsClient, text: string) {
  const created = await client.uploadFiles([{ name: "multipart.txt", body: new Blob([text]) }]);
  const first: FileOut = created.files[0];
  const raw = await client.upload("raw body.txt", new Blob([text]));
  const fetched = await client.getFile(first.id, { wait: 30 });
  const page = await client.listFiles({ limit: 1 });
  const listed: string[] = [];
  for await (const file of client.allFiles({ limit: 1 })) listed.push(file.id);
  await client.deleteFile(first.id);
  await client.deleteFile(raw.id);
  let afterDelete = "still there";
  try {
    await client.getFile(first.id);
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error;
    afterDelete = `${error.status} ${error.problem?.code}`;
  }
  return {
    uploaded: { id: first.id, size: first.size, sha256: first.sha256, filename: first.filename },
    raw: { id: raw.id, size: raw.size, sha256: raw.sha256, filename: raw.filename },
    fetched: { id: fetched.id, status: fetched.status, tasks: fetched.tasks.map((t) => t.state) },
    firstPage: { count: page.files.length, nextCursor: page.next_cursor },
    listed,
    afterDelete,
  };
}

const [baseUrl, apiKey] = process.argv.slice(2);
const text = "hello from a generated TypeScript client\n";
console.log(JSON.stringify(await roundTrip(new UploadsClient(baseUrl, apiKey), text)));
