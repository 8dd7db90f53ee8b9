"""End to end: ``uploads-api upload``, ``ls``, ``get`` and ``rm`` as subprocesses against
real servers, including batches cut short by Ctrl-C, SIGKILL and a server restart."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import imagegen
from tests.conftest import ROOT, Server
from uploads_api.cli import main
from uploads_api.client import Client

pytestmark = pytest.mark.e2e
COMMAND = [sys.executable, "-m", "uploads_api.cli"]


MAX_FILE_SIZE = 20_000


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for every test here (starting one takes seconds): each test looks only at
    its own bytes. It refuses files over MAX_FILE_SIZE; the last test restarts it."""
    base = tmp_path_factory.mktemp("cli-server")
    env = {"UPLOADS_MAX_FILE_SIZE": str(MAX_FILE_SIZE)}
    server = Server(base / "data", env, base / "server.log")
    server.start()
    yield server
    server.stop()


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPLOADS_")}
    return {**env, **extra}


def cli(*args: str, url: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args, "--url", url],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment(**env),
        cwd=ROOT,
    )


def start_cli(*args: str, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*COMMAND, *args, "--url", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(),
        cwd=ROOT,
    )


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The CLI in this process (as fast as a function call): status, stdout, stderr."""
    capsys.readouterr()
    try:
        status = main(list(args))
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def parse(stdout: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    objects = [json.loads(line) for line in stdout.splitlines()]
    assert objects and objects[-1]["type"] == "summary", stdout[-2000:]
    assert all(o["type"] == "file" for o in objects[:-1])
    return objects[:-1], objects[-1]


def make_tree(root: Path, count: int, size: int = 10 * 1024) -> dict[Path, str]:
    """``count`` files of random bytes in nested folders; path -> sha256."""
    made = {}
    for i in range(count):
        folder = root / f"day{i % 4}" / f"roll{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img{i:04d}.bin"
        data = os.urandom(size)
        path.write_bytes(data)
        made[path] = hashlib.sha256(data).hexdigest()
    return made


def on_server(url: str, hashes: set[str]) -> Counter[str]:
    """How many records the server holds for each of ``hashes``."""
    with Client(url) as client:
        return Counter(r.sha256 for r in client.list(page_size=1000) if r.sha256 in hashes)


def read_uploaded(process: subprocess.Popen[str], count: int) -> list[dict[str, Any]]:
    """Read --json lines until ``count`` files were uploaded."""
    assert process.stdout is not None
    seen: list[dict[str, Any]] = []
    while sum(o["outcome"] == "uploaded" for o in seen) < count:
        line = process.stdout.readline()
        assert line, f"the CLI ended early: {process.wait()} {process.stderr}"
        seen.append(json.loads(line))
    return seen


# Tests that wait for processing come first: the big batches below leave the server's
# task queue long.


def test_wait_reports_files_whose_processing_failed(shared: Server, tmp_path: Path) -> None:
    good = imagegen.jpeg_photo(tmp_path / "in", size=(96, 64))
    broken = imagegen.truncated_jpeg(tmp_path / "in")
    done = cli("upload", str(tmp_path / "in"), "--wait", "--json", url=shared.url)
    assert done.returncode == 1, done.stderr
    files, summary = parse(done.stdout)
    outcome = {Path(f["path"]): f for f in files}
    assert (outcome[good]["status"], outcome[good]["ok"]) == ("ready", True)
    assert len(outcome[good]["record"]["thumbnails"]) == 2
    failed = outcome[broken]
    assert (failed["outcome"], failed["status"], failed["ok"]) == ("uploaded", "failed", False)
    assert failed["error"]["code"] == "processing-failed"
    assert failed["error"]["detail"].startswith("thumbnails: ")
    assert (summary["uploaded"], summary["processing_failed"]) == (2, 1)


def test_ls_get_and_rm(capsys: pytest.CaptureFixture[str], shared: Server, tmp_path: Path) -> None:
    made = make_tree(tmp_path / "in", 3, size=3000)
    url = ("--url", shared.url)
    _, out, _ = run(capsys, "upload", str(tmp_path / "in"), "-r", "--wait", "--json", *url)
    files, _ = parse(out)
    ids = {f["id"]: Path(f["path"]) for f in files}

    status, out, _ = run(capsys, "ls", "--all", "--json", *url)
    assert status == 0
    assert set(ids) <= {json.loads(line)["id"] for line in out.splitlines()}
    _, out, _ = run(capsys, "ls", "--limit", "2", "--status", "ready", *url)
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == 2 and all(row[1] == "ready" for row in rows)

    first, second, third = ids
    target = tmp_path / "copy.bin"
    status, _, err = run(capsys, "get", first, "-o", str(target), *url)
    assert status == 0, err
    assert target.read_bytes() == ids[first].read_bytes()
    (tmp_path / "out").mkdir()
    run(capsys, "get", second, "-o", str(tmp_path / "out"), *url)
    assert (tmp_path / "out" / ids[second].name).read_bytes() == ids[second].read_bytes()
    raw = subprocess.run([*COMMAND, "get", third, *url], capture_output=True, env=environment())
    assert raw.returncode == 0
    assert hashlib.sha256(raw.stdout).hexdigest() == made[ids[third]]

    status, out, _ = run(capsys, "rm", first, second, *url)
    assert status == 0
    assert out.splitlines() == [f"deleted {first}", f"deleted {second}"]
    status, _, err = run(capsys, "get", first, "-o", str(tmp_path / "again.bin"), *url)
    assert status == 1
    assert "404 not-found" in err
    assert not list(tmp_path.glob("*again.bin*")), "no file, nor a temp file, left"
    assert run(capsys, "rm", first, third, *url)[0] == 1
    assert httpx.get(f"{shared.url}/v1/files/{third}").status_code == 404


def test_300_files_in_nested_folders_arrive_intact(shared: Server, tmp_path: Path) -> None:
    made = make_tree(tmp_path / "photos", 300)
    done = cli(
        "upload", str(tmp_path / "photos"), "--recursive", "-j", "8", "--json", url=shared.url
    )
    assert done.returncode == 0, done.stderr
    files, summary = parse(done.stdout)
    assert len(files) == 300
    assert {Path(f["path"]): f["sha256"] for f in files} == made
    assert all(f["outcome"] == "uploaded" and f["ok"] and f["tries"] == 1 for f in files)
    assert summary | {"seconds": 0, "bytes_per_second": 0, "files_per_second": 0} == {
        "type": "summary",
        "files": 300,
        "uploaded": 300,
        "skipped": 0,
        "failed": 0,
        "processing_failed": 0,
        "not_sent": 0,
        "bytes": 300 * 10 * 1024,
        "seconds": 0,
        "bytes_per_second": 0,
        "files_per_second": 0,
        "interrupted": False,
        "ok": True,
    }
    assert on_server(shared.url, set(made.values())) == Counter(made.values())


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_a_batch_cut_short_is_finished_by_skip_existing(
    shared: Server, tmp_path: Path, how: signal.Signals
) -> None:
    made = make_tree(tmp_path / "photos", 60)
    hashes = set(made.values())
    # Two files a request, so that there are many requests to cut short.
    first = start_cli(
        "upload", str(tmp_path / "photos"), "-r", "-j", "2", "--batch-files", "2", "--json",
        url=shared.url,
    )  # fmt: skip
    reported = read_uploaded(first, 12)
    first.send_signal(how)
    rest, errors = first.communicate(timeout=30)
    if how == signal.SIGINT:
        assert first.returncode == 130, errors
        more, summary = parse(rest)
        reported += more
        assert summary["interrupted"] and not summary["ok"]
        assert 0 < summary["not_sent"] < 60
        assert "--skip-existing" in errors
    else:
        assert first.returncode == -signal.SIGKILL
    landed = on_server(shared.url, hashes)
    assert max(landed.values()) == 1
    assert len(landed) < 60, "the batch was cut short"

    again = cli(
        "upload", str(tmp_path / "photos"), "-r", "--skip-existing", "--json", url=shared.url
    )
    assert again.returncode == 0, again.stderr
    files, summary = parse(again.stdout)
    sent_before = {o["sha256"] for o in reported if o["outcome"] == "uploaded"}
    sent_now = {f["sha256"] for f in files if f["outcome"] == "uploaded"}
    assert not sent_before & sent_now, "nothing that arrived was sent again"
    assert sent_before <= {f["sha256"] for f in files if f["outcome"] == "skipped"}
    assert summary["uploaded"] + summary["skipped"] == 60
    assert summary["skipped"] >= len(landed), "whatever had landed was skipped"
    assert on_server(shared.url, hashes) == Counter(hashes), "each file once, none missing"


def test_exit_status_1_and_the_problem_for_a_refused_file(shared: Server, tmp_path: Path) -> None:
    server = shared
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "small.bin").write_bytes(os.urandom(500))
    (tmp_path / "in" / "big.bin").write_bytes(os.urandom(MAX_FILE_SIZE + 1))
    done = cli("upload", str(tmp_path / "in"), "--json", url=server.url)
    assert done.returncode == 1
    files, summary = parse(done.stdout)
    outcome = {Path(f["path"]).name: f for f in files}
    assert outcome["small.bin"]["outcome"] == "uploaded"
    big = outcome["big.bin"]
    assert (big["outcome"], big["ok"], big["tries"]) == ("failed", False, 1)
    assert (big["error"]["status"], big["error"]["code"]) == (413, "file-too-large")
    assert (summary["uploaded"], summary["failed"], summary["ok"]) == (1, 1, False)

    plain = cli("upload", str(tmp_path / "in" / "big.bin"), url=server.url)
    assert plain.returncode == 1
    assert plain.stdout.startswith("failed    ")
    assert "413 file-too-large" in plain.stdout
    assert "0 uploaded, 0 skipped, 1 failed" in plain.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["upload", "no/such/file.jpg"], "no such file or folder"),
        (["upload", ".", "--concurrency", "0"], "not at least 1"),
        (["upload", ".", "--retries", "-1"], "--retries"),
        (["upload", ".", "--frobnicate"], "unrecognized arguments"),
        (["upload", "--json"], "required"),
        (["ls", "--status", "gone"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    status, _, err = run(capsys, *args, "--url", "http://127.0.0.1:9")
    assert status == 2
    assert message in err


def test_unreachable_server_is_one_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "a.bin").write_bytes(b"a")
    status, out, err = run(
        capsys, "upload", str(tmp_path), "--retries", "0", "--url", "http://127.0.0.1:9"
    )
    assert status == 1
    assert "cannot use http://127.0.0.1:9" in err
    assert out == ""


def test_include_exclude_and_recursive_choose_the_files(
    capsys: pytest.CaptureFixture[str], shared: Server, tmp_path: Path
) -> None:
    root = tmp_path / "tree"
    for name in ["a.jpg", "b.txt", "sub/c.jpg", "sub/d.txt", "sub/deep/e.jpg", ".cache/f.jpg"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(os.urandom(32))

    def chosen(*args: str) -> list[str]:
        status, out, err = run(capsys, "upload", str(root), *args, "--dry-run")
        assert status == 0, err
        return [Path(line).relative_to(root).as_posix() for line in out.splitlines()]

    assert chosen() == ["a.jpg", "b.txt"]
    assert chosen("--include", "*.jpg") == ["a.jpg"]
    assert chosen("-r", "--include", "*.jpg", "--exclude", ".cache") == [
        "a.jpg",
        "sub/c.jpg",
        "sub/deep/e.jpg",
    ]
    assert chosen("-r", "--exclude", "*.txt", "--exclude", "sub/deep") == [
        "a.jpg",
        ".cache/f.jpg",
        "sub/c.jpg",
    ]
    assert chosen("-r", "--include", "sub/*.txt") == ["sub/d.txt"]

    status, out, _ = run(
        capsys, "upload", str(root), "-r", "--include", "*.txt", "--json", "--url", shared.url
    )
    assert status == 0
    files, _ = parse(out)
    assert sorted(Path(f["path"]).relative_to(root).as_posix() for f in files) == [
        "b.txt",
        "sub/d.txt",
    ]


def test_a_terminal_gets_the_live_display_and_a_summary_table(
    shared: Server, tmp_path: Path
) -> None:
    make_tree(tmp_path / "in", 12, size=MAX_FILE_SIZE)
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*COMMAND, "upload", str(tmp_path / "in"), "-r", "--url", shared.url],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        env=environment(COLUMNS="120"),
        cwd=ROOT,
    )
    os.close(terminal)
    output = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 30)
        assert ready, "the CLI went quiet"
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the CLI has exited
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(30) == 0
    text = output.decode(errors="replace")
    assert "uploading" in text and "12/12 files" in text
    assert "uploaded" in text and "rate" in text, "the summary table"


def test_a_server_restart_midway_is_ridden_out(shared: Server, tmp_path: Path) -> None:
    server = shared
    made = make_tree(tmp_path / "photos", 40)
    process = start_cli(
        "upload", str(tmp_path / "photos"), "-r", "-j", "4", "--batch-files", "2",
        "--skip-existing", "--retries", "8", "--json", url=server.url,
    )  # fmt: skip
    read_uploaded(process, 8)
    server.kill()
    server.start()
    out, errors = process.communicate(timeout=60)
    assert process.returncode == 0, errors
    _, summary = parse(out)
    assert summary["uploaded"] + summary["skipped"] == 40
    assert "retrying" in errors
    assert on_server(server.url, set(made.values())) == Counter(made.values())
