"""Image variants (``GET /v1/files/{id}/variants/{spec}``): a file's picture resized,
cropped and encoded as a spec asks, made once in the media pool from the best source
already stored, kept in storage beside the thumbnails and served from there.

Two steps, so that a revalidation costs no decode: ``find`` works out which variant a
request names, whether the caller may have it and its ETag; ``content`` makes it if it is
not stored yet and streams it. Requests for one missing variant make it once
(``SingleFlight``: shared within a process, an ``flock`` across processes on one data dir).

Who may read is the caller's business: ``find`` takes the ``scope`` a request is allowed
(an API key's owner, or ``None``, every owner, for an admin key). A signed link, once
verified by whoever adds them, names its file and spec itself and calls the same two
methods with ``scope=None``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from uploads_api import metrics
from uploads_api.config import Settings
from uploads_api.db.files import FileRepository
from uploads_api.db.models import FAILED, PROCESSING, THUMBNAILS, FileRecord
from uploads_api.db.variant_uses import VariantUses
from uploads_api.db.variants import VariantRepository
from uploads_api.errors import (
    InvalidVariantSpec,
    NoImage,
    NotFound,
    ServiceUnavailable,
    UndecodableImage,
    VariantNotAllowed,
    VariantSpecNotCanonical,
    VariantTooLarge,
)
from uploads_api.media import images
from uploads_api.media.outputs import OUTPUTS, VARIANT_ENCODER_VERSION, Thumbnail
from uploads_api.media.variant_spec import (
    PRESET_NAME,
    NotCanonical,
    SpecError,
    VariantSpec,
    negotiate,
    parse,
)
from uploads_api.services.files import Blob, settled_record
from uploads_api.storage import Storage, thumbnail_key, variant_key
from uploads_api.tasks.base import RetryableError
from uploads_api.tasks.pool import ImagePool, MediaTimeout
from uploads_api.tasks.single_flight import SingleFlight
from uploads_api.tasks.workspace import Workspace

log = logging.getLogger(__name__)

# How long a request for a file still being processed waits for it: its thumbnails may
# then serve as the source, so a variant is made from the same source whenever it is
# made (its ETag promises the same bytes). Past it, the original is used.
SETTLE_WAIT = 10.0


def encoder_tag() -> str:
    """What, besides the spec and the file, decides a variant's bytes: our encoder version
    and Pillow's (its wheels carry libwebp, libavif and libjpeg)."""
    pillow = re.sub(r"[^a-z0-9.]", "-", importlib.metadata.version("pillow").lower())
    return f"{VARIANT_ENCODER_VERSION}-{pillow}"


@dataclass(frozen=True)
class Source:
    """What a variant is made from: a stored blob (``name`` says which, for the log), the
    Pillow formats it may be decoded as, and the original's size as displayed when known
    (the geometry is worked out on it)."""

    key: str
    name: str
    formats: frozenset[str]
    reference: tuple[int, int] | None


@dataclass(frozen=True)
class VariantRequest:
    """One variant of one file, found and allowed: ``spec`` has its format chosen
    (``negotiated``: by the ``Accept`` header, so the answer varies with it)."""

    file_id: str
    spec: VariantSpec
    negotiated: bool
    key: str
    etag: str
    content_type: str
    source: Source


