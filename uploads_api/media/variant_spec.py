"""Image variant specs (``w=800,h=600,fit=cover,fmt=avif,q=70``): parsed, refused or put in
canonical form, the geometry each asks of a source, presets, and the format ``fmt=auto``
picks from an ``Accept`` header.

Pure: no I/O and nothing of ours imported, so the settings (presets are checked at
start), the service and the pool's processes all use this one module.

A spec is canonical when it is written exactly as ``VariantSpec.canonical`` writes it:
keys in the order ``w``, ``h``, ``fit``, ``fmt``, ``q``, each at most once, defaults left
out, numbers without leading zeros, lower case. One output, one spelling, so one cached
file and one URL per variant. ``parse`` refuses anything else: ``NotCanonical`` (naming
the canonical form) when the text means a valid spec, ``SpecError`` when it does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

KEYS = ("w", "h", "fit", "fmt", "q")
FITS = ("contain", "cover", "fill")
FORMATS = ("webp", "avif", "jpeg", "png", "auto")
DEFAULT_FIT, DEFAULT_FORMAT, DEFAULT_QUALITY = "contain", "webp", 80
# Long enough for every canonical spec with room for a non-canonical spelling of one.
MAX_SPEC_LENGTH = 80
# Sizes a spec may name at all; the server's own cap (UPLOADS_VARIANT_MAX_SIZE) is lower.
MAX_DIMENSION = 65535
# Spellings that mean a canonical value: valid, so answered with the canonical form.
_FORMAT_ALIASES = {"jpg": "jpeg"}
_DIGITS = re.compile(r"[0-9]{1,9}")
PRESET_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class SpecError(ValueError):
    """The text is not a variant spec; ``str(exc)`` says why, readably."""


class NotCanonical(ValueError):
    """The text means a valid spec, written otherwise than its ``canonical`` form."""

    def __init__(self, text: str, canonical: str) -> None:
        super().__init__(f"{text!r} is written {canonical!r} in canonical form")
        self.canonical = canonical


@dataclass(frozen=True)
class Geometry:
    """How a source becomes the variant: the whole source resized to ``resize``, then, for
    ``cover``, the ``crop`` box (left, top, right, bottom) of that taken, centred."""

    resize: tuple[int, int]
    crop: tuple[int, int, int, int] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """The variant's width and height."""
        if self.crop is None:
            return self.resize
        left, top, right, bottom = self.crop
        return right - left, bottom - top


