"""nginx as an upload baseline: its own config, port, temp dirs and pid file, as the
current user, started and stopped by the benchmark.

- ``POST /upload``: ``client_body_in_file_only`` stores the whole request body (for a
  multipart body, boundaries and all) in a file, and nginx hands the file's path to a
  tiny upstream (a second server block on a unix socket) that answers 201. That is how
  nginx fronts an application that takes uploads from disk.
- ``PUT /dav/<name>``: WebDAV ``dav_methods PUT`` writes the body to a temp file and
  renames it into place.
"""

from __future__ import annotations

import getpass
import grp
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

CONFIG = """\
{user}
worker_processes 1;
daemon off;
master_process on;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    client_max_body_size 0;
    client_body_buffer_size 1m;
    server {{
        listen 127.0.0.1:{port};
        location = /healthz {{ return 200 "ok\\n"; }}
        location = /upload {{
            client_body_in_file_only on;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Body-File $request_body_file;
            proxy_pass http://unix:{root}/upstream.sock;
        }}
        location /dav/ {{
            root {root}/www;
            dav_methods PUT;
            create_full_put_path on;
            client_body_temp_path {root}/www/.tmp;
        }}
    }}
    server {{
        listen unix:{root}/upstream.sock;
        location / {{ return 201 "$http_x_body_file\\n"; }}
    }}
}}
"""


def available() -> str | None:
    """``None`` if nginx can run here, else what to install."""
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        return "nginx is not installed (apt-get install nginx)"
    return None


class Nginx:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15) -> None:
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi", "www/dav", "www/.tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        # As root, nginx would hand its workers to "nobody"; keep them as the current user.
        user = ""
        if os.geteuid() == 0:
            user = f"user {getpass.getuser()} {grp.getgrgid(os.getegid()).gr_name};"
        conf = self.root / "nginx.conf"
        conf.write_text(CONFIG.format(root=self.root, port=self.port, user=user))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        log = (self.root / "stderr.log").open("ab")
        with log:
            self.process = subprocess.Popen(
                [binary, "-c", str(conf), "-p", str(self.root), "-e", str(self.root / "error.log")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.root / 'error.log').read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def dav_path(self, name: str) -> Path:
        return self.root / "www" / "dav" / name
