"""Thumbnails and variants (uploads_api.media) on real files made by tests/imagegen.py, and
the shared corpus: the right size and colours, no metadata kept, bad files refused. The
metadata read from files: test_imaging_metadata.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat

from tests import imagegen
from tests.imaging_helpers import ALL_FORMATS, as_a_pool_worker
from uploads_api.media.images import (
    ImageError,
    Rendition,
    make_thumbnails,
    make_variant,
    read_image_metadata,
)
from uploads_api.media.variant_spec import parse
from uploads_api.media.worker import configure_worker

SIZES = (256, 1024)
CORPUS = Path("/work/shared/corpus/pillow")


@pytest.fixture(autouse=True)
def worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Set up this process as a pool worker would be; the pixel limit is put back after."""
    as_a_pool_worker(monkeypatch)


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    path = tmp_path / "out"
    path.mkdir()
    return path


def thumbnails(
    src: Path, out_dir: Path, sizes: tuple[int, ...] = SIZES, fmt: str = "png"
) -> list[Rendition]:
    return make_thumbnails(str(src), str(out_dir), sizes, fmt, ALL_FORMATS)


def opened(thumb: Rendition) -> Image.Image:
    """The thumbnail, fully decoded (so it is valid) and with its file closed."""
    with Image.open(thumb.path) as img:
        img.load()
    assert img.size == (thumb.thumbnail.width, thumb.thumbnail.height)
    return img


def colour_at(img: Image.Image, fx: float, fy: float) -> tuple[int, ...]:
    """The pixel at a fraction of the width and height."""
    pixel = img.convert("RGBA").getpixel((int(fx * (img.width - 1)), int(fy * (img.height - 1))))
    assert isinstance(pixel, tuple)
    return pixel


def near(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=False))


# --- orientation and sizes --------------------------------------------------------------


