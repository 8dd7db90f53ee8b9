"""Image variants through a real server: each fit and format with its exact size, no
upscaling, EXIF orientation and the best source, ``Accept`` and ``Vary``, ETag and 304,
the size cap, presets, refusals (a decompression bomb, a file that is no image, another
owner's file), twenty requests for a new variant making it once (in one process and
across two), deletion. The sweep's cap on each owner's variants, which needs no server,
is in ``test_variant_cache.py``."""

from __future__ import annotations

import asyncio
import io
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests import imagegen
from tests.conftest import Server, ServerFactory
from tests.helpers import (
    assert_problem,
    bearer,
    create_keys,
    thumbnail_dir,
    upload,
    wait_closed,
    wait_done,
    wait_for,
)

e2e = pytest.mark.e2e
TYPES = {"WEBP": "image/webp", "AVIF": "image/avif", "JPEG": "image/jpeg", "PNG": "image/png"}


@dataclass(frozen=True)
class Live:
    server: Server
    keys: dict[str, str]

    def client(self, owner: str) -> httpx.Client:
        headers = bearer(self.keys[owner])
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def live(module_server_factory: ServerFactory) -> Live:
    server = module_server_factory()
    keys = create_keys(server.data_dir, "alice", "bob", "ops", admin=("ops",))
    wait_closed(server)
    return Live(server, keys)


@pytest.fixture(scope="module")
def alice(live: Live) -> Iterator[httpx.Client]:
    with live.client("alice") as client:
        yield client


def _ready(client: httpx.Client, path: Path) -> str:
    (record,) = upload(client, path)
    record = wait_done(client, record["id"])
    assert record["status"] == "ready", record
    return str(record["id"])


