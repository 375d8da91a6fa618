"""The channels' own settings: small frozen dataclasses, so a transport needs nothing from
`campaigns`. The caller builds them from its settings (scheduler/transport.py); field names
are those of the `[smtp]` and `[sms]` config sections."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how the SMTP pool connects."""

    host: str = "127.0.0.1"
    port: int = 1025
    username: str = ""
    password: str = field(default="", repr=False)  # never in a log line or a traceback's locals repr
    security: Literal["none", "starttls", "tls"] = "none"
    pool_size: int = 8
    timeout_seconds: float = 30.0
    helo_name: str = ""  # the name given in EHLO; empty: this machine's fully qualified name
    ca_file: str = ""  # an absolute path to a PEM CA bundle to trust instead of the system's
    server_name: str = ""  # the name the certificate must carry; empty: host


@dataclass(frozen=True)
class SmsConfig:
    """An HTTP SMS provider's address, account and sender."""

    base_url: str = ""
    account_sid: str = ""
    auth_token: str = field(default="", repr=False)
    from_number: str = ""
    timeout_seconds: float = 15.0