class VariantService:
    def __init__(
        self,
        settings: Settings,
        files: FileRepository,
        variants: VariantRepository,
        storage: Storage,
        pool: ImagePool,
        workspace: Workspace,
        flight: SingleFlight,
    ) -> None:
        self.settings = settings
        self.files = files
        self.variants = variants
        self.storage = storage
        self.pool = pool
        self.workspace = workspace
        self.flight = flight
        self.uses = VariantUses(variants)
        self.presets = {name: parse(text) for name, text in settings.variant_presets.items()}
        self._preset_specs = {spec.canonical for spec in self.presets.values()}
        self._encoder = encoder_tag()

    async def find(
        self, file_id: str, spec_text: str, accept: str | None, *, scope: str | None
    ) -> VariantRequest:
        """The variant ``spec_text`` (a canonical spec, or a preset's name) names of the
        file, for a request that may see ``scope``'s files (``None``: every file).

        Raises ``InvalidVariantSpec``, ``VariantSpecNotCanonical``, ``VariantTooLarge``,
        ``VariantNotAllowed``; ``NotFound`` (no such file for this scope); ``NoImage``
        (nothing to make variants from); ``UndecodableImage`` (the pool already refused
        the image: its thumbnail task failed).
        """
        spec = self.spec_of(spec_text)
        record = await settled_record(self.files, file_id, scope, SETTLE_WAIT)
        source = self._source(record, spec)
        negotiated = spec.fmt == "auto"
        if negotiated:
            spec = spec.with_format(negotiate(accept))
        output = OUTPUTS[spec.fmt]
        name = f"{spec.slug}.e{self._encoder}"
        digest = hashlib.sha256(f"{record.sha256}\n{spec.canonical}\n{self._encoder}".encode())
        return VariantRequest(
            file_id=record.id,
            spec=spec,
            negotiated=negotiated,
            key=variant_key(record.id, name, output.extension),
            etag=f'"{digest.hexdigest()[:40]}"',
            content_type=output.content_type,
            source=source,
        )

    def spec_of(self, text: str) -> VariantSpec:
        """The spec a request names: a preset by name, or a canonical spec that this
        server serves (with presets set, only theirs)."""
        preset = self.presets.get(text)
        if preset is not None:
            return preset
        if self.presets and PRESET_NAME.fullmatch(text):
            raise VariantNotAllowed(f"no preset named {text!r}", presets=sorted(self.presets))
        try:
            spec = parse(text)
        except NotCanonical as exc:
            raise VariantSpecNotCanonical(
                f"write the spec as {exc.canonical}", canonical=exc.canonical
            ) from exc
        except SpecError as exc:
            bare = "" if "=" in text or self.presets else " (and this server has no presets)"
            raise InvalidVariantSpec(f"{exc}{bare}") from exc
        if self.presets and spec.canonical not in self._preset_specs:
            raise VariantNotAllowed(
                "this server serves its presets only", presets=sorted(self.presets)
            )
        limit = self.settings.variant_max_size
        if max(spec.width or 0, spec.height or 0) > limit:
            raise VariantTooLarge(
                f"a variant may be at most {limit} px wide and high (UPLOADS_VARIANT_MAX_SIZE)",
                limit=limit,
            )
        return spec

    def _source(self, record: FileRecord, spec: VariantSpec) -> Source:
        """The best source already stored: the largest thumbnail when it is at least as
        large as what the variant is resized to, else the original. Videos, PDFs and
        audio have their largest thumbnail (poster, first page, cover) only."""
        kind = self.settings.decoders.kind_of(record.content_type) if record.size else None
        if kind is None:
            raise NoImage(f"a file of type {record.content_type} has no variants")
        largest = max(record.thumbnails, key=lambda thumb: thumb.size, default=None)
        if kind != "image":
            if largest is None:
                if record.status == PROCESSING:
                    raise NotFound(f"no preview of file {record.id} to make variants from yet")
                raise NoImage(f"file {record.id} ({kind}) has no preview to make variants from")
            return self._thumbnail_source(record.id, largest, (largest.width, largest.height))
        failed = next((t for t in record.tasks if t.name == THUMBNAILS and t.state == FAILED), None)
        if failed is not None:
            # The same decoder, under the same caps, refused this image already.
            raise UndecodableImage(failed.error or "the image could not be decoded")
        reference = _displayed_size(record)
        if largest is not None and reference is not None:
            need = spec.geometry(reference).resize
            if largest.width >= need[0] and largest.height >= need[1]:
                return self._thumbnail_source(record.id, largest, reference)
        formats = frozenset(self.settings.image_formats)
        return Source(record.storage_key, "the original", formats, reference)

    @staticmethod
    def _thumbnail_source(
        file_id: str, thumb: Thumbnail, reference: tuple[int, int] | None
    ) -> Source:
        written = next(o for o in OUTPUTS.values() if o.content_type == thumb.content_type)
        key = thumbnail_key(file_id, thumb.size, thumb.extension)
        formats = frozenset({written.pil_format})
        return Source(key, f"the {thumb.size} px thumbnail", formats, reference)

    async def content(self, request: VariantRequest) -> Blob:
        """The variant's bytes, made first if they are not stored yet.

        Raises ``UndecodableImage`` (the pool refused or could not decode the source, or
        ran out of time), ``ServiceUnavailable`` (a pool process crashed), ``NotFound``
        (the file was deleted meanwhile)."""
        length = await self.storage.size(request.key)
        outcome = "stored"
        if length is None:
            length = await self.flight.run(request.key, lambda: self._make(request))
            outcome = "made"
        metrics.VARIANTS_SERVED.labels(outcome).inc()
        self.uses.note(request.key)
        return Blob(self.storage.read(request.key), length)

    async def _make(self, request: VariantRequest) -> int:
        # Another process may have made it while this one waited for the lock.
        length = await self.storage.size(request.key)
        if length is not None:
            return length
        source, spec = request.source, request.spec
        async with (
            self.workspace.local_copy(self.storage, source.key, request.file_id) as src,
            self.workspace.scratch(request.file_id, "variant") as out_dir,
        ):
            try:
                made = await self.pool.run(
                    images.make_variant,
                    *(str(src), str(out_dir), spec, source.reference, source.formats),
                )
            except (images.ImageError, MediaTimeout) as exc:
                raise UndecodableImage(str(exc)) from exc
            except RetryableError as exc:
                raise ServiceUnavailable(f"{exc}; try again") from exc
            await self.storage.put_file(request.key, Path(made.path))
        if not await self.variants.record(request.key, request.file_id, made.length):
            await self.storage.delete(request.key)  # deleted while we worked
            raise NotFound(f"no file with id {request.file_id}")
        self.uses.made(request.key)
        metrics.VARIANTS_MADE.labels(spec.fmt).inc()
        log.info(
            "variant made: file %s %s %dx%d %d bytes from %s",
            *(request.file_id, spec.canonical, made.width, made.height, made.length),
            source.name,
        )
        return made.length

    async def stop(self) -> None:
        """Write the last uses noted."""
        await self.uses.stop()


def _displayed_size(record: FileRecord) -> tuple[int, int] | None:
    """The original's width and height as displayed (EXIF orientation applied), from the
    metadata task; ``None`` before it ran."""
    image = (record.metadata or {}).get("image")
    if not isinstance(image, dict):
        return None
    width, height = image.get("width"), image.get("height")
    if isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0:
        return width, height
    return None
