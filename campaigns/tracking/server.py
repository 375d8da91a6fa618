"""Serve the tracking app with uvicorn until told to stop."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

from campaigns.config import Settings
from campaigns.tracking.app import create_app


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run on settings.tracking.host:port; return once `stop` is set and requests are drained."""
    config = uvicorn.Config(create_app(settings), host=settings.tracking.host, port=settings.tracking.port,
                            log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    # The daemon owns SIGTERM/SIGINT (they set `stop`); uvicorn must not capture them.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task