@dataclass(frozen=True)
class VariantSpec:
    """One variant. Built only valid: ``SpecError`` otherwise. ``cover`` with one
    dimension is ``contain`` (there is nothing to crop to), and is stored as such."""

    width: int | None = None
    height: int | None = None
    fit: str = DEFAULT_FIT
    fmt: str = DEFAULT_FORMAT
    quality: int = DEFAULT_QUALITY

    def __post_init__(self) -> None:
        if self.width is None and self.height is None:
            raise SpecError("give w, h or both")
        for name, value in (("w", self.width), ("h", self.height)):
            if value is not None and not 1 <= value <= MAX_DIMENSION:
                raise SpecError(f"{name} must be 1 to {MAX_DIMENSION}, not {value}")
        if self.fit not in FITS:
            raise SpecError(f"fit must be one of {', '.join(FITS)}, not {self.fit!r}")
        if self.fmt not in FORMATS:
            raise SpecError(f"fmt must be one of {', '.join(FORMATS)}, not {self.fmt!r}")
        if not 1 <= self.quality <= 100:
            raise SpecError(f"q must be 1 to 100, not {self.quality}")
        both = self.width is not None and self.height is not None
        if self.fit == "fill" and not both:
            raise SpecError("fit=fill needs both w and h")
        if self.fmt == "png" and self.quality != DEFAULT_QUALITY:
            raise SpecError("q does not apply to png, which is lossless")
        if self.fit == "cover" and not both:
            object.__setattr__(self, "fit", "contain")

    @property
    def canonical(self) -> str:
        parts = []
        if self.width is not None:
            parts.append(f"w={self.width}")
        if self.height is not None:
            parts.append(f"h={self.height}")
        if self.fit != DEFAULT_FIT:
            parts.append(f"fit={self.fit}")
        if self.fmt != DEFAULT_FORMAT:
            parts.append(f"fmt={self.fmt}")
        if self.quality != DEFAULT_QUALITY:
            parts.append(f"q={self.quality}")
        return ",".join(parts)

    @property
    def slug(self) -> str:
        """The canonical form in storage-key characters: ``w800-h600-fitcover-fmtavif``."""
        return self.canonical.replace("=", "").replace(",", "-")

    def with_format(self, fmt: str) -> VariantSpec:
        """The same variant in ``fmt`` (``fmt=auto`` once the request has chosen)."""
        return replace(self, fmt=fmt)

    def geometry(self, source: tuple[int, int]) -> Geometry:
        """What this spec makes of a source of ``source`` (width, height) pixels, upright.

        Never larger than the source. ``contain`` keeps the aspect ratio inside w x h (or
        scales to the one dimension given). ``cover`` and ``fill`` make exactly w x h, by
        cropping the overflow centred or by stretching; a box larger than the source is
        first scaled down, keeping its aspect ratio, until it fits inside the source.
        """
        src_w, src_h = source
        if src_w < 1 or src_h < 1:
            raise ValueError(f"a source has pixels, not {source}")
        w, h = self.width, self.height
        if w is None or h is None or self.fit == "contain":
            return Geometry(_contain(source, w, h))
        box = _clamped_box(source, w, h)
        if self.fit == "fill":
            return Geometry(box)
        box_w, box_h = box
        if box_w * src_h >= box_h * src_w:  # the width decides the scale; height overflows
            resize = (box_w, max(box_h, _div_round(src_h * box_w, src_w)))
        else:
            resize = (max(box_w, _div_round(src_w * box_h, src_h)), box_h)
        left, top = (resize[0] - box_w) // 2, (resize[1] - box_h) // 2
        return Geometry(resize, (left, top, left + box_w, top + box_h))


