"""Run an ASGI app with uvicorn on a loopback port in a background thread."""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn

from tests.support.smtp import free_port


class ServedApp:
    """`with ServedApp(asgi) as base_url: ...` — a real HTTP server for the block's duration."""

    def __init__(self, asgi, port: int | None = None) -> None:  # type: ignore[no-untyped-def]
        self.port = port or free_port()
        config = uvicorn.Config(asgi, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code < 500:
                    return self.url
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
