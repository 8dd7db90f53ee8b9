/**
 * A small client typed only by what openapi-typescript generates from /openapi.json.
 *
 * tests/test_generated_clients.py generates `api.d.ts` beside this file from a live server's
 * description and runs `tsc --strict` on it: every path, method, parameter, body field and
 * response field used here must be in the description, with these types, or it fails to
 * compile. round_trip.ts then runs it against that server.
 */
import type { paths } from "./api";

// The path templates, the one place to change when the description renames one. One file's
// template serves PUT (the name to record) and GET and DELETE (the file's id).
export const FILES = "/v1/files" satisfies keyof paths;
export const ONE_FILE = "/v1/files/{file}" satisfies keyof paths;
type Files = typeof FILES;
type OneFile = typeof ONE_FILE;

export type FileList = paths[Files]["get"]["responses"][200]["content"]["application/json"];
export type FilesCreated = paths[Files]["post"]["responses"][201]["content"]["application/json"];
export type FileOut = paths[OneFile]["get"]["responses"][200]["content"]["application/json"];
export type Uploaded = paths[OneFile]["put"]["responses"][201]["content"]["application/json"];
export type Problem =
  paths[OneFile]["get"]["responses"][404]["content"]["application/problem+json"];
export type ListQuery = NonNullable<paths[Files]["get"]["parameters"]["query"]>;
export type GetQuery = NonNullable<paths[OneFile]["get"]["parameters"]["query"]>;
type UploadFields = paths[Files]["post"]["requestBody"]["content"]["multipart/form-data"];
type UploadHeaders = NonNullable<paths[OneFile]["put"]["parameters"]["header"]>;
type PathParams<P extends keyof paths, M extends "get" | "put" | "delete"> = NonNullable<
  paths[P][M]
>["parameters"]["path"];

// Names and statuses the calls use, each checked against the description. The files are
// Blobs: openapi-typescript types `format: binary` as `string`.
const FILE_FIELD = "file" satisfies keyof UploadFields;
const DIGEST_HEADER = "content-digest" satisfies keyof UploadHeaders;
const DELETED = 204 satisfies keyof paths[OneFile]["delete"]["responses"];

/** An answer other than the one the call expects, with the problem+json body the server sent. */
export class ProblemError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem | undefined,
  ) {
    super(`${status}: ${problem?.code ?? "no problem+json body"} ${problem?.detail ?? ""}`);
  }
}

function fill(template: string, params: Record<string, string>): string {
  return template.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`no value for {${name}} in ${template}`);
    return encodeURIComponent(value);
  });
}

function search(query: Record<string, string | number | null | undefined>): string {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== null && value !== undefined) params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}

export class UploadsClient {
  constructor(
    readonly baseUrl: string,
    readonly apiKey?: string,
  ) {}

  /** POST /v1/files: the files as one multipart/form-data request. */
  async uploadFiles(files: { name: string; body: Blob }[]): Promise<FilesCreated> {
    const form = new FormData();
    for (const file of files) form.append(FILE_FIELD, file.body, file.name);
    return this.json<FilesCreated>("POST", FILES, 201, { body: form });
  }

  /** PUT /v1/files/{name}: one file as the raw body, with an optional RFC 9530 digest. */
  async upload(name: string, body: Blob, digest?: string): Promise<Uploaded> {
    const path = fill(ONE_FILE, { file: name } satisfies PathParams<OneFile, "put">);
    const headers: Record<string, string> = { "content-type": "application/octet-stream" };
    if (digest) headers[DIGEST_HEADER] = digest;
    return this.json<Uploaded>("PUT", path, 201, { body, headers });
  }

  async getFile(id: string, query: GetQuery = {}): Promise<FileOut> {
    const path = fill(ONE_FILE, { file: id } satisfies PathParams<OneFile, "get">);
    return this.json<FileOut>("GET", path + search(query), 200);
  }

  async listFiles(query: ListQuery = {}): Promise<FileList> {
    return this.json<FileList>("GET", FILES + search(query), 200);
  }

  /** Every file, following `next_cursor` page by page. */
  async *allFiles(query: ListQuery = {}): AsyncGenerator<FileOut> {
    let cursor: string | null = null;
    do {
      const page: FileList = await this.listFiles({ ...query, cursor });
      yield* page.files;
      cursor = page.next_cursor;
    } while (cursor !== null);
  }

  async deleteFile(id: string): Promise<void> {
    const path = fill(ONE_FILE, { file: id } satisfies PathParams<OneFile, "delete">);
    await this.send("DELETE", path, DELETED);
  }

  private async json<T>(method: string, path: string, expected: number, init: RequestInit = {}) {
    const response = await this.send(method, path, expected, init);
    return (await response.json()) as T;
  }

  private async send(method: string, path: string, expected: number, init: RequestInit = {}) {
    const headers = new Headers(init.headers);
    if (this.apiKey) headers.set("authorization", `Bearer ${this.apiKey}`);
    const response = await fetch(this.baseUrl + path, { ...init, method, headers });
    if (response.status !== expected) {
      const type = response.headers.get("content-type") ?? "";
      const problem = type.startsWith("application/problem+json")
        ? ((await response.json()) as Problem)
        : undefined;
      throw new ProblemError(response.status, problem);
    }
    return response;
  }
}
