"""Checks of the outside world a valid config still depends on: folders, hosts, ports.

`load_settings` checks values (a positive batch size, an absolute public URL). What it
cannot see is whether the templates folder exists, whether the SMTP host resolves, or
whether the tracking port is free: `config check` and the daemon's start ask here, so a
setup that cannot work is refused in one line before anything runs, not discovered as a
failure per message (or a uvicorn traceback) later.
"""

from __future__ import annotations

import errno
import socket

from campaigns.config import Settings
from campaigns.errors import ConfigError


def check_folders(settings: Settings) -> None:
    """ConfigError when the templates folder is missing (every render would fail)."""
    folder = settings.path(settings.templates_dir)
    if not folder.is_dir():
        raise ConfigError(f"templates_dir: folder {folder} does not exist (run `campaigns init`, or set templates_dir)")


def smtp_host_warning(settings: Settings) -> str | None:
    """A warning when email goes over SMTP to a host name that does not resolve now."""
    if settings.sending.transport != "smtp":
        return None
    host = settings.smtp.host
    try:
        socket.getaddrinfo(host, settings.smtp.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        return f"[smtp] host {host!r} does not resolve ({reason}): email cannot be sent until it does"
    return None


def tracking_port_problem(settings: Settings) -> str | None:
    """A one-line reason when the tracking endpoints cannot listen on [tracking] host:port."""
    host, port = settings.tracking.host, settings.tracking.port
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"[tracking] host {host!r} does not resolve: {exc.strerror or exc}"
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"[tracking] {host}:{port} is already in use (another daemon or program listens there)"
            return f"[tracking] cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def check_daemon(settings: Settings, *, tracking: bool) -> list[str]:
    """What the daemon checks at start: raises ConfigError for what cannot work, returns warnings."""
    check_folders(settings)
    if tracking:
        problem = tracking_port_problem(settings)
        if problem:
            raise ConfigError(problem)
    warning = smtp_host_warning(settings)
    return [warning] if warning else []
