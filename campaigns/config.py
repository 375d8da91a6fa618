"""config.toml + environment overrides -> one typed, validated Settings object.

Lookup order for the file: `--config`, then `$CAMPAIGNS_CONFIG`, then `./config.toml`
(built-in defaults when there is none). Every key can be overridden from the
environment: a top-level `key` by `CAMPAIGNS_KEY`, `[section] key` by
`CAMPAIGNS_SECTION_KEY`. Relative paths are read relative to the config file's folder.
Secrets are `SecretStr`: they never show in `repr`, logs or output.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)
from sqlalchemy.engine import make_url

from campaigns.errors import ConfigError, InputError
from campaigns.timespec import (
    check_timezone,
    parse_cap,
    parse_clock_range,
    parse_duration,
)

ENV_PREFIX = "CAMPAIGNS_"
# Environment variables with our prefix that are not config keys.
_NOT_KEYS = {"CONFIG", "DEBUG"}
_NOT_KEY_PREFIXES = ("TEST_", "BENCH_", "RELIABILITY_")


def _checked(parse: Any, value: str) -> str:
    """Run one of our parsers as a pydantic check (pydantic reports ValueError only)."""
    try:
        parse(value)
    except InputError as exc:
        raise ValueError(str(exc).split(": ", 1)[-1]) from None
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatabaseSettings(_Section):
    url: str = "sqlite:///campaigns.db"
    echo: bool = False

    def __repr__(self) -> str:  # the URL may carry a password
        return f"DatabaseSettings(url={safe_url(self.url)!r}, echo={self.echo})"

    __str__ = __repr__


class SendingSettings(_Section):
    transport: Literal["file", "smtp"] = "file"
    outbox_dir: str = "outbox"
    from_address: str = "news@example.com"
    from_name: str = "Example Shop"
    reply_to: str = ""
    return_path_domain: str = ""
    # Sizes must be positive: batch_size = 0 never sends, and says nothing.
    batch_size: int = Field(default=200, gt=0)
    concurrency: int = Field(default=16, gt=0)
    lease_seconds: int = Field(default=300, gt=0)
    max_attempts: int = Field(default=6, gt=0)
    retry_base_seconds: float = 60.0
    max_retry_age_hours: float = 48.0
    resend_unknown: bool = False
    auto_pause_bounce_rate: float = 0.05
    auto_pause_failure_rate: float = 0.25
    auto_pause_min_sample: int = 200
    auto_pause_window_minutes: int = Field(default=60, gt=0)  # rates judge outcomes this recent (and since a resume)
    cost_per_email: float = 0.0
    cost_per_sms: float = 0.0
    poll_seconds: float = Field(default=1.0, gt=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0)  # each daemon's and worker's beat (scheduler.liveness)
    postal_address: str = ""  # the sender's postal address, in every marketing email's footer
    # Throttles enforced at hand-over, shared by every worker: all messages, and per recipient domain.
    max_per_minute: int | None = Field(default=None, gt=0)
    domain_limits: dict[str, int] = {}


class SmtpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 1025
    username: str = ""
    password: SecretStr = SecretStr("")
    security: Literal["none", "starttls", "tls"] = "none"
    pool_size: int = Field(default=8, gt=0)
    timeout_seconds: float = Field(default=30.0, gt=0)
    helo_name: str = ""  # the name we give in EHLO; empty: this machine's fully qualified name
    ca_file: str = ""  # PEM CA bundle to trust (a private CA) instead of the system's
    server_name: str = ""  # the name the server's certificate must carry; empty: host
    dkim_domain: str = ""
    dkim_selector: str = ""
    dkim_private_key_file: str = ""
    dkim_ed25519_key_file: str = ""  # optional second signature (RFC 8463), selector `<dkim_selector>-ed25519`
    # signing processes beside the sender (0, from configs of the threads' time, also means one;
    # `dkim_threads`, its name while signing ran on threads, still reads)
    dkim_processes: int = Field(default=1, ge=0, validation_alias=AliasChoices("dkim_processes", "dkim_threads"))


class SmsSettings(_Section):
    provider: Literal["file", "twilio", "webhook"] = "file"
    base_url: str = ""
    account_sid: str = ""
    auth_token: SecretStr = SecretStr("")
    from_number: str = ""
    opt_out_text: str = "Reply STOP to opt out"
    help_text: str = "Example Shop: reply STOP to opt out. Msg&data rates may apply."
    stop_confirmation_text: str = "You are unsubscribed and will get no more messages. Reply START to resubscribe."
    start_confirmation_text: str = "You are subscribed again. Reply STOP to opt out."
    timeout_seconds: float = 15.0
    max_segments: int = Field(default=6, ge=1, le=50)  # a longer render fails its delivery instead of billing 787 parts


class TrackingSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, gt=0, le=65535)
    public_url: str = "http://127.0.0.1:8080"
    machine_open_seconds: float = 2.0
    utm_source_email: str = "newsletter"  # utm_source and utm_medium added to links, per channel
    utm_medium_email: str = "email"
    utm_source_sms: str = "sms"
    utm_medium_sms: str = "sms"
    # Authenticates webhooks (bounce, purchase, inbound SMS from the webhook provider). Its own
    # secret, not the link-signing key: a shop platform holding it cannot forge links, and
    # rotating it leaves the links in mail already sent working.
    webhook_secret: SecretStr = SecretStr("")
    previous_webhook_secrets: list[SecretStr] = []
    max_body_bytes: int = Field(default=1_000_000, ge=1024)

    @property
    def webhook_keys(self) -> list[bytes]:
        """The current webhook secret first, then previous ones; empty when webhooks are off."""
        keys = [self.webhook_secret, *self.previous_webhook_secrets]
        return [k.get_secret_value().encode() for k in keys if k.get_secret_value()]

    @field_validator("public_url")
    @classmethod
    def _absolute_http(cls, v: str) -> str:
        # Every link and List-Unsubscribe header is built on it: a relative or odd URL breaks them all.
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http:// or https:// URL, e.g. https://t.example.com")
        return v


class PolicySettings(_Section):
    quiet_hours_email: str = ""
    quiet_hours_sms: str = "21:00-08:00"
    frequency_cap: str = "3/7d"
    grace_minutes: int = 60
    attribution_window: str = "7d"

    @field_validator("quiet_hours_email", "quiet_hours_sms")
    @classmethod
    def _clock_range(cls, v: str) -> str:
        return _checked(parse_clock_range, v)

    @field_validator("frequency_cap")
    @classmethod
    def _cap(cls, v: str) -> str:
        return _checked(parse_cap, v)

    @field_validator("attribution_window")
    @classmethod
    def _window(cls, v: str) -> str:
        return _checked(parse_duration, v)


class ConsentSettings(_Section):
    double_opt_in: bool = False
    token_ttl_hours: float = 72.0
    sms_request_text: str = "Example Shop: reply YES to get our offers by text. Reply STOP to opt out."


class LifecycleSettings(_Section):
    new_days: int = 30
    at_risk_multiplier: float = 2.0
    at_risk_days: int = 90
    lapsed_days: int = 365
    min_purchases_for_interval: int = 3


class LoyaltySettings(_Section):
    frequency_cutoff: float = 0.0  # 0 = the median over the period's buyers
    monetary_cutoff: float = 0.0  # 0 = the median over the period's buyers
    period: str = "365d"  # orders and spend are counted over this period before the date

    @field_validator("period")
    @classmethod
    def _period(cls, v: str) -> str:
        _checked(parse_duration, v)
        if parse_duration(v).total_seconds() <= 0:
            raise ValueError(f"'{v}' must be longer than zero")
        return v


class ValueSettings(_Section):
    """Customer lifetime value (docs/segments.md, "CLV")."""

    margin: float = Field(default=0.3, gt=0, le=1)  # profit per unit of revenue
    discount_rate: float = Field(default=0.10, ge=0)  # a year
    horizon: str = "156w"  # how far ahead future purchases count (three years)

    @field_validator("horizon")
    @classmethod
    def _horizon(cls, v: str) -> str:
        return _checked(parse_duration, v)


class Settings(BaseModel):
    """Everything configurable, validated. `base_dir` anchors relative paths."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    secret_key: SecretStr = SecretStr("")
    secret_key_file: str = "secret.key"
    previous_secret_keys: list[SecretStr] = []
    hash_key: SecretStr = SecretStr("")
    timezone: str = "UTC"
    default_region: str = "US"
    currency: str = "USD"
    templates_dir: str = "templates"
    database: DatabaseSettings = DatabaseSettings()
    sending: SendingSettings = SendingSettings()
    smtp: SmtpSettings = SmtpSettings()
    sms: SmsSettings = SmsSettings()
    tracking: TrackingSettings = TrackingSettings()
    policy: PolicySettings = PolicySettings()
    consent: ConsentSettings = ConsentSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    loyalty: LoyaltySettings = LoyaltySettings()
    value: ValueSettings = ValueSettings()
    base_dir: Path = Path(".")
    source: str = "built-in defaults"
    # The current HMAC key, read once: about nine signatures per message each asked for it
    # (a Path and a stat() apiece). Dropped on any assignment and by reload_keys().
    _key: bytes | None = PrivateAttr(default=None)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if not name.startswith("_"):
            self._key = None  # secret_key, secret_key_file or base_dir may have changed

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _checked(check_timezone, v)

    # -- derived values -------------------------------------------------
    def path(self, value: str) -> Path:
        """A configured path, anchored at the config file's folder when relative."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path anchored at `base_dir`."""
        url = make_url(self.database.url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            url = url.set(database=str(self.path(url.database)))
        return url.render_as_string(hide_password=False)

    @property
    def signing_keys(self) -> list[bytes]:
        """Current key first, then previous ones (accepted when verifying, never for signing)."""
        return [self._current_key()] + [
            k.get_secret_value().encode() for k in self.previous_secret_keys if k.get_secret_value()
        ]

    @property
    def signing_key(self) -> bytes:
        """The key new signatures are made with."""
        return self._current_key()

    @property
    def hashing_key(self) -> bytes:
        """Key for suppression hashes; pin `hash_key` before rotating `secret_key`."""
        pinned = self.hash_key.get_secret_value()
        return _long_enough(pinned.encode(), "hash_key") if pinned else self._current_key()

    def reload_keys(self) -> None:
        """Read the secret key (file) again on next use: after a rotation, in a long-lived process."""
        self._key = None

    def _current_key(self) -> bytes:
        # Read from pydantic's private dict: `self._key` goes through BaseModel.__getattr__,
        # about 6 microseconds, and a message asks about nine times.
        private = self.__pydantic_private__
        key = private.get("_key") if private is not None else None
        if key is None:
            value = self.secret_key.get_secret_value()
            key = self._key = (_long_enough(value.encode(), "secret_key (CAMPAIGNS_SECRET_KEY)") if value
                               else _read_key_file(self.path(self.secret_key_file)))
        return key

    def ensure_secret_key_file(self) -> Path | None:
        """Create the secret key file (0600) when no key is configured; return it if created."""
        if self.secret_key.get_secret_value():
            return None
        key_file = self.path(self.secret_key_file)
        if key_file.exists():
            return None
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48) + "\n")
        return key_file


