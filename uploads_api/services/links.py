"""Signed expiring links (``POST /v1/files/{id}/links``): a download route's path with
``?link=<token>``, which opens that one path for ``GET`` (and ``HEAD``) without a key
until it expires.

The token is made with the signing key ring (``signing.py``), so rotating
``UPLOADS_SIGNING_KEY`` works as for every other token: links signed with a key still in
the ring pass, and dropping a key ends every link it signed. Its payload names its use
(``link``), the method, the exact path (the file id, the thumbnail size or the variant
spec are all in it), the file's owner and the expiry. The expiry is the payload's
``until``, not the ring's ``exp``, so that a genuine link past its time can be told from
a forged one (``link-expired``, not ``invalid-link``).

What a link grants is checked when it is made: the caller must see the file (else 404 as
everywhere), the thumbnail size must exist, the variant spec must be one this server
serves. When it is used, the file is looked up again: a deleted file is 404.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote

from uploads_api.auth import Principal
from uploads_api.errors import InvalidLink, LinkExpired, ThumbnailNotReady
from uploads_api.services.files import FileService
from uploads_api.services.variants import VariantService
from uploads_api.signing import KeyRing

LINK_USE = "link"
# A link is for reading: HEAD is what a GET would answer, without the body.
LINK_METHOD = "GET"
READ_METHODS = frozenset({"GET", "HEAD"})
Target = Literal["content", "thumbnail", "variant"]


@dataclass(frozen=True)
class Link:
    path: str  # percent-encoded, as it goes into the URL
    token: str
    expires: int  # seconds since the epoch

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.expires, UTC)


@dataclass(frozen=True)
class LinkGrant:
    """What a verified link lets its bearer read: one path, as the file's owner would."""

    caller: Principal
    expires: int

    def seconds_left(self, now: float | None = None) -> int:
        return max(0, int(self.expires - (time.time() if now is None else now)))


class LinkService:
    def __init__(
        self, keys: KeyRing, files: FileService, variants: VariantService, *, max_age: int
    ) -> None:
        self.keys = keys
        self.files = files
        self.variants = variants
        self.max_age = max_age

    async def create(
        self,
        caller: Principal,
        file_id: str,
        target: Target,
        *,
        expires_in: int,
        size: int | None = None,
        variant: str | None = None,
    ) -> Link:
        """A link to the file's bytes, one of its thumbnails or a variant, for
        ``expires_in`` seconds (1 to ``max_age``: the route refuses others).

        Raises ``NotFound`` (no such file or thumbnail for the caller), the variant spec's
        errors (``InvalidVariantSpec``, ``VariantSpecNotCanonical``, ``VariantTooLarge``,
        ``VariantNotAllowed``)."""
        if target == "variant":
            # The spec first: a spec that means nothing is refused for what it is.
            self.variants.spec_of(variant or "")
        record = await self.files.get(caller, file_id)
        if target == "content":
            path = f"/v1/files/{record.id}/content"
        elif target == "thumbnail":
            if size is None or all(thumb.size != size for thumb in record.thumbnails):
                raise ThumbnailNotReady(f"no {size}px thumbnail for file {file_id} (yet)")
            path = f"/v1/files/{record.id}/thumbnails/{size}"
        else:
            path = f"/v1/files/{record.id}/variants/{variant}"
        expires = int(time.time()) + expires_in
        token = self.keys.sign(
            {
                "use": LINK_USE,
                "method": LINK_METHOD,
                "path": path,
                "owner": record.owner,
                "until": expires,
            }
        )
        return Link(quote(path, safe="/=,"), token, expires)

    def verify(self, token: str, method: str, path: str, *, now: float | None = None) -> LinkGrant:
        """The grant of ``token`` for a request of ``method`` on ``path`` (decoded, relative
        to the app's root). Raises ``InvalidLink`` or ``LinkExpired``."""
        payload = self.keys.verify(token)
        if payload is None or payload.get("use") != LINK_USE:
            raise InvalidLink("this link is not genuine, or its signing key was retired")
        signed_path, owner, until = payload.get("path"), payload.get("owner"), payload.get("until")
        if not (
            isinstance(signed_path, str)
            and (owner is None or isinstance(owner, str))
            and isinstance(until, int)
            and not isinstance(until, bool)
        ):
            raise InvalidLink("this link is not genuine")
        if payload.get("method") != LINK_METHOD or method not in READ_METHODS:
            raise InvalidLink(f"this link is for {LINK_METHOD} requests only")
        if not hmac.compare_digest(signed_path.encode(), path.encode()):
            raise InvalidLink("this link was made for another path")
        if until <= (time.time() if now is None else now):
            raise LinkExpired("this link has expired; ask for a new one")
        # The file's owner, not an admin: the audit log says whose file was read.
        return LinkGrant(Principal(owner=owner, admin=False), until)
