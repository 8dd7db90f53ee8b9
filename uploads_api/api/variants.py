"""``/v1/files/{file_id}/variants/{spec}``: a file's image resized, cropped and encoded as
the spec asks, made on the first request and kept."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import StreamingResponse

from uploads_api import metrics
from uploads_api.api.contract import BINARY, header, problem_responses
from uploads_api.api.deps import ReaderDep, VariantsDep
from uploads_api.api.downloads import FILE_ID, LINK_CACHE, USER_CONTENT_CSP
from uploads_api.media.outputs import OUTPUTS
from uploads_api.media.variant_spec import MAX_SPEC_LENGTH, canonical_pattern

# A key or a signed link: the route takes a `ReaderDep` (see api/downloads.py).
router = APIRouter(prefix="/v1/files", tags=["files"])
PATH = "/v1/files/{file_id}/variants/{spec}"

# A variant's bytes change only with its ETag (file, spec and encoder), so a browser may
# keep it a day, as a thumbnail; revalidation by ETag costs no decode.
CACHE_CONTROL = "private, max-age=86400"
VARIANT_TYPES = sorted({output.content_type for output in OUTPUTS.values()})
SPEC = Annotated[
    str,
    Path(
        description="A canonical spec, `w=800,h=600,fit=cover,fmt=avif,q=70` (keys in this"
        " order, defaults `fit=contain`, `fmt=webp`, `q=80` left out, at least one of `w`"
        " and `h`), or the name of one of the server's presets",
        # Described, not enforced by FastAPI: what does not fit is answered 400 (or 403)
        # with the reason. The pattern is the server's own: see describe_specs.
        json_schema_extra={"maxLength": MAX_SPEC_LENGTH},
    ),
]
_HEADERS: dict[str, Any] = {
    "ETag": header("Strong: from the file's SHA-256, the canonical spec and the encoder"),
    "Cache-Control": header(f"`{CACHE_CONTROL}` with a key; {LINK_CACHE}"),
    "Vary": header("`Accept` when the spec has `fmt=auto`"),
}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The variant: made on the first request, then served as stored",
        # `application/octet-stream` too: the type generated clients know to read as bytes.
        "content": {
            media: {"schema": BINARY} for media in [*VARIANT_TYPES, "application/octet-stream"]
        },
        "headers": {**_HEADERS, "Content-Length": header("Bytes", {"type": "integer"})},
    },
    304: {"description": "`If-None-Match` named the variant's ETag", "headers": _HEADERS},
    **problem_responses(
        "invalid-variant-spec",
        "variant-spec-not-canonical",
        "variant-too-large",
        "variant-not-allowed",
        "not-found",
        "no-image",
        "undecodable-image",
        "invalid-link",
        "link-expired",
    ),
}


def describe_specs(schema: dict[str, Any], max_size: int, presets: dict[str, str]) -> None:
    """Say in the description which specs this server serves: its presets, by name or by
    spec, when it has any; else every canonical spec up to ``max_size``."""
    parameters = schema["paths"][PATH]["get"]["parameters"]
    spec = next(parameter for parameter in parameters if parameter["name"] == "spec")
    spec["schema"]["pattern"] = spec_pattern(max_size, presets)


def spec_pattern(max_size: int, presets: dict[str, str]) -> str:
    """The specs this server serves: its presets by name or spec, else canonical ones."""
    if presets:
        # Names and canonical specs hold no character a pattern treats specially.
        return f"^(?:{'|'.join([*presets, *dict.fromkeys(presets.values())])})$"
    return canonical_pattern(max_size)


@router.get(
    "/{file_id}/variants/{spec}",
    response_class=StreamingResponse,
    operation_id="getVariant",
    responses=RESPONSES,
    summary="An image variant: resized, cropped, encoded as the spec asks (made once, kept)",
    description="`fmt=auto` picks AVIF if `Accept` names `image/avif`, else WebP if it"
    " names `image/webp`, else JPEG. Never larger than the source.",
)
async def variant(
    request: Request,
    file_id: FILE_ID,
    spec: SPEC,
    variants: VariantsDep,
    reader: ReaderDep,
    if_none_match: Annotated[str | None, Header(description="An ETag: 304 if it matches")] = None,
) -> Response:
    # Accept is read as sent, not declared: OpenAPI leaves Accept to the media types.
    found = await variants.find(
        file_id, spec, request.headers.get("accept"), scope=reader.caller.scope
    )
    headers = {"ETag": found.etag, "Cache-Control": reader.cache_control(CACHE_CONTROL)}
    if found.negotiated:
        headers["Vary"] = "Accept"
    if if_none_match is not None and (found.etag in if_none_match or if_none_match.strip() == "*"):
        metrics.VARIANTS_SERVED.labels("not_modified").inc()
        return Response(status_code=304, headers=headers)
    blob = await variants.content(found)
    headers.update(
        {
            "Content-Length": str(blob.length),
            "Content-Disposition": "inline",
            "Content-Security-Policy": USER_CONTENT_CSP,
        }
    )
    return StreamingResponse(blob.body, headers=headers, media_type=found.content_type)
