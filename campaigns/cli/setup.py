"""`campaigns init` and `campaigns config`: create the database, show the settings."""

from __future__ import annotations

import json
from typing import Any

import typer
from pydantic import SecretStr

from campaigns import preflight
from campaigns.cli.common import JsonOpt, console, emit_record, get_app, ok, print_json, warn
from campaigns.config import Settings, safe_url
from campaigns.errors import ConfigError
from campaigns.messages import dkim_signing
from campaigns.store import schema
from campaigns.store.db import check_reachable

config_app = typer.Typer(help="Show and check the configuration.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Attach `init` and `config` to the root app."""
    app.command("init")(init)
    app.add_typer(config_app, name="config")


def init(ctx: typer.Context) -> None:
    """Create the database (or upgrade it to this version) and the secret key file."""
    a = get_app(ctx)
    created = a.settings.ensure_secret_key_file()
    if created:
        ok(f"created secret key file {created} (keep it private; back it up)")
    check_reachable(a.engine)
    before, after = schema.upgrade(a.engine)
    where = safe_url(a.settings.database_url)
    if before is None:
        ok(f"created database {where} (schema {after})")
    elif before != after:
        ok(f"upgraded database {where} from {before} to {after}")
    else:
        ok(f"database {where} is up to date (schema {after})")
    for folder in (a.settings.path(a.settings.templates_dir), a.settings.path(a.settings.sending.outbox_dir)):
        folder.mkdir(parents=True, exist_ok=True)


def _masked(settings: Settings) -> dict[str, Any]:
    data = json.loads(settings.model_dump_json(exclude={"base_dir"}))
    for section, key in [(None, "secret_key"), (None, "hash_key"), ("smtp", "password"), ("sms", "auth_token")]:
        holder = data if section is None else data[section]
        value = settings if section is None else getattr(settings, section)
        secret: SecretStr = getattr(value, key)
        holder[key] = "********" if secret.get_secret_value() else ""
    data["previous_secret_keys"] = ["********" for _ in settings.previous_secret_keys]
    return _mask_urls(data)


def _mask_urls(value: Any) -> Any:
    """Every URL in the settings (database, [sms] base_url, ...) with its credentials masked."""
    if isinstance(value, dict):
        return {k: _mask_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_urls(v) for v in value]
    return safe_url(value) if isinstance(value, str) and "://" in value else value


@config_app.command("show")
def config_show(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Print the effective settings (file + environment), secrets masked."""
    settings = get_app(ctx).settings
    data = _masked(settings)
    if as_json:
        print_json(data)
        return
    console.print(f"[bold]config:[/bold] {settings.source}")
    flat = {k: v for k, v in data.items() if not isinstance(v, dict)}
    emit_record(flat)
    for section, values in data.items():
        if isinstance(values, dict):
            emit_record(values, title=f"[{section}]")


@config_app.command("check")
def config_check(ctx: typer.Context) -> None:
    """Validate the settings, the secret key, the database, the folders, the SMTP host and the tracking port."""
    a = get_app(ctx)
    a.settings.signing_key  # noqa: B018 - raises a clear error when there is no key
    for problem in sending_problems(a.settings):
        raise ConfigError(problem)
    signer = dkim_signing.signer(a.settings)
    a.ready_engine()
    preflight.check_folders(a.settings)
    # A busy port is only a warning here: the daemon this config belongs to may be the one listening.
    for warning in (preflight.smtp_host_warning(a.settings), preflight.tracking_port_problem(a.settings)):
        if warning:
            warn(warning)
    ok(f"config {a.settings.source} is valid; database {safe_url(a.settings.database_url)} is ready")
    from campaigns.tracking.guard import startup_warnings

    for line in startup_warnings(a.settings, serving=False, sending=False):  # sending_problems refused the rest
        warn(line)
    if signer is not None:
        ed = f" and s={signer.ed25519_selector.decode()} (ed25519-sha256)" if signer.ed25519_key else ""
        ok(f"DKIM: email is signed as d={signer.domain.decode()} s={signer.selector.decode()} (rsa-sha256){ed} "
           "(`campaigns config dkim` prints the DNS records)")


def sending_problems(settings: Settings) -> list[str]:
    """What real sending needs and the config lacks, each naming its key."""
    from campaigns.tracking.guard import missing_postal_address

    problems = []
    postal = missing_postal_address(settings)
    if postal:
        problems.append(postal)
    ca_file = settings.smtp.ca_file
    if ca_file and not settings.path(ca_file).is_file():
        problems.append(f"[smtp] ca_file: {settings.path(ca_file)} does not exist")
    return problems


@config_app.command("dkim")
def config_dkim(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """Print the DNS TXT records that publish the DKIM keys set in [smtp] (RSA, and Ed25519 if set)."""
    signer = dkim_signing.signer(get_app(ctx).settings)
    if signer is None:
        raise ConfigError("DKIM is off: set [smtp] dkim_domain, dkim_selector and dkim_private_key_file")
    records = [{"name": name, "type": "TXT", "value": value, "strings": txt_strings(value)} for name, value in signer.records]
    if as_json:
        print_json({**records[0], **({"ed25519": records[1]} if len(records) > 1 else {})})
        return
    # Printed unfolded, so each line copies out of the terminal whole. A TXT record's
    # strings hold at most 255 characters each (RFC 1035); DNS joins them back into one value.
    console.print(f"Publish {'these TXT records' if len(records) > 1 else 'this TXT record'} in DNS:", highlight=False)
    for record in records:
        console.print(f"  name:  {record['name']}", soft_wrap=True, highlight=False, markup=False)
        console.print(f"  in a zone file, as strings of <= {TXT_STRING_MAX} characters (DNS joins them):", highlight=False)
        console.print(f"    {record['name']}. IN TXT ( " + " ".join(f'"{part}"' for part in record["strings"]) + " )",
                      soft_wrap=True, highlight=False, markup=False)
        console.print(f"  value: {record['value']}", soft_wrap=True, highlight=False, markup=False)


TXT_STRING_MAX = 255


def txt_strings(value: str, limit: int = TXT_STRING_MAX) -> list[str]:
    """A TXT value cut into the <= 255-character strings a zone file needs."""
    return [value[i:i + limit] for i in range(0, len(value), limit)] or [""]
