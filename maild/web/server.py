"""uvicorn serving the web channel on a thread of `maild run`'s intake process, beside the
SMTP listener's: like it, the pages only store and read, and the worker process does the rest.

uvicorn installs no signal handlers off the main thread, so SIGTERM stays the intake's: it
stops the listener, the pollers and this server the same way. `start()` raises when the address
cannot be bound, so a daemon that cannot serve its pages does not start.
"""

from __future__ import annotations

import threading
import time

import uvicorn
from starlette.types import ASGIApp

from maild.config import WebSettings


class WebServer:
    def __init__(self, settings: WebSettings, app: ASGIApp) -> None:
        self.settings = settings
        self.server = uvicorn.Server(uvicorn.Config(
            app, host=settings.host, port=settings.port, log_level="warning", log_config=None,
            access_log=False, lifespan="off", server_header=False, proxy_headers=False,
            timeout_keep_alive=5, limit_concurrency=200))
        self.thread = threading.Thread(target=self.server.run, name="web", daemon=True)

    def start(self, timeout: float = 15.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web channel cannot listen on {self.settings.listen}")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
