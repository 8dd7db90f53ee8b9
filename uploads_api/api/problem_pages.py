"""``/problems/<code>``: the page each problem's ``type`` points at, served without a key.
What the code means and what to do about it; ``GET /problems`` lists them all."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from uploads_api.api.problems import PROBLEM_TYPES, ProblemType
from uploads_api.errors import NotFound

# code -> (what it means, what to do). A test keeps this in step with PROBLEM_TYPES.
EXPLANATIONS: dict[str, tuple[str, str]] = {
    "bad-request": (
        "The request is malformed: a Content-Length that is not a number, a list cursor this"
        " server did not hand out, a malformed sha256 field or Content-Digest header, an"
        " audit log time that is not RFC 3339.",
        "Fix the request; `detail` says which part is wrong.",
    ),
    "malformed-multipart": (
        "The multipart/form-data body is broken: no or an overlong boundary, a broken part,"
        " a part header over the limit, or a body that ends before the closing boundary.",
        "Send a well-formed body; every HTTP library's multipart encoder does.",
    ),
    "too-many-parts": (
        "The request has more files or form fields than the server allows (`limit`).",
        "Split the files over several requests.",
    ),
    "checksum-mismatch": (
        "The bytes received do not match the SHA-256 the client gave (`expected`,"
        " `actual`). Nothing was stored. In a multipart request, `part` and `filename` name"
        " the file.",
        "Upload again; if it keeps failing, the file changes while it is read.",
    ),
    "invalid-variant-spec": (
        "The variant spec is not one: an unknown or repeated key, a value out of range,"
        " fit=fill with one dimension, q with png, or (without presets) a bare name."
        " `detail` says which.",
        "Write the spec as `w=800,h=600,fit=cover,fmt=avif,q=70`: keys w, h, fit, fmt, q"
        " in that order, at least one of w and h, defaults left out.",
    ),
    "variant-spec-not-canonical": (
        "The variant spec is valid but written otherwise than its canonical form (keys out"
        " of order, a default spelled out, a leading zero, upper case), which `canonical`"
        " gives. One spelling per variant keeps one cached copy and one URL each.",
        "Ask for `canonical` instead.",
    ),
    "variant-too-large": (
        "The variant spec asks for a width or height above `UPLOADS_VARIANT_MAX_SIZE` (`limit`).",
        "Ask for a smaller variant; the original is at `/v1/files/{id}/content`.",
    ),
    "client-disconnected": (
        "The client went away before the upload finished; nothing was stored.",
        "Upload again.",
    ),
    "unauthorized": (
        "API keys are on and the request carries no key, or one that is unknown or revoked;"
        " or an event stream token that is not valid, has expired (they live 60 s) or was"
        " made with a key revoked since.",
        "Send `Authorization: Bearer <key>` with a key from `uploads-api keys create`; for"
        " `GET /v1/events?token=`, get a new token from `POST /v1/events/tokens`.",
    ),
    "keys-required": (
        "No API key exists yet, so the server lets anyone do anything, and the request"
        " arrived on a non-loopback address.",
        "Create a key (`uploads-api keys create OWNER`), or reach the server on a loopback"
        " address.",
    ),
    "forbidden": (
        "The key is valid but may not do this: the route is for admin keys only (the audit"
        " log, `GET /v1/audit`).",
        "Use an admin key (`uploads-api keys create OWNER --admin`).",
    ),
    "variant-not-allowed": (
        "This server serves only its variant presets (`UPLOADS_VARIANT_PRESETS`), listed"
        " in `presets`, and the request named none of them.",
        "Ask for a preset by its name (`/variants/card`) or by its canonical spec.",
    ),
    "invalid-link": (
        "The `?link=` of this request is not a link this server signed for it: altered, cut,"
        " made for another path, variant or method, or signed with a key no longer in"
        " `UPLOADS_SIGNING_KEY`.",
        "Ask the file's owner for a new link (`POST /v1/files/{id}/links`).",
    ),
    "link-expired": (
        "The signed link was genuine, but its time has passed.",
        "Ask the file's owner for a new link (`POST /v1/files/{id}/links`).",
    ),
    "not-found": (
        "No such file or thumbnail (yet), or a file of another owner, or no such route.",
        "Check the id; a thumbnail appears once its task has succeeded.",
    ),
    "method-not-allowed": (
        "The path exists but not with this method.",
        "Use one of the methods in the `Allow` header.",
    ),
    "body-timeout": (
        "The request body sent nothing for `UPLOADS_BODY_TIMEOUT` seconds; nothing was stored.",
        "Upload again over a steadier connection.",
    ),
    "file-too-large": (
        "A file is larger than `UPLOADS_MAX_FILE_SIZE` (`limit`). In a multipart request,"
        " `part` and `filename` name the file.",
        "Send a smaller file, or ask the operator to raise the limit; the other files of a"
        " multipart request can go without it.",
    ),
    "field-too-large": (
        "A form field is larger than `UPLOADS_MAX_FIELD_SIZE` (`limit`).",
        "Send files as file parts (with a filename), not as fields.",
    ),
    "quota-exceeded": (
        "The upload would take the owner past a quota: `quota` names the setting"
        " (`UPLOADS_QUOTA_BYTES` or `UPLOADS_QUOTA_FILES`), `limit` its value.",
        "Delete files, or ask the operator for a larger quota.",
    ),
    "payload-too-large": ("The request body is too large.", "Send a smaller body."),
    "unsupported-media-type": (
        "A POST body that is not multipart/form-data, or a file whose sniffed type"
        " (`content_type`) `UPLOADS_ALLOWED_TYPES` refuses (in a multipart request, `part`"
        " and `filename` name the file).",
        "Send multipart/form-data, or a file of an accepted type.",
    ),
    "range-not-satisfiable": (
        "The Range of a download cannot be served from a file of `size` bytes.",
        "Ask for a range within the file (`Content-Range` gives its size).",
    ),
    "no-files": (
        "A multipart request without a file part (a part with a filename).",
        "Add the file as a part with a filename (`curl -F file=@path`).",
    ),
    "webhook-target-refused": (
        "The webhook URL is not one the server sends to: not http or https, credentials in"
        " it, or a literal address that is loopback, private, link-local (the cloud metadata"
        " service), multicast or unspecified, or outside UPLOADS_WEBHOOK_ALLOWED_TARGETS.",
        "Give a public http(s) URL. For a receiver on your own network the operator sets"
        " UPLOADS_WEBHOOK_ALLOW_PRIVATE=true.",
    ),
    "no-image": (
        "The file has no image to make variants from: it is not of a type the media pool"
        " decodes, or it is a video, PDF or audio file without a preview (poster, first"
        " page, cover art).",
        "Ask for variants of images, or of files whose record lists thumbnails.",
    ),
    "thumbnail-not-ready": (
        "A link asked for a thumbnail size the file does not have: not one of the configured"
        " sizes, a file without a preview, or one still being processed.",
        "Ask for one of the sizes in the file's `thumbnails` (`GET /v1/files/{id}?wait=30`"
        " waits for processing).",
    ),
    "offset-mismatch": (
        "A tus PATCH whose Upload-Offset is not where the upload stands (`offset`, also in"
        " the Upload-Offset header).",
        "HEAD the upload, and send from the offset it answers.",
    ),
    "upload-locked": (
        "Another request is writing this resumable upload (one writer at a time). A writer"
        " that went away loses its hold after about 10 seconds.",
        "Wait a moment and try again; tus clients do this by themselves.",
    ),
    "upload-expired": (
        "The resumable upload was not completed within UPLOADS_TUS_EXPIRY seconds of its last"
        " PATCH; its bytes are removed by the next sweep.",
        "Start the upload again.",
    ),
    "tus-version-unsupported": (
        "A request under /v1/tus/ without `Tus-Resumable: 1.0.0`; the server speaks tus 1.0.0"
        " (the Tus-Version header).",
        "Send `Tus-Resumable: 1.0.0`; tus clients do.",
    ),
    "checksum-algorithm-unsupported": (
        "An Upload-Checksum with an algorithm this server does not offer (the"
        " Tus-Checksum-Algorithm header of OPTIONS lists them: sha1, sha256, md5).",
        "Use one of those algorithms.",
    ),
    "invalid-tus-request": (
        "A tus request with a header missing or malformed: no Upload-Length nor"
        " Upload-Defer-Length, an Upload-Offset that is not a number, Upload-Metadata that"
        " is not `key base64` pairs, an Upload-Length that changes.",
        "Fix the header named in `detail`.",
    ),
    "direct-uploads-unavailable": (
        "This server does not offer direct uploads: its storage is not S3, or the operator"
        " turned them off (UPLOADS_DIRECT_UPLOADS=false). `GET /v1/capabilities` says which.",
        "Upload through the API (`POST /v1/files` or `PUT /v1/files/{filename}`).",
    ),
    "idempotency-key-in-progress": (
        "Another request with this `Idempotency-Key` (from the same owner) is still being"
        " received or recorded, or was cut short less than a minute ago by a server that"
        " stopped.",
        "Wait (`Retry-After`) and send the same request again: once the other one is done"
        " its answer is replayed; if it failed, this one is processed anew.",
    ),
    "idempotency-key-reused": (
        "This `Idempotency-Key` was used, within `UPLOADS_IDEMPOTENCY_TTL`, for a request"
        " with other files (names, sizes, bytes) or another method or path.",
        "Use a new key for each new request, and the same one only to send the same request again.",
    ),
    "idempotent-files-deleted": (
        "The first request with this `Idempotency-Key` stored its files, but one of them has"
        " been deleted since, so its answer, which names them, is not given again.",
        "List the files to see what is stored, and upload what is missing with a new key.",
    ),
    "direct-upload-busy": (
        "Another request is completing this direct upload right now.",
        "Wait for that request's answer; then `GET /v1/files/{id}` shows the file.",
    ),
    "invalid-parts": (
        "The part list of a direct upload's completion is not every part from 1 to `parts`"
        " in order, or storage refused it: an ETag that is not the part's, or a part never"
        " sent. The upload stays open until it expires.",
        "Send each missing part again and complete with the ETag each PUT answered.",
    ),
    "size-mismatch": (
        "The parts of a direct upload add up to `size` bytes, not the `expected` bytes it was"
        " started with. The upload and its bytes are gone.",
        "Start a new direct upload with the file's real size.",
    ),
    "undecodable-image": (
        "The media pool refused or could not decode the image: over the pixel limit"
        " (a decompression bomb), corrupt or truncated, or past the time or memory limit."
        " `detail` gives the reason; the file's thumbnail task failed for the same one.",
        "Upload a sound image; the original stays downloadable.",
    ),
    "validation-error": (
        "A parameter or JSON body is out of range or of the wrong form; `errors` lists"
        " each with its location.",
        "Fix the listed parameters.",
    ),
    "too-many-uploads": (
        "This key already has `UPLOADS_MAX_CONCURRENT_UPLOADS` uploads in flight on this"
        " server process.",
        "Wait `Retry-After` seconds and try again, or upload fewer files at once.",
    ),
    "internal-error": (
        "An unexpected error; the details are in the server log only.",
        "Try again; report it to the operator with the time and the `instance` path.",
    ),
    "service-unavailable": (
        "The database could not be reached or stayed locked; nothing was changed.",
        "Try again shortly.",
    ),
    "insufficient-storage": (
        "The server's disk (or file-system quota) is full; nothing of the request was kept.",
        "Ask the operator to free space.",
    ),
    "http-error": (
        "Another HTTP error raised by the framework; `status` says which.",
        "See `detail`.",
    ),
}

router = APIRouter(prefix="/problems", include_in_schema=False)

_STYLE = "body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:2em auto;padding:0 1em}"
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Cache-Control": "public, max-age=3600",
}


def _page(title: str, body: str) -> HTMLResponse:
    html = (
        f'<!doctype html><html lang="en"><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_STYLE}</style><body>{body}</body></html>"
    )
    return HTMLResponse(html, headers=_HEADERS)


def _status(problem: ProblemType) -> str:
    return "varies" if problem.status is None else str(problem.status)


@router.get("")
async def index() -> HTMLResponse:
    rows = "".join(
        f'<li><a href="/problems/{code}"><code>{code}</code></a> ({_status(problem)}):'
        f" {escape(problem.title)}</li>"
        for code, problem in PROBLEM_TYPES.items()
    )
    return _page("uploads-api problems", f"<h1>Problems</h1><ul>{rows}</ul>")


@router.get("/{code}")
async def problem_page(code: str) -> HTMLResponse:
    problem = PROBLEM_TYPES.get(code)
    if problem is None:
        raise NotFound(f"no problem type {code!r}")
    meaning, remedy = EXPLANATIONS[code]
    body = (
        f"<h1>{escape(problem.title)}</h1><p>Code <code>{code}</code>, HTTP status"
        f" {_status(problem)}.</p><h2>What it means</h2><p>{escape(meaning)}</p>"
        f'<h2>What to do</h2><p>{escape(remedy)}</p><p><a href="/problems">All problems</a></p>'
    )
    return _page(f"{problem.title} ({code})", body)
