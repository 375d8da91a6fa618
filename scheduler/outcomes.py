"""What a send outcome does to its delivery: one pure decision, read from one table.

The transport says what happened (`SendResult.outcome`, the channels' own words); this
module says what the outbox row becomes, when it is tried again, and which side effects
follow (a hard bounce suppresses the address; a policy refusal pauses the campaign). No
database, no clock, no randomness of its own: `record.py` writes what `decide` returns,
and tests read the table directly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from campaigns.config import SendingSettings
from campaigns.vocab import DeliveryState
from scheduler.channels import Outcome

# A row the dispatcher never handed over (its campaign was paused mid-batch): not a
# transport outcome, so it is not in the channels' `Outcome`.
RELEASED: Literal["released"] = "released"
Decidable = Outcome | Literal["released"]
MAX_BACKOFF = timedelta(hours=6)


@dataclass(frozen=True)
class RetryPolicy:
    """The settings a transient outcome is judged by (from `[sending]`)."""

    max_attempts: int
    max_retry_age: timedelta
    retry_base_seconds: float

    @classmethod
    def from_settings(cls, sending: SendingSettings) -> RetryPolicy:
        """From `settings.sending`."""
        return cls(sending.max_attempts, timedelta(hours=sending.max_retry_age_hours), sending.retry_base_seconds)


@dataclass(frozen=True)
class Rule:
    """One line of the table: the row's next state and what else follows."""

    state: DeliveryState
    refund_attempt: bool = False  # the message never went out: the claim's attempt does not count
    suppress_address: bool = False  # a hard bounce: suppress the address, record a bounce event
    pause_campaign: bool = False  # the provider refuses us, not this address: hold the campaign


# outcome -> what the row becomes. `transient` is the one outcome whose state depends on
# the row (attempts so far, age): see `decide`.
TABLE: dict[str, Rule] = {
    "sent": Rule(DeliveryState.SENT),
    "transient": Rule(DeliveryState.RETRY_WAIT),
    "hard_bounce": Rule(DeliveryState.FAILED, suppress_address=True),
    "policy": Rule(DeliveryState.QUEUED, refund_attempt=True, pause_campaign=True),
    "failed": Rule(DeliveryState.FAILED),
    "unknown": Rule(DeliveryState.UNKNOWN),
    "suppressed": Rule(DeliveryState.SUPPRESSED, refund_attempt=True),
    RELEASED: Rule(DeliveryState.QUEUED, refund_attempt=True),
}
GIVE_UP = Rule(DeliveryState.FAILED)


@dataclass(frozen=True)
class Decision:
    """What to write for one outcome."""

    rule: Rule
    counted_as: str  # the key the dispatcher's stats count it under
    error: str | None
    due_at: datetime | None = None  # the next attempt (retry_wait only)

    @property
    def state(self) -> DeliveryState:
        """The row's next state."""
        return self.rule.state


def backoff(base_seconds: float, attempts: int, jitter: float) -> timedelta:
    """Exponential backoff: base * 2^(attempts-1) * jitter (0.5..1.5 spreads retries), capped at 6 h."""
    seconds = base_seconds * (2 ** max(0, attempts - 1)) * jitter
    return min(timedelta(seconds=seconds), MAX_BACKOFF)


def draw_jitter(rng: random.Random) -> float:
    """A jitter factor for `backoff`: uniform in 0.5..1.5."""
    return rng.uniform(0.5, 1.5)


def decide(outcome: Decidable, detail: str | None, *, attempts: int, age: timedelta, now: datetime,
           policy: RetryPolicy, jitter: float = 1.0) -> Decision:
    """The next state of a row whose send ended in `outcome`, after `attempts` attempts over `age`.

    An outcome outside the table is treated as `failed` (a transport that says something
    new must not leave its row in flight).
    """
    if outcome == "transient":
        if attempts >= policy.max_attempts or age > policy.max_retry_age:
            return Decision(GIVE_UP, DeliveryState.FAILED.value, f"gave up after {attempts} attempts: {detail}"[:500])
        return Decision(TABLE["transient"], DeliveryState.RETRY_WAIT.value, detail,
                        now + backoff(policy.retry_base_seconds, attempts, jitter))
    rule = TABLE.get(outcome)
    if rule is None:
        return Decision(GIVE_UP, outcome, detail)
    return Decision(rule, outcome, detail)