def _no_secret_key(key_file: Path) -> ConfigError:
    return ConfigError(f"no secret key: set CAMPAIGNS_SECRET_KEY, or run `campaigns init` to create {key_file}")


def _read_key_file(key_file: Path) -> bytes:
    try:
        text = key_file.read_text().strip()
    except FileNotFoundError:
        raise _no_secret_key(key_file) from None
    if not text:
        raise ConfigError(f"secret key file {key_file} is empty")
    return _long_enough(text.encode(), f"secret key file {key_file}")


MIN_SECRET_KEY_BYTES = 32  # the key signs links and hashes addresses: it must not be guessable


def _long_enough(key: bytes, where: str) -> bytes:
    if len(key) < MIN_SECRET_KEY_BYTES:
        raise ConfigError(f"{where} is {len(key)} bytes; a secret key must be at least {MIN_SECRET_KEY_BYTES} bytes "
                          "(e.g. `openssl rand -base64 48`)")
    return key


# Query parameters that carry credentials in the URLs people configure (database drivers,
# SMS gateways, webhooks): their values are masked wherever a URL is shown.
_CREDENTIAL_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|sig|credential|session|jwt|bearer|hmac|^code$",
                               re.IGNORECASE)  # ?code= is an Azure Functions key


def safe_url(url: str) -> str:
    """A URL for output and logs: userinfo and credential-like query values masked."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unparsable URL is shown as its scheme only
        return url.split(":", 1)[0] + ":***"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "&".join(
        f"{k}=***" if _CREDENTIAL_PARAM.search(unquote(k)) else (f"{k}={v}" if sep else k)
        for k, sep, v in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    if netloc == parts.netloc and query == parts.query:
        return url
    head = f"{parts.scheme}://{netloc}" if url[len(parts.scheme) + 1:].startswith("//") else f"{parts.scheme}:"
    return head + parts.path + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def find_config_file(
    explicit: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None
) -> Path | None:
    """`--config`, then $CAMPAIGNS_CONFIG, then ./config.toml; None when there is none."""
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        return p
    env = (os.environ if environ is None else environ).get(ENV_PREFIX + "CONFIG")
    if env:
        p = Path(env)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p} (from CAMPAIGNS_CONFIG)")
        return p
    p = Path("config.toml")
    return p if p.is_file() else None


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """Map CAMPAIGNS_* variables onto the settings tree; unknown names are errors."""
    sections = {
        name for name, f in Settings.model_fields.items()
        if isinstance(f.annotation, type) and issubclass(f.annotation, _Section)
    }
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):].lower()
        upper = key.upper()
        if upper in _NOT_KEYS or upper.startswith(_NOT_KEY_PREFIXES):
            continue
        section = next((s for s in sections if key.startswith(s + "_")), None)
        if section is not None:
            sub = key[len(section) + 1:]
            model = Settings.model_fields[section].annotation
            if sub not in model.model_fields:  # type: ignore[union-attr]
                raise ConfigError(f"{name}: unknown setting [{section}] {sub}")
            out.setdefault(section, {})[sub] = _env_list(value, name) if sub.startswith("previous_") else value
        elif key in Settings.model_fields and key not in sections | {"base_dir", "source"}:
            if key == "previous_secret_keys":
                out[key] = _env_list(value, name)
            else:
                out[key] = value
        else:
            raise ConfigError(f"{name}: unknown setting '{key}'")
    return out


def _env_list(value: str, name: str = "CAMPAIGNS_PREVIOUS_SECRET_KEYS") -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            return list(json.loads(value))
        except ValueError:
            raise ConfigError(f"{name}: not a JSON list") from None
    return [v.strip() for v in value.split(",") if v.strip()]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _describe(error: dict[str, Any], source: str, from_env: dict[str, Any]) -> str:
    loc = [str(p) for p in error["loc"]]
    if len(loc) >= 2 and loc[0] in from_env and isinstance(from_env[loc[0]], dict) and loc[1] in from_env[loc[0]]:
        where = f"{ENV_PREFIX}{loc[0].upper()}_{loc[1].upper()}"
    elif loc and loc[0] in from_env and not isinstance(from_env[loc[0]], dict):
        where = f"{ENV_PREFIX}{loc[0].upper()}"
    else:
        where = f"{source}: " + (f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else loc[0] if loc else "?")
    msg = error["msg"]
    if error["type"] == "extra_forbidden":
        msg = "unknown setting"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    value = error.get("input")
    hidden = error["type"] == "extra_forbidden" or isinstance(value, dict) or any(w in where.lower() for w in ("secret", "password", "token"))
    shown = "" if hidden else f" (got {value!r})"
    return f"{where}: {msg}{shown}"


def load_settings(
    config_path: str | os.PathLike[str] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Read, merge and validate the configuration; any problem is one ConfigError line."""
    environ = dict(os.environ if environ is None else environ)
    path = find_config_file(config_path, environ)
    data: dict[str, Any] = {}
    source = "built-in defaults"
    base_dir = Path.cwd()
    if path is not None:
        source = str(path)
        base_dir = path.resolve().parent
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        for forbidden in ("base_dir", "source"):
            if forbidden in data:
                raise ConfigError(f"{path}: unknown setting '{forbidden}'")
    from_env = _env_overrides(environ)
    merged = _merge(data, from_env)
    try:
        return Settings(**merged, base_dir=base_dir, source=source)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(_describe(dict(first), source, from_env)) from None