@pytest.fixture(scope="module")
def photo(alice: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 1600x1200 photo of alice's, with its 256 and 1024 px thumbnails made."""
    path = imagegen.jpeg_photo(tmp_path_factory.mktemp("photo"), size=(1600, 1200), gps=False)
    return _ready(alice, path)


def fetch(client: httpx.Client, file_id: str, spec: str, **headers: str) -> httpx.Response:
    return client.get(f"/v1/files/{file_id}/variants/{spec}", headers=headers)


def decoded(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    image = Image.open(io.BytesIO(response.content))
    image.load()
    assert response.headers["content-type"] == TYPES[str(image.format)]
    assert int(response.headers["content-length"]) == len(response.content)
    return image


def colour(image: Image.Image, fx: float, fy: float) -> tuple[int, int, int]:
    pixel = image.convert("RGB").getpixel(
        (int(fx * (image.width - 1)), int(fy * (image.height - 1)))
    )
    assert isinstance(pixel, tuple)
    return pixel[0], pixel[1], pixel[2]


def near(found: tuple[int, int, int], wanted: tuple[int, int, int], tolerance: int = 60) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(found, wanted, strict=True))


# Sizes, fits and formats --------------------------------------------------------------


@e2e
@pytest.mark.parametrize(
    ("spec", "size", "fmt"),
    [
        ("w=800", (800, 600), "WEBP"),
        ("h=300,fmt=jpeg", (400, 300), "JPEG"),
        ("w=800,h=800", (800, 600), "WEBP"),
        ("w=800,h=300,fmt=png", (400, 300), "PNG"),
        ("w=800,h=800,fit=cover,fmt=avif,q=60", (800, 800), "AVIF"),
        ("w=100,h=400,fit=cover,fmt=png", (100, 400), "PNG"),
        ("w=300,h=100,fit=fill,fmt=jpeg,q=90", (300, 100), "JPEG"),
        ("w=1100", (1100, 825), "WEBP"),  # larger than the 1024 px thumbnail: the original
        ("w=1200,h=1200,fit=cover,fmt=avif", (1200, 1200), "AVIF"),
        # Never larger than the source; a box past it is scaled down with its aspect kept.
        ("w=3000", (1600, 1200), "WEBP"),
        ("w=3000,h=3000", (1600, 1200), "WEBP"),
        ("w=3200,h=3200,fit=cover", (1200, 1200), "WEBP"),
        ("w=3200,h=200,fit=fill", (1600, 100), "WEBP"),
    ],
)
def test_each_fit_and_format_has_its_exact_size(
    alice: httpx.Client, photo: str, spec: str, size: tuple[int, int], fmt: str
) -> None:
    image = decoded(fetch(alice, photo, spec))
    assert (image.format, image.size) == (fmt, size)
    assert not image.getexif()


@e2e
def test_cover_crops_the_centre_and_fill_stretches(alice: httpx.Client, tmp_path: Path) -> None:
    """Red, green and blue bands across a 1600x800 image: cover's square is the green
    middle; fill keeps red at the left and blue at the right; contain keeps both."""
    bands = Image.new("RGB", (1600, 800), imagegen.GREEN)
    bands.paste(imagegen.RED, (0, 0, 400, 800))
    bands.paste(imagegen.BLUE, (1200, 0, 1600, 800))
    path = tmp_path / "bands.png"
    bands.save(path)
    file_id = _ready(alice, path)
    cover = decoded(fetch(alice, file_id, "w=400,h=400,fit=cover,fmt=png"))
    assert cover.size == (400, 400)
    assert all(near(colour(cover, fx, 0.5), imagegen.GREEN) for fx in (0.05, 0.5, 0.95))
    fill = decoded(fetch(alice, file_id, "w=400,h=400,fit=fill,fmt=png"))
    assert fill.size == (400, 400)
    assert near(colour(fill, 0.0, 0.5), imagegen.RED)
    assert near(colour(fill, 1.0, 0.5), imagegen.BLUE)
    contain = decoded(fetch(alice, file_id, "w=400,h=400,fmt=png"))
    assert contain.size == (400, 200)
    assert near(colour(contain, 0.0, 0.5), imagegen.RED)


@e2e
@pytest.mark.parametrize(
    ("spec", "size", "source"),
    [
        ("w=500", (500, 250), "the 1024 px thumbnail"),
        ("w=1500,h=500,fit=cover", (1500, 500), "the original"),
        ("w=1500", (1500, 750), "the original"),
    ],
)
def test_orientation_is_applied_whichever_source_serves(
    live: Live, alice: httpx.Client, tmp_path: Path, spec: str, size: tuple[int, int], source: str
) -> None:
    """A photo stored on its side (EXIF orientation 6) shows 2000x1000; the thumbnail
    serves what it is large enough for, the original the rest."""
    path = imagegen.jpeg_with_orientation(tmp_path, 6, size=(2000, 1000))
    file_id = _ready(alice, path)
    image = decoded(fetch(alice, file_id, spec))
    assert image.size == size
    assert near(colour(image, 0.1, 0.1), imagegen.RED)
    assert near(colour(image, 0.9, 0.9), imagegen.BLUE)
    made = [line for line in live.server.logs().splitlines() if f"file {file_id} " in line]
    assert len(made) == 1 and made[0].endswith(f"from {source}"), made


# Formats by Accept, ETags, caching ------------------------------------------------------


@e2e
def test_auto_format_follows_accept_and_says_it_varies(alice: httpx.Client, photo: str) -> None:
    etags: dict[str, set[str]] = {}
    for accept, fmt in [
        ("image/avif,image/webp,image/apng,image/*,*/*;q=0.8", "AVIF"),
        ("image/webp,*/*", "WEBP"),
        ("*/*", "JPEG"),
        ("image/avif;q=0,image/webp", "WEBP"),
    ]:
        response = fetch(alice, photo, "w=200,fmt=auto", Accept=accept)
        image = decoded(response)
        assert (image.format, image.size) == (fmt, (200, 150))
        assert response.headers["vary"] == "Accept"
        etags.setdefault(fmt, set()).add(response.headers["etag"])
    assert all(len(tags) == 1 for tags in etags.values())
    assert len(set.union(*etags.values())) == 3
    plain = fetch(alice, photo, "w=200")
    assert "vary" not in plain.headers
    assert {plain.headers["etag"]} == etags["WEBP"], "the same bytes under the same ETag"


@e2e
def test_a_strong_etag_and_304(alice: httpx.Client, photo: str) -> None:
    first = fetch(alice, photo, "w=640,q=70")
    etag = first.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{40}"', etag), "strong, quoted"
    assert first.headers["cache-control"] == "private, max-age=86400"
    again = fetch(alice, photo, "w=640,q=70")
    assert (again.headers["etag"], again.content) == (etag, first.content)
    for validator in (etag, f'"other", {etag}', "*"):
        not_modified = fetch(alice, photo, "w=640,q=70", **{"If-None-Match": validator})
        assert (not_modified.status_code, not_modified.content) == (304, b"")
        assert not_modified.headers["etag"] == etag
        assert not_modified.headers["cache-control"] == "private, max-age=86400"
    assert fetch(alice, photo, "w=640,q=70", **{"If-None-Match": '"other"'}).status_code == 200
    assert fetch(alice, photo, "w=640,q=71").headers["etag"] != etag


# Refusals ---------------------------------------------------------------------------------


@e2e
@pytest.mark.parametrize(
    ("spec", "code", "member"),
    [
        ("w=4097", "variant-too-large", ("limit", 4096)),
        ("w=800,h=5000,fit=fill", "variant-too-large", ("limit", 4096)),
        ("w=0800", "variant-spec-not-canonical", ("canonical", "w=800")),
        ("h=600,w=800,fit=contain", "variant-spec-not-canonical", ("canonical", "w=800,h=600")),
        ("w=800,fmt=webp", "variant-spec-not-canonical", ("canonical", "w=800")),
        ("w=800,w=900", "invalid-variant-spec", None),
        ("w=800,fit=fill", "invalid-variant-spec", None),
        ("w=0", "invalid-variant-spec", None),
        ("card", "invalid-variant-spec", None),
    ],
)
def test_specs_refused_with_the_reason(
    alice: httpx.Client, photo: str, spec: str, code: str, member: tuple[str, object] | None
) -> None:
    problem = assert_problem(fetch(alice, photo, spec), 400, code)
    if member is not None:
        assert problem[member[0]] == member[1]


@e2e
def test_another_owners_file_is_404_and_an_admin_sees_it(live: Live, photo: str) -> None:
    with live.client("bob") as bob, live.client("ops") as admin:
        assert_problem(fetch(bob, photo, "w=100"), 404, "not-found")
        assert decoded(fetch(admin, photo, "w=100")).size == (100, 75)
        for missing in ("0" * 32, "not-an-id"):
            assert_problem(fetch(admin, missing, "w=100"), 404, "not-found")
    assert httpx.get(f"{live.server.url}/v1/files/{photo}/variants/w=100").status_code == 401


@e2e
def test_a_decompression_bomb_is_refused(alice: httpx.Client, tmp_path: Path) -> None:
    (record,) = upload(alice, imagegen.decompression_bomb_png(tmp_path))
    assert wait_done(alice, record["id"])["status"] == "failed"
    problem = assert_problem(fetch(alice, record["id"], "w=100"), 422, "undecodable-image")
    assert "too large: 400000000 pixels" in problem["detail"]


@e2e
def test_no_image_no_variants_and_a_pdf_has_its_first_page(
    alice: httpx.Client, tmp_path: Path
) -> None:
    text = _ready(alice, imagegen.not_an_image(tmp_path))
    assert_problem(fetch(alice, text, "w=100"), 422, "no-image")
    pdf = _ready(alice, imagegen.pdf_file(tmp_path))
    record = alice.get(f"/v1/files/{pdf}").json()
    page = max(record["thumbnails"], key=lambda thumb: thumb["size"])
    image = decoded(fetch(alice, pdf, "w=100"))
    # Rounded half up, as the geometry does.
    assert image.size == (100, (2 * page["height"] * 100 + page["width"]) // (2 * page["width"]))
    clamped = decoded(fetch(alice, pdf, "w=4000"))
    assert clamped.size == (page["width"], page["height"]), "never larger than the page"


# Made once -----------------------------------------------------------------------------


def _made(client: httpx.Client) -> float:
    found = re.search(
        r'^uploads_variants_made_total\{format="webp"\} (\S+)$', client.get("/metrics").text, re.M
    )
    return float(found.group(1)) if found else 0.0


async def _together(
    url: str, path: str, count: int, headers: dict[str, str]
) -> list[httpx.Response]:
    """``count`` GETs at once, each on a connection of its own."""

    async def one() -> httpx.Response:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
            return await client.get(path)

    return await asyncio.gather(*(one() for _ in range(count)))


@e2e
def test_twenty_requests_for_a_new_variant_make_it_once(
    live: Live, alice: httpx.Client, photo: str
) -> None:
    before = _made(alice)
    answers = asyncio.run(
        _together(
            live.server.url, f"/v1/files/{photo}/variants/w=517", 20, bearer(live.keys["alice"])
        )
    )
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1 and len({a.headers["etag"] for a in answers}) == 1
    assert _made(alice) == before + 1
    assert live.server.logs().count(f"variant made: file {photo} w=517 ") == 1


@e2e
def test_two_processes_make_a_new_variant_once(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(workers=2)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        file_id = _ready(client, imagegen.jpeg_photo(tmp_path, size=(1600, 1200), gps=False))
    answers = asyncio.run(_together(server.url, f"/v1/files/{file_id}/variants/w=1300", 20, {}))
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert server.logs().count(f"variant made: file {file_id} ") == 1


# Presets ---------------------------------------------------------------------------------


@e2e
def test_a_server_with_presets_serves_them_only(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_factory(
        variant_presets="card:w=400,h=300,fit=cover;avatar:w=128,h=128,fit=cover,fmt=png"
    )
    with httpx.Client(base_url=server.url, timeout=60) as client:
        file_id = _ready(client, imagegen.jpeg_photo(tmp_path, size=(1600, 1200), gps=False))
        card = fetch(client, file_id, "card")
        assert decoded(card).size == (400, 300)
        by_spec = fetch(client, file_id, "w=400,h=300,fit=cover")
        assert by_spec.headers["etag"] == card.headers["etag"]
        avatar = decoded(fetch(client, file_id, "avatar"))
        assert (avatar.format, avatar.size) == ("PNG", (128, 128))
        for spec in ("w=100", "w=400,h=300", "banner"):
            problem = assert_problem(fetch(client, file_id, spec), 403, "variant-not-allowed")
            assert problem["presets"] == ["avatar", "card"]
        problem = assert_problem(
            fetch(client, file_id, "h=300,w=400,fit=cover"), 400, "variant-spec-not-canonical"
        )
        assert problem["canonical"] == "w=400,h=300,fit=cover"


@e2e
def test_a_bad_preset_stops_the_server_with_a_clear_message(tmp_path: Path) -> None:
    server = Server(
        tmp_path / "data", {"UPLOADS_VARIANT_PRESETS": "card:h=300,w=400"}, tmp_path / "log"
    )
    with pytest.raises(RuntimeError, match="exited early"):
        server.start()
    assert "variant_presets" in server.logs()
    assert "preset card: write its spec as w=400,h=300" in server.logs()


# Deleted with their file -------------------------------------------------------------------


def _rows(server: Server, file_id: str) -> int:
    with sqlite3.connect(server.data_dir / "uploads.db") as db:
        (count,) = db.execute(
            "SELECT count(*) FROM variants WHERE file_id = ?", (file_id,)
        ).fetchone()
    return int(count)


@e2e
def test_deleting_a_file_removes_its_variants(
    live: Live, alice: httpx.Client, tmp_path: Path
) -> None:
    file_id = _ready(alice, imagegen.jpeg_photo(tmp_path, size=(640, 480), gps=False))
    for spec in ("w=100", "w=200,h=200,fit=cover,fmt=avif"):
        assert fetch(alice, file_id, spec).status_code == 200
    stored = thumbnail_dir(live.server, file_id) / "variants"
    assert len(list(stored.iterdir())) == 2 and _rows(live.server, file_id) == 2
    assert alice.delete(f"/v1/files/{file_id}").status_code == 204
    assert _rows(live.server, file_id) == 0, "the rows go with the record"
    wait_for(lambda: not thumbnail_dir(live.server, file_id).exists(), what="the variants to go")
    assert_problem(fetch(alice, file_id, "w=100"), 404, "not-found")