def _div_round(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half up, in integers: no float error at .5."""
    return (2 * numerator + denominator) // (2 * denominator)


def _contain(source: tuple[int, int], w: int | None, h: int | None) -> tuple[int, int]:
    src_w, src_h = source
    # Which side limits: the width when w/src_w <= h/src_h (a missing side never does).
    by_width = h is None or (w is not None and w * src_h <= h * src_w)
    if by_width:
        assert w is not None
        if w >= src_w:
            return source
        return w, max(1, _div_round(src_h * w, src_w))
    assert h is not None
    if h >= src_h:
        return source
    return max(1, _div_round(src_w * h, src_h)), h


def _clamped_box(source: tuple[int, int], w: int, h: int) -> tuple[int, int]:
    """w x h, scaled down with its aspect ratio kept until it fits inside the source."""
    src_w, src_h = source
    if w <= src_w and h <= src_h:
        return w, h
    if src_w * h <= src_h * w:  # src_w / w is the smaller factor
        return src_w, max(1, _div_round(h * src_w, w))
    return max(1, _div_round(w * src_h, h)), src_h


def read_spec(text: str) -> VariantSpec:
    """The spec ``text`` means, however it is spelled; ``SpecError`` if none."""
    if not text:
        raise SpecError("the spec is empty: give w, h or both, as w=800")
    if len(text) > MAX_SPEC_LENGTH:
        raise SpecError(f"the spec is longer than {MAX_SPEC_LENGTH} characters")
    given: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key, value = key.lower(), value.lower()
        if not sep or not value:
            raise SpecError(f"{item!r} is not key=value (keys: {', '.join(KEYS)})")
        if key not in KEYS:
            raise SpecError(f"unknown key {key!r}: the keys are {', '.join(KEYS)}")
        if key in given:
            raise SpecError(f"{key} is given twice")
        given[key] = value
    quality = _number(given, "q")
    return VariantSpec(
        width=_number(given, "w"),
        height=_number(given, "h"),
        fit=given.get("fit", DEFAULT_FIT),
        fmt=_FORMAT_ALIASES.get(given.get("fmt", ""), given.get("fmt", DEFAULT_FORMAT)),
        quality=DEFAULT_QUALITY if quality is None else quality,
    )


def _number(given: dict[str, str], key: str) -> int | None:
    if key not in given:
        return None
    if not _DIGITS.fullmatch(given[key]):
        raise SpecError(f"{key} must be a whole number, not {given[key]!r}")
    return int(given[key])


def parse(text: str) -> VariantSpec:
    """The spec ``text`` names, which must be canonical: ``NotCanonical`` if it means one
    written otherwise, ``SpecError`` if it means none."""
    spec = read_spec(text)
    if text != spec.canonical:
        raise NotCanonical(text, spec.canonical)
    return spec


def parse_presets(text: str) -> dict[str, str]:
    """``card:w=400,h=300,fit=cover;avatar:w=128,h=128,fit=cover`` -> name: canonical spec.

    Raises ``ValueError`` with a message naming the preset for a bad name, a repeated
    name, a spec that is not one, or one not written in canonical form (which it names).
    """
    presets: dict[str, str] = {}
    for entry in text.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, spec_text = entry.partition(":")
        name, spec_text = name.strip(), spec_text.strip()
        if not sep or not PRESET_NAME.fullmatch(name):
            raise ValueError(
                f"preset {entry!r}: write name:spec, the name of a-z, 0-9, - and _ "
                "(starting with a letter, at most 32)"
            )
        if name in presets:
            raise ValueError(f"preset {name} is given twice")
        try:
            presets[name] = parse(spec_text).canonical
        except NotCanonical as exc:
            raise ValueError(f"preset {name}: write its spec as {exc.canonical}") from exc
        except SpecError as exc:
            raise ValueError(f"preset {name}: {exc}") from exc
    return presets


def canonical_pattern(max_size: int) -> str:
    """A regular expression (of the syntax Python and JSON Schema share) matching exactly
    the canonical specs no larger than ``max_size``: for the API description."""
    size = _integers_up_to(min(max_size, MAX_DIMENSION))
    qualities = "(?:[1-9]|[1-7][0-9]|8[1-9]|9[0-9]|100)"  # q=80 is the default: left out
    dims = f"(?:w={size},h={size}(?:,fit=(?:cover|fill))?|[wh]={size})"
    encoding = f"(?:,fmt=png|(?:,fmt=(?:avif|jpeg|auto))?(?:,q={qualities})?)"
    return f"^{dims}{encoding}$"


def _integers_up_to(limit: int) -> str:
    """A pattern for 1 to ``limit`` (>= 1), without leading zeros."""
    digits = str(limit)
    head, rest = int(digits[0]), digits[1:]
    options = [f"{head}{_digits_up_to(rest)}"]
    if head > 1:
        lower = "1" if head == 2 else f"[1-{head - 1}]"
        options.insert(0, f"{lower}{_any_digits(len(rest))}")
    if len(digits) == 2:
        options.insert(0, "[1-9]")
    elif len(digits) > 2:
        options.insert(0, f"[1-9][0-9]{{0,{len(digits) - 2}}}")
    return f"(?:{'|'.join(options)})"


def _any_digits(count: int) -> str:
    return "" if count == 0 else "[0-9]" if count == 1 else f"[0-9]{{{count}}}"


def _digits_up_to(digits: str) -> str:
    """A pattern for strings of ``len(digits)`` digits (leading zeros allowed) that are at
    most ``digits`` as a number."""
    if not digits:
        return ""
    head, rest = int(digits[0]), digits[1:]
    same = f"{head}{_digits_up_to(rest)}"
    if head == 0:
        return same
    lower = "0" if head == 1 else f"[0-{head - 1}]"
    return f"(?:{lower}{_any_digits(len(rest))}|{same})"


def negotiate(accept: str | None) -> str:
    """The format ``fmt=auto`` gives for this ``Accept`` header: ``avif`` if the client
    names it, else ``webp`` if it names that, else ``jpeg``. Only a type named outright
    counts (with a q above 0): a wildcard does not, since many clients that send
    ``*/*`` cannot decode AVIF or WebP."""
    named: set[str] = set()
    for media_range in (accept or "").split(","):
        media, *params = media_range.split(";")
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
        if weight > 0:
            named.add(media.strip().lower())
    if "image/avif" in named:
        return "avif"
    if "image/webp" in named:
        return "webp"
    return "jpeg"