@pytest.mark.parametrize("sizes", [(1024,), (40, 160)], ids=["own-size", "drafted"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_is_applied(
    tmp_path: Path, out_dir: Path, orientation: int, sizes: tuple[int, ...]
) -> None:
    src = imagegen.jpeg_with_orientation(tmp_path, orientation, size=(640, 320))
    for size, thumb in zip(sizes, thumbnails(src, out_dir, sizes), strict=True):
        long_edge = min(size, 640)
        assert (thumb.thumbnail.width, thumb.thumbnail.height) == (long_edge, long_edge // 2)
        img = opened(thumb)
        assert near(colour_at(img, 0.25, 0.25), (*imagegen.RED, 255))
        for fx, fy in [(0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]:
            assert near(colour_at(img, fx, fy), (*imagegen.BLUE, 255))


@pytest.mark.parametrize(
    ("spec", "size"),
    [("w=320", (320, 160)), ("w=160,h=160,fit=cover", (160, 160)), ("h=80,fmt=png", (160, 80))],
)
@pytest.mark.parametrize("orientation", range(1, 9))
def test_variants_are_made_upright(
    tmp_path: Path, out_dir: Path, orientation: int, spec: str, size: tuple[int, int]
) -> None:
    """EXIF orientation first, then the resize and the crop (of the image as displayed)."""
    src = imagegen.jpeg_with_orientation(tmp_path, orientation, size=(640, 320))
    made = make_variant(str(src), str(out_dir), parse(spec), None, ALL_FORMATS)
    with Image.open(made.path) as img:
        img.load()
    assert img.size == (made.width, made.height) == size
    assert made.length == Path(made.path).stat().st_size
    assert not img.getexif()
    if "cover" in spec:  # the centre 320x320 of 640x320: red on the left half's top
        assert near(colour_at(img, 0.1, 0.1), (*imagegen.RED, 255))
        assert near(colour_at(img, 0.9, 0.1), (*imagegen.BLUE, 255))
        assert near(colour_at(img, 0.1, 0.9), (*imagegen.BLUE, 255))
        return
    assert near(colour_at(img, 0.25, 0.25), (*imagegen.RED, 255))
    for fx, fy in [(0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]:
        assert near(colour_at(img, fx, fy), (*imagegen.BLUE, 255))


def test_a_variant_from_a_smaller_copy_has_the_size_the_original_gives(
    tmp_path: Path, out_dir: Path
) -> None:
    """From a thumbnail the geometry is worked out on the original's size, so that both
    sources give one size: w=500 of 2000x1026 is 500x257, where the 1024x525 thumbnail
    on its own would give 500x256."""
    original = imagegen.jpeg_photo(tmp_path / "o", size=(2000, 1026), exif=False, gps=False)
    (thumb,) = thumbnails(original, out_dir, (1024,), "webp")
    assert (thumb.thumbnail.width, thumb.thumbnail.height) == (1024, 525)
    spec = parse("w=500")
    for src, reference in ((str(original), None), (thumb.path, (2000, 1026))):
        made = make_variant(src, str(out_dir), spec, reference, ALL_FORMATS)
        assert (made.width, made.height) == (500, 257)


@pytest.mark.parametrize(
    ("size", "expected"),
    [((2000, 1500), [(256, 192), (1024, 768)]), ((1500, 2000), [(192, 256), (768, 1024)])],
    ids=["landscape", "portrait"],
)
def test_long_edge_is_the_size(
    tmp_path: Path, out_dir: Path, size: tuple[int, int], expected: list[tuple[int, int]]
) -> None:
    src = imagegen.jpeg_photo(tmp_path, size=size)
    made = thumbnails(src, out_dir, SIZES, "webp")
    assert [(t.thumbnail.width, t.thumbnail.height) for t in made] == expected
    assert [t.thumbnail.size for t in made] == list(SIZES)
    for thumb in made:
        assert thumb.thumbnail.content_type == "image/webp"
        assert thumb.path == str(out_dir / f"{thumb.thumbnail.size}.webp")
        assert opened(thumb).format == "WEBP"


def test_results_follow_the_order_of_sizes(tmp_path: Path, out_dir: Path) -> None:
    src = imagegen.jpeg_photo(tmp_path, size=(800, 600), exif=False, gps=False)
    made = thumbnails(src, out_dir, (100, 400, 200))
    made_sizes = [(t.thumbnail.size, t.thumbnail.width) for t in made]
    assert made_sizes == [(100, 100), (400, 400), (200, 200)]


def test_never_upscales(tmp_path: Path, out_dir: Path) -> None:
    src = imagegen.webp_image(tmp_path, size=(100, 50))
    made = thumbnails(src, out_dir)
    assert [(t.thumbnail.width, t.thumbnail.height) for t in made] == [(100, 50), (100, 50)]
    assert all(opened(t).size == (100, 50) for t in made)


# --- colour modes and formats -----------------------------------------------------------


def test_cmyk_becomes_rgb(tmp_path: Path, out_dir: Path) -> None:
    (thumb,) = thumbnails(imagegen.cmyk_jpeg(tmp_path), out_dir, (100,))
    img = opened(thumb)
    assert img.mode == "RGB"
    assert near(colour_at(img, 0.2, 0.5), (0, 255, 255, 255))  # cyan
    assert near(colour_at(img, 0.8, 0.5), (255, 255, 0, 255))  # yellow


def test_lab_is_colour_converted(tmp_path: Path, out_dir: Path) -> None:
    (thumb,) = thumbnails(imagegen.lab_tiff(tmp_path), out_dir, (32,))
    assert near(colour_at(opened(thumb), 0.5, 0.5), (*imagegen.RED, 255), tolerance=15)


def test_16_bit_is_scaled_not_clipped(tmp_path: Path, out_dir: Path) -> None:
    (thumb,) = thumbnails(imagegen.png_16bit(tmp_path), out_dir, (256,))
    img = opened(thumb).convert("L")
    assert ImageStat.Stat(img).stddev[0] > 50  # a ramp, not a flat white
    left, right = colour_at(img, 0.02, 0.5)[0], colour_at(img, 0.98, 0.5)[0]
    assert left < 20
    assert right > 235


@pytest.mark.parametrize("fmt", ["webp", "png", "avif"])
@pytest.mark.parametrize(
    ("make", "opaque"),
    [(imagegen.palette_png_transparent, imagegen.GREEN), (imagegen.rgba_png, imagegen.RED)],
)
def test_alpha_is_kept_where_the_format_has_it(
    tmp_path: Path,
    out_dir: Path,
    make: Callable[[Path], Path],
    opaque: tuple[int, int, int],
    fmt: str,
) -> None:
    (thumb,) = thumbnails(make(tmp_path), out_dir, (32,), fmt)
    img = opened(thumb)
    assert img.mode == "RGBA"
    assert colour_at(img, 0.1, 0.5)[3] < 10
    assert near(colour_at(img, 0.9, 0.5), (*opaque, 255))


def test_jpeg_flattens_alpha_onto_white(tmp_path: Path, out_dir: Path) -> None:
    (thumb,) = thumbnails(imagegen.rgba_png(tmp_path), out_dir, (32,), "jpeg")
    img = opened(thumb)
    assert (img.format, img.mode) == ("JPEG", "RGB")
    assert near(colour_at(img, 0.1, 0.5), (255, 255, 255, 255))
    assert near(colour_at(img, 0.9, 0.5), (*imagegen.RED, 255))


def test_animated_gif_gives_its_first_frame(tmp_path: Path, out_dir: Path) -> None:
    (thumb,) = thumbnails(imagegen.animated_gif(tmp_path), out_dir, (24,))
    assert near(colour_at(opened(thumb), 0.5, 0.5), (*imagegen.RED, 255), tolerance=5)


@pytest.mark.parametrize(
    "make",
    [
        imagegen.heic_image,
        imagegen.avif_image,
        imagegen.webp_image,
        imagegen.bmp_image,
        imagegen.tiff_image,
    ],
)
def test_other_formats_decode(tmp_path: Path, out_dir: Path, make: Callable[[Path], Path]) -> None:
    made = thumbnails(make(tmp_path), out_dir, (64, 1024))
    assert [(t.thumbnail.width, t.thumbnail.height) for t in made] == [(64, 48), (128, 96)]
    img = opened(made[1])
    # The gradient survives: dark red on the left, bright red on the right.
    assert colour_at(img, 0.05, 0.5)[0] < 40
    assert colour_at(img, 0.95, 0.5)[0] > 215


@pytest.mark.parametrize(
    ("fmt", "pil_format", "content_type"),
    [
        ("webp", "WEBP", "image/webp"),
        ("jpeg", "JPEG", "image/jpeg"),
        ("png", "PNG", "image/png"),
        ("avif", "AVIF", "image/avif"),
    ],
)
def test_outputs_carry_no_metadata(
    tmp_path: Path, out_dir: Path, fmt: str, pil_format: str, content_type: str
) -> None:
    src = imagegen.jpeg_photo(tmp_path, size=(600, 400))
    (thumb,) = thumbnails(src, out_dir, (300,), fmt)
    img = opened(thumb)
    assert (img.format, thumb.thumbnail.content_type) == (pil_format, content_type)
    assert dict(img.getexif()) == {}
    assert not {"exif", "icc_profile", "xmp", "XML:com.adobe.xmp"} & set(img.info)


# --- bad files --------------------------------------------------------------------------


def test_truncated_image_fails_and_leaves_nothing(tmp_path: Path, out_dir: Path) -> None:
    with pytest.raises(ImageError, match="truncated or corrupt"):
        thumbnails(imagegen.truncated_jpeg(tmp_path), out_dir)
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("limit", [50_000_000, 300_000_000], ids=["error", "warning"])
def test_decompression_bomb_is_refused(tmp_path: Path, out_dir: Path, limit: int) -> None:
    # 400 Mpx: over twice the first limit (Pillow raises), under twice the second (warns).
    configure_worker(max_pixels=limit)
    bomb = imagegen.decompression_bomb_png(tmp_path)
    for call in (
        lambda: thumbnails(bomb, out_dir),
        lambda: read_image_metadata(str(bomb), ALL_FORMATS),
        lambda: make_variant(str(bomb), str(out_dir), parse("w=100"), None, ALL_FORMATS),
    ):
        with pytest.raises(
            ImageError, match=f"too large: 400000000 pixels exceeds the limit of {limit}"
        ):
            call()
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("make", [imagegen.not_an_image, imagegen.pdf_file])
def test_non_images_are_refused(
    tmp_path: Path, out_dir: Path, make: Callable[[Path], Path]
) -> None:
    src = make(tmp_path)
    with pytest.raises(ImageError, match="not an image"):
        thumbnails(src, out_dir)
    with pytest.raises(ImageError, match="not an image"):
        read_image_metadata(str(src), ALL_FORMATS)


def test_formats_not_allowed_are_not_decoded(tmp_path: Path, out_dir: Path) -> None:
    src = str(imagegen.tiff_image(tmp_path))
    allowed = ALL_FORMATS - {"TIFF"}
    with pytest.raises(ImageError, match="format TIFF is not accepted"):
        make_thumbnails(src, str(out_dir), SIZES, "webp", allowed)
    with pytest.raises(ImageError, match="format TIFF is not accepted"):
        read_image_metadata(src, allowed)


def test_missing_source_is_not_an_image_error(tmp_path: Path, out_dir: Path) -> None:
    # A missing file is a problem of the machine: it must stay retryable.
    with pytest.raises(FileNotFoundError):
        thumbnails(tmp_path / "gone.jpg", out_dir)


def test_failed_write_leaves_nothing(
    tmp_path: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_write(self: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
        fp.write(b"partial")
        raise OSError("disk full")

    src = imagegen.jpeg_photo(tmp_path, size=(300, 200), exif=False, gps=False)
    monkeypatch.setattr(Image.Image, "save", half_write)
    with pytest.raises(OSError, match="disk full") as caught:
        thumbnails(src, out_dir, (100,))
    assert not isinstance(caught.value, ImageError)
    assert list(out_dir.iterdir()) == []


def test_unknown_output_format_is_a_programming_error(tmp_path: Path, out_dir: Path) -> None:
    with pytest.raises(ValueError, match="unknown thumbnail format"):
        thumbnails(imagegen.webp_image(tmp_path), out_dir, SIZES, "gif")


# --- the shared corpus ------------------------------------------------------------------

# Every format Pillow can open is allowed here, to exercise as many decoders as possible.
CORPUS_FORMATS = frozenset(
    {*ALL_FORMATS, "ICO", "PSD", "JPEG2000", "TGA", "QOI", "DDS", "FLI", "PPM", "SGI"}
)
# Files that hang or crash the interpreter, with the reason. None with Pillow 13.0: every
# file was first tried alone in a subprocess with a timeout.
CORPUS_EXCLUDED: dict[str, str] = {}


def corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix != ".txt")


@pytest.mark.slow
@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"image corpus not present at {CORPUS}")
@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about odd metadata
def test_corpus_never_fails_unexpectedly(out_dir: Path) -> None:
    """Each file gives valid thumbnails and JSON metadata, or an ImageError: nothing else."""
    outcomes: dict[str, str] = {}
    for path in corpus_files():
        if path.name in CORPUS_EXCLUDED:
            continue
        dest = out_dir / path.name
        dest.mkdir()
        try:
            made = make_thumbnails(str(path), str(dest), SIZES, "webp", CORPUS_FORMATS)
            json.dumps(read_image_metadata(str(path), CORPUS_FORMATS), allow_nan=False)
        except ImageError:
            assert [p for p in dest.iterdir() if p.suffix == ".tmp"] == [], path.name
            outcomes[path.name] = "refused"
            continue
        except Exception as exc:
            pytest.fail(f"{path.name}: {exc!r} is not an ImageError")
        for thumb in made:
            assert max(opened(thumb).size) <= thumb.thumbnail.size, path.name
        outcomes[path.name] = "ok"
    assert "ok" in outcomes.values()
    assert "refused" in outcomes.values()
