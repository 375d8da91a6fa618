"""The channels, built from the settings: the one place that knows both `campaigns.config`
and `scheduler.channels`. The dispatcher and `templates send-test` both send through here,
so a test message travels exactly the path a campaign's messages do."""

from __future__ import annotations

from campaigns.config import Settings
from scheduler.channels import Channel
from scheduler.channels.config import SmsConfig, SmtpConfig
from scheduler.channels.file import FileEmail, FileSms
from scheduler.channels.smtp import SmtpPool


def smtp_config(settings: Settings) -> SmtpConfig:
    """The `[smtp]` section as the SMTP pool's config."""
    s = settings.smtp
    return SmtpConfig(host=s.host, port=s.port, username=s.username, password=s.password.get_secret_value(),
                      security=s.security, pool_size=s.pool_size, timeout_seconds=s.timeout_seconds,
                      helo_name=s.helo_name, ca_file=str(settings.path(s.ca_file)) if s.ca_file else "",
                      server_name=s.server_name)


def sms_config(settings: Settings) -> SmsConfig:
    """The `[sms]` section as an HTTP SMS provider's config."""
    s = settings.sms
    return SmsConfig(base_url=s.base_url, account_sid=s.account_sid, auth_token=s.auth_token.get_secret_value(),
                     from_number=s.from_number, timeout_seconds=s.timeout_seconds)


def email_channel(settings: Settings) -> Channel:
    """The configured email transport: the SMTP pool, or .eml files under the outbox."""
    if settings.sending.transport == "smtp":
        return SmtpPool(smtp_config(settings))
    return FileEmail(settings.path(settings.sending.outbox_dir))


def sms_channel(settings: Settings) -> Channel:
    """The configured SMS transport: a file under the outbox, Twilio, or a JSON webhook."""
    provider = settings.sms.provider
    if provider in ("twilio", "webhook"):  # httpx is imported only by a sender that needs it (a fifth of its start-up)
        from scheduler.channels.sms import TwilioSms, WebhookSms
    if provider == "twilio":
        return TwilioSms(sms_config(settings))
    if provider == "webhook":
        return WebhookSms(sms_config(settings))
    return FileSms(settings.path(settings.sending.outbox_dir))


def make_channels(settings: Settings) -> dict[str, Channel]:
    """{'email': Channel, 'sms': Channel} from the settings."""
    return {"email": email_channel(settings), "sms": sms_channel(settings)}
