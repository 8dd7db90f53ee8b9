"""The media pool starts on the first image and stops after a quiet spell; each call is
held to a wall-clock limit, a CPU budget and a memory cap."""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import threading
import time
from typing import Any

import httpx
import psutil
import pytest
from PIL import Image

from tests.conftest import ServerFactory
from tests.helpers import wait_for
from uploads_api.media.worker import CpuBudgetExceeded, limited
from uploads_api.tasks.pool import ImagePool, MediaTimeout


def test_the_pool_starts_on_first_use_and_stops_when_idle() -> None:
    async def main() -> None:
        pool = ImagePool(workers=1, max_pixels=1000, idle_seconds=0.3)
        try:
            first = await pool.run(os.getpid)
            assert first != os.getpid()
            # Work keeps it alive: each run restarts the quiet spell.
            for _ in range(3):
                await asyncio.sleep(0.15)
                assert await pool.run(os.getpid) == first
            await asyncio.sleep(0.6)
            # Stopped when idle: its worker process is gone.
            assert not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie"
            second = await pool.run(os.getpid)
            assert second != first
        finally:
            pool.shutdown()

    asyncio.run(main())


def test_the_pool_starts_off_the_event_loop_once_for_all_callers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Spawning worker processes blocks; it must not hold the event loop's thread.
    started_in: list[threading.Thread] = []
    pool = ImagePool(workers=2, max_pixels=1000, idle_seconds=30)
    new_executor = pool._new_executor

    def recording() -> Any:
        started_in.append(threading.current_thread())
        return new_executor()

    monkeypatch.setattr(pool, "_new_executor", recording)

    async def main() -> None:
        try:
            pids = await asyncio.gather(*(pool.run(os.getpid) for _ in range(6)))
            assert os.getpid() not in pids
        finally:
            pool.shutdown()

    asyncio.run(main())
    assert len(started_in) == 1, "concurrent first callers started more than one pool"
    assert started_in[0] is not threading.main_thread()


def _children(pid: int) -> list[psutil.Process]:
    children: list[psutil.Process] = psutil.Process(pid).children()
    return children


def _decoders(pid: int) -> list[psutil.Process]:
    """The pool's worker processes: forked by multiprocessing's forkserver, which (like its
    resource tracker) is a direct child of the server and stays once started."""
    return [p for helper in _children(pid) for p in helper.children()]


def test_a_server_runs_decoder_processes_only_while_it_has_images(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(image_pool_idle_seconds=4, image_workers=1)
    assert server.process is not None
    pid = server.process.pid
    with httpx.Client(base_url=server.url, timeout=30) as client:
        text = client.put("/v1/files/notes.txt", content=b"plain words\n" * 100)
        assert text.status_code == 201, text.text
        # A text file needs no processing: ready at once, and no decoder was started.
        assert text.json()["status"] == "ready"
        assert _children(pid) == []

        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), "teal").save(buffer, "PNG")
        image = client.put("/v1/files/tile.png", content=buffer.getvalue())
        assert image.status_code == 201, image.text
        done = client.get(f"/v1/files/{image.json()['id']}", params={"wait": 30}).json()
        assert done["status"] == "ready", done
        assert _decoders(pid), "no decoder process ran the image"

        deadline = time.monotonic() + 15
        while _decoders(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _decoders(pid) == []


# Guards on each call: wall clock, CPU time, memory ---------------------------------------


def _gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def _allocate(megabytes: int) -> int:
    return len(bytearray(megabytes * 1024 * 1024))


def _spin_threads(seconds: float) -> None:
    """Burn CPU on two threads at once, this one among them (the kernel's signal is
    handled on it, between bytecodes): CPU time grows faster than the wall clock."""

    def spin() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass

    helper = threading.Thread(target=spin, daemon=True)
    helper.start()
    spin()


def test_a_call_past_the_time_limit_fails_and_the_pool_goes_on() -> None:
    async def main() -> None:
        pool = ImagePool(workers=1, max_pixels=1000, timeout=1.0)
        try:
            first = await pool.run(os.getpid)
            began = time.monotonic()
            with pytest.raises(MediaTimeout, match="longer than 1 s"):
                await pool.run(time.sleep, 30)
            assert time.monotonic() - began < 10
            wait_for(lambda: _gone(first), what="the overrunning worker to be killed")
            assert await pool.run(os.getpid) != first, "the overrunning worker was replaced"
        finally:
            pool.shutdown()

    asyncio.run(main())


def test_a_worker_cannot_map_more_than_its_memory_limit() -> None:
    async def main() -> None:
        pool = ImagePool(workers=1, max_pixels=1000, memory_limit=512 * 1024 * 1024)
        try:
            assert await pool.run(_allocate, 16) == 16 * 1024 * 1024
            with pytest.raises(MemoryError):
                await pool.run(_allocate, 2048)
            assert await pool.run(_allocate, 16) == 16 * 1024 * 1024, "the worker went on"
        finally:
            pool.shutdown()

    asyncio.run(main())


def _spin_limited(cpu_seconds: float) -> None:
    """In a process of its own: exit 42 when the budget ends the call, 0 if it never did."""
    try:
        limited(cpu_seconds, _spin_threads, 30.0)
    except CpuBudgetExceeded:
        os._exit(42)  # the spinning threads end with the process
    os._exit(0)


def test_a_call_over_its_cpu_budget_is_stopped() -> None:
    # Two spinning threads use CPU faster than the wall clock runs: the budget, not a
    # wall clock, ends the call (the kernel's SIGXCPU, raised as CpuBudgetExceeded).
    process = multiprocessing.get_context("forkserver").Process(target=_spin_limited, args=(1,))
    process.start()
    process.join(60)
    assert process.exitcode == 42


def _over_budget() -> None:
    raise CpuBudgetExceeded("the call used up its CPU-time budget")


def test_a_call_over_its_cpu_budget_fails_like_a_timeout() -> None:
    async def main() -> None:
        pool = ImagePool(workers=1, max_pixels=1000, timeout=5.0)
        try:
            with pytest.raises(MediaTimeout, match="more than 5 s of CPU"):
                await pool.run(_over_budget)
            assert await pool.run(os.getpid) > 0, "the same pool goes on"
        finally:
            pool.shutdown()

    asyncio.run(main())


def test_the_time_limit_counts_a_call_s_own_run_not_its_wait() -> None:
    # One worker, four calls of 0.6 s under a 1.5 s limit: queued, they take 2.4 s in all,
    # and each stays within its limit.
    async def main() -> None:
        pool = ImagePool(workers=1, max_pixels=1000, timeout=1.5)
        try:
            await pool.run(os.getpid)  # started and warm
            await asyncio.gather(*(pool.run(time.sleep, 0.6) for _ in range(4)))
        finally:
            pool.shutdown()

    asyncio.run(main())
