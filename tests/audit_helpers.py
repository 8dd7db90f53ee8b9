"""Helpers for the audit log's tests: its rows read through ``GET /v1/audit`` as an admin,
page by page or once they have been written, and the whole table read from the database."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import Server
from tests.helpers import bearer, wait_for

Row = dict[str, Any]


@dataclass
class AuditReader:
    server: Server
    admin: str

    def client(self, key: str | None, **options: Any) -> httpx.Client:
        headers = bearer(key) if key else {}
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=30, **options)

    def rows(self, **params: Any) -> list[Row]:
        """Every row the filters select, through the API as the admin, page by page."""
        found: list[Row] = []
        cursor = None
        with self.client(self.admin) as client:
            while True:
                page = client.get(
                    "/v1/audit", params={**params, "cursor": cursor} if cursor else params
                )
                assert page.status_code == 200, page.text
                found += page.json()["items"]
                cursor = page.json()["next_cursor"]
                if cursor is None:
                    return found

    def wait_rows(self, check: Callable[[list[Row]], bool], **params: Any) -> list[Row]:
        """The rows once ``check`` holds: they reach the database within about 0.5 s."""
        rows: list[Row] = []

        def ready() -> bool:
            nonlocal rows
            rows = self.rows(**params)
            return check(rows)

        wait_for(ready, timeout=10, what=f"audit rows for {params}", interval=0.2)
        return rows

    def table(self) -> str:
        """Every value of every audit row, as text."""
        with sqlite3.connect(self.server.data_dir / "uploads.db") as db:
            return repr(list(db.execute("select * from audit_log")))
