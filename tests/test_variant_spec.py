"""Variant specs on their own: parsing, canonical forms, refusals, presets, the geometry of
each fit (exact sizes, no upscaling) and the format ``fmt=auto`` picks from ``Accept``."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uploads_api.config import Settings
from uploads_api.media.variant_spec import (
    FITS,
    FORMATS,
    MAX_DIMENSION,
    NotCanonical,
    SpecError,
    VariantSpec,
    canonical_pattern,
    negotiate,
    parse,
    parse_presets,
    read_spec,
)

spec_settings = settings(max_examples=400, deadline=None, database=None)

# Parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("w=800", VariantSpec(800)),
        ("h=600", VariantSpec(height=600)),
        ("w=800,h=600", VariantSpec(800, 600)),
        ("w=800,h=600,fit=cover,fmt=avif,q=70", VariantSpec(800, 600, "cover", "avif", 70)),
        ("w=1,h=1,fit=fill", VariantSpec(1, 1, "fill")),
        ("w=64,fmt=png", VariantSpec(64, fmt="png")),
        ("h=10,fmt=auto,q=1", VariantSpec(height=10, fmt="auto", quality=1)),
        ("w=65535,q=100", VariantSpec(65535, quality=100)),
        ("w=10,fmt=jpeg", VariantSpec(10, fmt="jpeg")),
    ],
)
def test_canonical_specs_parse(text: str, expected: VariantSpec) -> None:
    assert parse(text) == expected
    assert expected.canonical == text


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("h=600,w=800", "w=800,h=600"),  # keys out of order
        ("w=800,fit=contain", "w=800"),  # a default spelled out
        ("w=800,fmt=webp", "w=800"),
        ("w=800,q=80", "w=800"),
        ("w=800,fit=contain,fmt=webp,q=80", "w=800"),
        ("w=0800", "w=800"),  # a leading zero
        ("w=800,q=070", "w=800,q=70"),
        ("W=800", "w=800"),  # upper case
        ("w=800,fmt=AVIF", "w=800,fmt=avif"),
        ("w=800,fmt=jpg", "w=800,fmt=jpeg"),  # an alias
        ("w=800,fit=cover", "w=800"),  # cover with one dimension is contain
        ("fit=cover,h=600", "h=600"),
        ("q=50,fmt=avif,fit=cover,h=2,w=1", "w=1,h=2,fit=cover,fmt=avif,q=50"),
        ("w=800,fmt=png,q=80", "w=800,fmt=png"),
    ],
)
def test_valid_but_not_canonical_names_the_canonical_form(text: str, canonical: str) -> None:
    with pytest.raises(NotCanonical) as caught:
        parse(text)
    assert caught.value.canonical == canonical
    assert parse(canonical).canonical == canonical
    assert read_spec(text) == parse(canonical)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("w", "not key=value"),
        ("w=", "not key=value"),
        ("=800", "unknown key"),
        ("w=800,", "not key=value"),
        (",w=800", "not key=value"),
        ("x=1", "unknown key"),
        ("width=800", "unknown key"),
        ("w=800,w=900", "twice"),
        ("w=0", "1 to 65535"),
        ("w=65536", "1 to 65535"),
        ("w=-1", "whole number"),
        ("w=+1", "whole number"),
        ("w=8e2", "whole number"),
        ("w=1.5", "whole number"),
        ("w= 800", "whole number"),
        ("w=٣", "whole number"),  # an Arabic-Indic digit is not ASCII
        ("w=1234567890", "whole number"),
        ("fit=cover", "give w, h or both"),
        ("fmt=avif", "give w, h or both"),
        ("w=800,fit=stretch", "fit must be"),
        ("w=800,fmt=gif", "fmt must be"),
        ("w=800,q=0", "q must be 1 to 100"),
        ("w=800,q=101", "q must be 1 to 100"),
        ("w=800,fit=fill", "needs both"),
        ("h=800,fit=fill", "needs both"),
        ("w=800,fmt=png,q=70", "png"),
        ("card", "not key=value"),
        ("w=800;h=600", "whole number"),
        ("w=1" + ",q=80" * 20, "longer than"),
    ],
)
def test_refusals_say_why(text: str, reason: str) -> None:
    with pytest.raises(SpecError, match=reason):
        parse(text)


def _valid(**fields: object) -> VariantSpec | None:
    try:
        return VariantSpec(**fields)  # type: ignore[arg-type]
    except SpecError:
        return None


# Any valid spec: random fields, the invalid combinations dropped.
valid_specs = st.builds(
    _valid,
    width=st.none() | st.integers(1, MAX_DIMENSION),
    height=st.none() | st.integers(1, MAX_DIMENSION),
    fit=st.sampled_from(FITS),
    fmt=st.sampled_from(FORMATS),
    quality=st.integers(1, 100),
).filter(lambda s: s is not None)


@spec_settings
@given(valid_specs)
def test_the_canonical_form_parses_back_to_the_same_spec(spec: VariantSpec) -> None:
    assert parse(spec.canonical) == spec
    assert parse(spec.canonical).canonical == spec.canonical
    assert set(spec.slug) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


@spec_settings
@given(valid_specs, st.data())
def test_any_spelling_of_a_spec_reads_as_it_and_names_its_canonical_form(
    spec: VariantSpec, data: st.DataObject
) -> None:
    """Keys shuffled, defaults written out, leading zeros, upper case: the same spec, and
    ``parse`` refuses every spelling but the canonical one."""
    assert spec is not None
    items = {"w": spec.width, "h": spec.height, "fit": spec.fit, "fmt": spec.fmt}
    items["q"] = None if spec.fmt == "png" and data.draw(st.booleans()) else spec.quality
    # cover with one dimension is stored as contain; either may be written.
    if spec.fit == "contain" and (spec.width is None) != (spec.height is None):
        items["fit"] = data.draw(st.sampled_from(["contain", "cover", None]))
    for key in ("fit", "fmt", "q"):
        if items[key] is not None and data.draw(st.booleans()):
            default = {"fit": "contain", "fmt": "webp", "q": 80}[key]
            if items[key] == default:
                items[key] = None  # left out, as canonical forms do
    parts = []
    for key, value in items.items():
        if value is None:
            continue
        text = str(value)
        if isinstance(value, int) and data.draw(st.booleans()):
            text = "0" * data.draw(st.integers(1, 2)) + text
        if data.draw(st.booleans()):
            text = text.upper()
        parts.append(f"{key.upper() if data.draw(st.booleans()) else key}={text}")
    order = data.draw(st.permutations(parts))
    text = ",".join(order)
    if len(text) > 80:
        return
    assert read_spec(text) == spec
    if text == spec.canonical:
        assert parse(text) == spec
    else:
        with pytest.raises(NotCanonical) as caught:
            parse(text)
        assert caught.value.canonical == spec.canonical


@spec_settings
@given(st.text(max_size=40))
def test_arbitrary_text_is_a_spec_or_refused_readably(text: str) -> None:
    try:
        spec = parse(text)
    except NotCanonical as exc:
        assert parse(exc.canonical).canonical == exc.canonical
    except SpecError as exc:
        assert str(exc)
    else:
        assert spec.canonical == text


@spec_settings
@given(valid_specs, st.integers(1, MAX_DIMENSION + 10))
def test_the_pattern_matches_exactly_the_canonical_specs_up_to_the_limit(
    spec: VariantSpec, limit: int
) -> None:
    pattern = re.compile(canonical_pattern(limit))
    fits = max(spec.width or 0, spec.height or 0) <= limit
    assert bool(pattern.fullmatch(spec.canonical)) == fits
    if spec.canonical != spec.canonical.upper():
        assert not pattern.fullmatch(spec.canonical.upper())


@spec_settings
@given(st.from_regex(canonical_pattern(4096), fullmatch=True))
def test_what_the_pattern_matches_parses(text: str) -> None:
    spec = parse(text)
    assert max(spec.width or 0, spec.height or 0) <= 4096


@pytest.mark.parametrize("limit", [*range(1, 130), 999, 1000, 1001, 4096, 65535])
def test_the_pattern_bounds_numbers_exactly(limit: int) -> None:
    pattern = re.compile(canonical_pattern(limit))
    accepted = [
        n for n in range(1, min(limit * 11, MAX_DIMENSION) + 2) if pattern.fullmatch(f"w={n}")
    ]
    assert accepted == list(range(1, limit + 1))
    assert not pattern.fullmatch(f"w=0{limit}")


def test_a_format_chosen_later_keeps_the_rest() -> None:
    spec = parse("w=800,h=600,fit=cover,fmt=auto,q=70")
    assert spec.with_format("avif").canonical == "w=800,h=600,fit=cover,fmt=avif,q=70"
    assert spec.with_format("webp").canonical == "w=800,h=600,fit=cover,q=70"
    assert parse("w=800,fmt=auto").with_format("webp") == parse("w=800")


# Geometry -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "source", "size"),
    [
        # contain: inside w x h, the aspect kept; one dimension: scaled to it.
        ("w=800", (1600, 1200), (800, 600)),
        ("h=300", (1600, 1200), (400, 300)),
        ("w=800,h=800", (1600, 1200), (800, 600)),
        ("w=800,h=300", (1600, 1200), (400, 300)),
        ("w=100,h=100", (1200, 1600), (75, 100)),
        ("w=333", (1000, 1000), (333, 333)),
        ("w=3", (1000, 10), (3, 1)),  # never below one pixel
        # never upscaled: the source's own size
        ("w=4000", (1600, 1200), (1600, 1200)),
        ("w=4000,h=4000", (1600, 1200), (1600, 1200)),
        ("w=1600,h=5000", (1600, 1200), (1600, 1200)),
        # cover: exactly w x h, overflow cropped centred
        ("w=800,h=800,fit=cover", (1600, 1200), (800, 800)),
        ("w=400,h=100,fit=cover", (1600, 1200), (400, 100)),
        ("w=100,h=400,fit=cover", (1600, 1200), (100, 400)),
        # a box larger than the source: scaled down, aspect kept, then filled
        ("w=3200,h=3200,fit=cover", (1600, 1200), (1200, 1200)),
        ("w=2000,h=1000,fit=cover", (1600, 1200), (1600, 800)),
        ("w=800,h=2400,fit=cover", (1600, 1200), (400, 1200)),
        # fill: exactly w x h, stretched
        ("w=300,h=300,fit=fill", (1600, 1200), (300, 300)),
        ("w=1600,h=100,fit=fill", (1600, 1200), (1600, 100)),
        ("w=3200,h=200,fit=fill", (1600, 1200), (1600, 100)),
        ("w=5000,h=5000,fit=fill", (1600, 1200), (1200, 1200)),
    ],
)
def test_exact_sizes(text: str, source: tuple[int, int], size: tuple[int, int]) -> None:
    assert read_spec(text).geometry(source).size == size


def test_cover_crops_the_centre() -> None:
    plan = parse("w=800,h=800,fit=cover").geometry((1600, 1200))
    assert plan.resize == (1067, 800)
    assert plan.crop == (133, 0, 933, 800)
    tall = parse("w=400,h=100,fit=cover").geometry((1600, 1200))
    assert tall.resize == (400, 300)
    assert tall.crop == (0, 100, 400, 200)


sources = st.tuples(st.integers(1, 20000), st.integers(1, 20000))


@spec_settings
@given(valid_specs, sources)
def test_geometry_never_upscales_and_keeps_each_fit(
    spec: VariantSpec, source: tuple[int, int]
) -> None:
    plan = spec.geometry(source)
    (width, height), (src_w, src_h) = plan.size, source
    assert 1 <= width <= src_w and 1 <= height <= src_h
    assert plan.resize[0] <= src_w and plan.resize[1] <= src_h
    w, h = spec.width, spec.height
    if w is not None:
        assert width <= w
    if h is not None:
        assert height <= h
    if spec.fit == "contain":
        assert plan.crop is None
        # The aspect ratio kept to within the rounding of one pixel on either side.
        assert abs(width * src_h - height * src_w) <= max(src_w, src_h)
        limited = (w is not None and width == w) or (h is not None and height == h)
        assert limited or (width, height) == source, "as large as the box allows"
    else:
        assert w is not None and h is not None
        if w <= src_w and h <= src_h:
            assert (width, height) == (w, h)
        else:
            assert width == src_w or height == src_h, "the box scaled to fit the source"
            assert abs(width * h - height * w) <= max(w, h), "the box's aspect kept"
    if spec.fit == "cover":
        assert plan.crop is not None
        left, top, right, bottom = plan.crop
        assert min(left, top) >= 0
        assert right <= plan.resize[0] and bottom <= plan.resize[1]
        assert plan.resize[0] == width or plan.resize[1] == height, "one side is not cropped"
        assert (
            abs(left - (plan.resize[0] - right)) <= 1 and abs(top - (plan.resize[1] - bottom)) <= 1
        )
        assert abs(plan.resize[0] * src_h - plan.resize[1] * src_w) <= max(src_w, src_h)


def test_geometry_needs_a_picture() -> None:
    with pytest.raises(ValueError, match="pixels"):
        parse("w=1").geometry((0, 10))


# Presets ------------------------------------------------------------------------------


def test_presets_parse_to_canonical_specs() -> None:
    presets = parse_presets(" card:w=400,h=300,fit=cover ; avatar:w=128,h=128,fit=cover;")
    assert presets == {"card": "w=400,h=300,fit=cover", "avatar": "w=128,h=128,fit=cover"}
    assert parse_presets("") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("card", "write name:spec"),
        ("Card:w=1", "write name:spec"),
        ("1card:w=1", "write name:spec"),
        ("ca rd:w=1", "write name:spec"),
        ("card:w=1;card:w=2", "given twice"),
        ("card:w=400,fit=contain", "write its spec as w=400"),
        ("card:h=300,w=400", "write its spec as w=400,h=300"),
        ("card:w=400,fit=fill", "preset card: fit=fill needs both"),
        ("card:", "preset card: the spec is empty"),
    ],
)
def test_bad_presets_are_refused_by_name(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_presets(text)


def test_bad_presets_stop_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPLOADS_VARIANT_PRESETS", "card:w=400,h=300,fit=cover")
    assert Settings().variant_presets == {"card": "w=400,h=300,fit=cover"}
    monkeypatch.setenv("UPLOADS_VARIANT_PRESETS", "card:h=300,w=400")
    with pytest.raises(ValueError, match="write its spec as w=400,h=300"):
        Settings()
    monkeypatch.setenv("UPLOADS_VARIANT_PRESETS", "big:w=5000")
    with pytest.raises(ValueError, match="above UPLOADS_VARIANT_MAX_SIZE"):
        Settings()
    monkeypatch.setenv("UPLOADS_VARIANT_MAX_SIZE", "5000")
    assert Settings().variant_presets == {"big": "w=5000"}
    with pytest.raises(ValueError, match="write its spec as w=10"):
        Settings(variant_presets={"small": "w=010"})
    with pytest.raises(ValueError, match="name"):
        Settings(variant_presets={"Small": "w=10"})


# Accept -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        ("image/avif,image/webp,image/apng,image/*,*/*;q=0.8", "avif"),  # Chrome
        ("image/webp,*/*", "webp"),  # older browsers
        ("image/avif;q=0,image/webp", "webp"),
        ("image/avif;q=0.1", "avif"),
        ("IMAGE/AVIF", "avif"),
        (" image/webp ; q=0.5 ", "webp"),
        ("image/webp;q=zero", "jpeg"),
        ("*/*", "jpeg"),  # a wildcard names nothing
        ("image/*", "jpeg"),
        ("image/png", "jpeg"),
        ("", "jpeg"),
        (None, "jpeg"),
    ],
)
def test_auto_format_from_accept(accept: str | None, fmt: str) -> None:
    assert negotiate(accept) == fmt
