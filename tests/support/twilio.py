"""A local HTTP server that speaks the part of Twilio's Messages API we use.

POST /2010-04-01/Accounts/{sid}/Messages.json with HTTP basic auth (sid, token) and the
form fields To, From, Body. Like Twilio it answers 201 with a JSON message resource, or
an error resource {code, message, status}; like Twilio it honours the
I-Twilio-Idempotency-Token header (the same token twice returns the first message and
sends nothing new). Faults are set per number, so one test can mix good and bad numbers.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections import Counter
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from tests.support.http import ServedApp


@dataclass
class FakeTwilio:
    sid: str = "ACtest00000000000000000000000000"
    token: str = "twilio-test-token"
    invalid: set[str] = field(default_factory=set)  # answered 400 code 21211
    busy: Counter[str] = field(default_factory=Counter)  # number -> how many 429s before accepting
    broken: set[str] = field(default_factory=set)  # always 500
    slow: set[str] = field(default_factory=set)  # accepted, but the answer comes too late
    slow_seconds: float = 3.0
    sent: list[dict[str, str]] = field(default_factory=list)  # messages really accepted
    requests: int = 0
    by_token: dict[str, dict[str, str]] = field(default_factory=dict)
    _ids = itertools.count(1)

    def asgi(self) -> Starlette:
        return Starlette(routes=[Route("/healthz", lambda r: PlainTextResponse("ok")),
                                 Route("/2010-04-01/Accounts/{sid}/Messages.json", self._messages, methods=["POST"])])

    def serve(self) -> ServedApp:
        return ServedApp(self.asgi())

    @staticmethod
    def _error(status: int, code: int, message: str) -> JSONResponse:
        return JSONResponse({"code": code, "message": message, "status": status,
                             "more_info": f"https://www.twilio.com/docs/errors/{code}"}, status_code=status)

    async def _messages(self, request: Request) -> JSONResponse:
        self.requests += 1
        expected = "Basic " + base64.b64encode(f"{self.sid}:{self.token}".encode()).decode()
        if request.headers.get("authorization") != expected or request.path_params["sid"] != self.sid:
            return self._error(401, 20003, "Authenticate")
        form = await request.form()
        to, body, sender = str(form.get("To", "")), str(form.get("Body", "")), str(form.get("From", ""))
        if not to or not body or not sender:
            return self._error(400, 21604, "A 'To', 'From' and 'Body' parameter is required.")
        token = request.headers.get("i-twilio-idempotency-token", "")
        if token and token in self.by_token:
            return JSONResponse(self.by_token[token], status_code=201)
        if to in self.invalid:
            return self._error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if self.busy[to] > 0:
            self.busy[to] -= 1
            return self._error(429, 20429, "Too Many Requests")
        if to in self.broken:
            return self._error(500, 20500, "Internal Server Error")
        resource = {"sid": f"SM{next(self._ids):032x}", "to": to, "from": sender, "body": body, "status": "queued",
                    "num_segments": "1", "account_sid": self.sid}
        self.sent.append({"to": to, "from": sender, "body": body, "token": token})
        if token:
            self.by_token[token] = resource
        if to in self.slow:
            await asyncio.sleep(self.slow_seconds)
        return JSONResponse(resource, status_code=201)
