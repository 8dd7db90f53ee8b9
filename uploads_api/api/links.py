"""``POST /v1/files/{file_id}/links``: a signed, expiring URL that reads a file's bytes, a
thumbnail or a variant without a key (``<img src>``, a link in a mail).

No ``from __future__ import annotations`` here: FastAPI builds the body's discriminated
union from the route's annotation, which must be the object, not its name."""

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from uploads_api.api.contract import problem_responses
from uploads_api.api.deps import LinksDep, PrincipalDep, RuntimeDep, get_principal
from uploads_api.api.downloads import FILE_ID
from uploads_api.api.problems import over_setting
from uploads_api.media.variant_spec import MAX_SPEC_LENGTH

router = APIRouter(prefix="/v1/files", tags=["files"], dependencies=[Depends(get_principal)])


ExpiresIn = Annotated[
    int, Field(ge=1, description="Seconds the link works for, at most `UPLOADS_LINK_MAX_AGE`")
]


class ContentLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: Literal["content"] = Field(description="The original bytes")
    expires_in: ExpiresIn


class ThumbnailLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: Literal["thumbnail"] = Field(description="One of the file's thumbnails")
    size: int = Field(ge=1, description="The thumbnail's size: one the file has")
    expires_in: ExpiresIn


class VariantLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: Literal["variant"] = Field(description="An image variant")
    variant: str = Field(
        min_length=1,
        max_length=MAX_SPEC_LENGTH,
        description="A canonical variant spec or a preset's name, as in the variant's path",
    )
    expires_in: ExpiresIn


LinkRequest = Annotated[ContentLink | ThumbnailLink | VariantLink, Body(discriminator="target")]
REQUEST_SCHEMAS = ("ContentLink", "ThumbnailLink", "VariantLink")


def describe_links(schema: dict[str, Any], max_age: int, spec_pattern: str) -> None:
    """Say this server's longest link life, and the variant specs it serves."""
    components = schema["components"]["schemas"]
    for name in REQUEST_SCHEMAS:
        components[name]["properties"]["expires_in"]["maximum"] = max_age
    components["VariantLink"]["properties"]["variant"]["pattern"] = spec_pattern


class SignedLink(BaseModel):
    url: str = Field(description="The absolute URL: a `GET` on it needs no key")
    expires_at: datetime = Field(description="The link stops working at this time")


@router.post(
    "/{file_id}/links",
    status_code=201,
    response_model=SignedLink,
    operation_id="createLink",
    responses=problem_responses(
        "not-found",
        "thumbnail-not-ready",
        "invalid-variant-spec",
        "variant-spec-not-canonical",
        "variant-too-large",
        "variant-not-allowed",
    ),
    summary="A signed URL that reads the file, a thumbnail or a variant without a key",
)
async def create_link(
    request: Request,
    file_id: FILE_ID,
    body: LinkRequest,
    links: LinksDep,
    runtime: RuntimeDep,
    caller: PrincipalDep,
) -> SignedLink:
    max_age = links.max_age
    if body.expires_in > max_age:
        raise over_setting(("body", body.target, "expires_in"), max_age, body.expires_in)
    link = await links.create(
        caller,
        file_id,
        body.target,
        expires_in=body.expires_in,
        size=body.size if isinstance(body, ThumbnailLink) else None,
        variant=body.variant if isinstance(body, VariantLink) else None,
    )
    # The base clients reach: the configured one, else this request's (with root_path).
    base = runtime.settings.public_url or str(request.base_url)
    return SignedLink(
        url=f"{base.rstrip('/')}{link.path}?link={link.token}", expires_at=link.expires_at
    )
