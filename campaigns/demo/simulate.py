"""Simulated recipients acting through the real tracking endpoints, on simulated time.

Every action is an HTTP request to the running tracking app: opens load the pixel (some
by a privacy proxy), clicks follow the signed links, unsubscribes POST one-click, texts
answer STOP through the inbound webhook, purchases arrive through the signed purchase
webhook.

The simulated world has known causal effects, so the report's lift can be checked against
the truth: everyone, mailed or held out, buys within the week with chance BASELINE; a
message whose subject contains a key of CAUSED also makes its recipient buy (after opening
and clicking) with that extra chance. Nothing else a message does leads to a purchase. For
the win-back the true intention-to-treat lift is therefore
CAUSED x (1 - BASELINE) = 0.20 x 0.95 = 19 points (TRUE_LIFT).
"""

from __future__ import annotations

import heapq
import json
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from typing import Any

import httpx

from campaigns.config import Settings
from campaigns.tracking.app import twilio_signature, webhook_signature

PERSON = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
APPLE_PROXY = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
BASELINE = 0.05  # chance that anyone buys within the week anyway, mailed or not
CAUSED = {"we miss you": 0.20}  # subject text -> extra chance that the message makes its recipient buy
TRUE_LIFT = {"winback": CAUSED["we miss you"] * (1 - BASELINE)}  # absolute, in conversion share
_URL = re.compile(r'https?://[^\s"\'<>]+')


@dataclass(order=True)
class _Action:
    at: datetime
    n: int
    kind: str = field(compare=False)
    args: dict[str, Any] = field(compare=False, default_factory=dict)


class Recipients:
    """Decides what each recipient does and performs it when simulated time comes."""

    def __init__(self, settings: Settings, base_url: str, seed: int, set_clock: Callable[[datetime], None]) -> None:
        self.settings = settings
        self.base = base_url.rstrip("/")
        self.rng = random.Random(seed)
        self.set_clock = set_clock
        self.queue: list[_Action] = []
        self.done: Counter[str] = Counter()
        self._n = 0
        self._orders = 0

    def _plan(self, at: datetime, kind: str, **args: Any) -> None:
        self._n += 1
        heapq.heappush(self.queue, _Action(at, self._n, kind, args))

    def on_email(self, raw: bytes, sent_at: datetime) -> None:
        """A message arrived at the SMTP server: schedule what its recipient will do."""
        msg = message_from_bytes(raw, policy=policy.default)
        to = msg["To"].addresses[0].addr_spec
        html = msg.get_body(("html",))
        urls = _URL.findall(html.get_content() if html else "")
        pixel = next((u for u in urls if "/o/" in u), None)
        clicks = [u for u in urls if "/c/" in u]
        unsub = next((u for u in urls if "/u/" in u), None)
        subject = str(msg["Subject"] or "")
        caused = sum(chance for key, chance in CAUSED.items() if key in subject)
        if pixel and self.rng.random() < 0.2:
            self._plan(sent_at + timedelta(seconds=30), "open", url=pixel, ua=APPLE_PROXY)  # a privacy proxy prefetch
        if pixel and clicks and self.rng.random() < caused:
            # the message made them buy: they open, click and order within two days
            opened = sent_at + timedelta(hours=self.rng.uniform(0.1, 20))
            clicked = opened + timedelta(minutes=self.rng.uniform(1, 30))
            self._plan(opened, "open", url=pixel, ua=PERSON)
            self._plan(clicked, "click", url=self.rng.choice(clicks))
            self._plan(clicked + timedelta(hours=self.rng.uniform(0.2, 48)), "buy", email=to)
        elif pixel and self.rng.random() < 0.45:
            opened = sent_at + timedelta(hours=self.rng.uniform(0.1, 20))
            self._plan(opened, "open", url=pixel, ua=PERSON)
            if clicks and self.rng.random() < 0.3:
                self._plan(opened + timedelta(minutes=self.rng.uniform(1, 30)), "click", url=self.rng.choice(clicks))
            elif unsub and self.rng.random() < 0.04:
                self._plan(opened + timedelta(minutes=2), "unsubscribe", url=unsub)
        self.baseline(to, sent_at, BASELINE)

    def on_sms(self, line: dict[str, Any], sent_at: datetime) -> None:
        """A text went out: a few answer STOP or HELP, a few buy."""
        r = self.rng.random()
        if r < 0.07:
            self._plan(sent_at + timedelta(minutes=self.rng.uniform(1, 120)), "sms", phone=line["to"],
                       body=self.rng.choice(["STOP", "stop", "Stop.", "UNSUBSCRIBE"]))
        elif r < 0.09:
            self._plan(sent_at + timedelta(minutes=5), "sms", phone=line["to"], body="HELP")

    def baseline(self, email: str | None, at: datetime, chance: float) -> None:
        """People buy anyway sometimes: the holdout's baseline (and part of everyone's)."""
        if email and self.rng.random() < chance:
            self._plan(at + timedelta(hours=self.rng.uniform(1, 160)), "buy", email=email)

    async def run_until(self, client: httpx.AsyncClient, now: datetime) -> None:
        """Perform every action due by `now`, each at its own simulated moment."""
        while self.queue and self.queue[0].at <= now:
            action = heapq.heappop(self.queue)
            self.set_clock(action.at)
            await self._perform(client, action)
            self.done[action.kind] += 1

    async def _perform(self, client: httpx.AsyncClient, a: _Action) -> None:
        if a.kind == "open":
            await client.get(a.args["url"], headers={"User-Agent": a.args["ua"]})
        elif a.kind == "click":
            await client.get(a.args["url"], headers={"User-Agent": PERSON})
        elif a.kind == "unsubscribe":
            await client.post(a.args["url"], data={"List-Unsubscribe": "One-Click"})
        elif a.kind == "sms":
            self._n += 1
            form = {"From": a.args["phone"], "Body": a.args["body"], "MessageSid": f"SMdemo{self._n}"}
            url = self.settings.tracking.public_url.rstrip("/") + "/sms/inbound"
            sig = twilio_signature(self.settings.sms.auth_token.get_secret_value(), url, form)
            await client.post(f"{self.base}/sms/inbound", data=form, headers={"X-Twilio-Signature": sig})
        elif a.kind == "buy":
            self._orders += 1
            body = json.dumps({"order_id": f"D{self._orders:06d}", "email": a.args["email"],
                               "amount": f"{self.rng.lognormvariate(3.8, 0.4):.2f}", "occurred_at": a.at.isoformat()}).encode()
            await client.post(f"{self.base}/webhooks/purchase", content=body,
                              headers={"X-Campaigns-Signature": webhook_signature(self.settings, body)})
