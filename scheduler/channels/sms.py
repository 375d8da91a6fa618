"""SMS providers over HTTP: a Twilio-compatible REST API and a generic JSON webhook.

The base URL is configurable, so tests point it at a local server that speaks the API.
The delivery id travels as the idempotency key. A request that may have reached the
provider but got no answer is `unknown`; one that never left is `transient`.
"""

from __future__ import annotations

import httpx

from scheduler.channels import STOPPED, OutgoingEmail, OutgoingSms, SendResult, withdrawn
from scheduler.channels.config import SmsConfig

# Twilio error codes that mean "this number can never get this message".
_HARD = {21211, 21214, 21217, 21401, 21407, 21408, 21610, 21612, 21614}


def _classify_http(status: int, body: dict | None) -> SendResult:
    code = (body or {}).get("code")
    detail = f"HTTP {status}" + (f" code {code}: {(body or {}).get('message', '')}" if code else "")
    if status == 429 or status >= 500:
        return SendResult("transient", None, detail)
    if status in (401, 403):  # our credentials or account, not this number: pause, blame no one
        return SendResult("policy", None, detail)
    if code in _HARD:
        return SendResult("hard_bounce", None, detail)
    return SendResult("failed", None, detail)


class _HttpProvider:
    def __init__(self, config: SmsConfig) -> None:
        self._config = config
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._config.timeout_seconds)
        return self._client

    async def _post(self, url: str, **kwargs: object) -> SendResult | httpx.Response:
        try:
            return await self.client().post(url, **kwargs)  # type: ignore[arg-type]
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return SendResult("transient", None, f"connect: {exc}"[:300])
        except httpx.HTTPError as exc:  # sent, but no answer: it may have gone out
            return SendResult("unknown", None, f"no answer: {exc}"[:300])

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class TwilioSms(_HttpProvider):
    """POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json (form: To, From, Body)."""

    async def send(self, message: OutgoingEmail | OutgoingSms) -> SendResult:
        assert isinstance(message, OutgoingSms)
        if withdrawn(message):
            return STOPPED
        s = self._config
        base = (s.base_url or "https://api.twilio.com").rstrip("/")
        got = await self._post(
            f"{base}/2010-04-01/Accounts/{s.account_sid}/Messages.json",
            data={"To": message.to, "From": s.from_number, "Body": message.body},
            auth=(s.account_sid, s.auth_token),
            headers={"I-Twilio-Idempotency-Token": message.key},
        )
        if isinstance(got, SendResult):
            return got
        body = _json(got)
        if got.status_code in (200, 201) and body and body.get("sid"):
            return SendResult("sent", str(body["sid"]))
        return _classify_http(got.status_code, body)


class WebhookSms(_HttpProvider):
    """POST {base_url} with JSON {to, from, body, idempotency_key}; 2xx with an id is sent."""

    async def send(self, message: OutgoingEmail | OutgoingSms) -> SendResult:
        assert isinstance(message, OutgoingSms)
        if withdrawn(message):
            return STOPPED
        s = self._config
        got = await self._post(s.base_url, json={"to": message.to, "from": s.from_number, "body": message.body,
                                                 "idempotency_key": message.key},
                               headers={"Idempotency-Key": message.key})
        if isinstance(got, SendResult):
            return got
        body = _json(got)
        if 200 <= got.status_code < 300:
            return SendResult("sent", str((body or {}).get("id") or message.key))
        return _classify_http(got.status_code, body)


def _json(response: httpx.Response) -> dict | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
