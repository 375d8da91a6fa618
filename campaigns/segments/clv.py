"""Customer lifetime value as the seeds define it: the present value of all profit over the
relationship, historical plus future (docs/segments.md, "CLV").

    clv = margin x spent so far
          + margin x E[spend per purchase] x sum over the horizon of the purchases expected
            in each month, discounted at `discount_rate` a year

Future purchases and P(alive) come from BG/NBD, spend per purchase from Gamma-Gamma
(clv_model.py), both fitted on the purchases up to the date. As in the paper, purchases
are counted by distinct purchase days (UTC) and time is in weeks: x = purchase days after
the first, t_x = weeks from the first purchase day to the last, T = weeks from the first
purchase day to the date. m_x is the mean of the repeat days' spend.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement

from campaigns.config import Settings
from campaigns.errors import InputError
from campaigns.segments.clv_model import (
    BgNbd,
    GammaGamma,
    discounted_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
)
from campaigns.store.models import Contact, Purchase
from campaigns.timespec import parse_duration

WEEK_DAYS = 7.0


@dataclass(frozen=True)
class Summary:
    """Per buyer, in contact-id order: the model's inputs and total spent (cents)."""

    contact_ids: np.ndarray
    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    m_x: np.ndarray
    total_cents: np.ndarray
    first_day: date | None
    last_day: date | None
    purchases: int


@dataclass(frozen=True)
class Valuation:
    """The fitted models and every buyer's value as of `at` (money in currency units)."""

    at: datetime
    summary: Summary
    purchases_model: BgNbd
    spend_model: GammaGamma
    p_alive: np.ndarray
    expected_purchases: np.ndarray  # over the horizon, undiscounted
    historical_profit: np.ndarray
    future_profit: np.ndarray  # present value
    margin: float
    discount_rate: float
    horizon: str

    @property
    def clv(self) -> np.ndarray:
        """Historical profit plus the present value of future profit, per buyer."""
        return self.historical_profit + self.future_profit

    def of(self, contact_id: int) -> dict[str, float] | None:
        """One buyer's p_alive, expected purchases, profits and clv; None for a non-buyer."""
        i = int(np.searchsorted(self.summary.contact_ids, contact_id))
        if i >= len(self.summary.contact_ids) or self.summary.contact_ids[i] != contact_id:
            return None
        return {"p_alive": float(self.p_alive[i]), "expected_purchases": float(self.expected_purchases[i]),
                "historical_profit": float(self.historical_profit[i]), "future_profit": float(self.future_profit[i]),
                "clv": float(self.clv[i])}


def summarise(session: Session, at: datetime) -> Summary:
    """Read every buyer's purchases up to `at` (streamed in contact order) into the model's inputs."""
    end = at.date()
    ids: list[int] = []
    xs: list[int] = []
    txs: list[float] = []
    Ts: list[float] = []
    ms: list[float] = []
    totals: list[int] = []
    current: int | None = None
    days: dict[date, int] = {}
    count = 0

    def close() -> None:
        ordered = sorted(days)
        first, last = ordered[0], ordered[-1]
        repeat = [days[d] for d in ordered[1:]]
        ids.append(current)  # type: ignore[arg-type]
        xs.append(len(repeat))
        txs.append((last - first).days / WEEK_DAYS)
        Ts.append((end - first).days / WEEK_DAYS)
        ms.append(sum(repeat) / len(repeat) / 100 if repeat else 0.0)
        totals.append(sum(days.values()))

    first_day = last_day = None
    rows = session.execute(select(Purchase.contact_id, Purchase.occurred_at, Purchase.amount_cents)
                           .where(Purchase.occurred_at <= at).order_by(Purchase.contact_id, Purchase.occurred_at))
    for contact_id, occurred_at, cents in rows:
        if contact_id != current:
            if current is not None:
                close()
            current, days = contact_id, {}
        day = occurred_at.date()
        days[day] = days.get(day, 0) + int(cents)
        first_day = day if first_day is None or day < first_day else first_day
        last_day = day if last_day is None or day > last_day else last_day
        count += 1
    if current is not None:
        close()
    return Summary(np.asarray(ids, dtype=np.int64), np.asarray(xs, dtype=float), np.asarray(txs), np.asarray(Ts),
                   np.asarray(ms), np.asarray(totals, dtype=np.int64), first_day, last_day, count)


def value_customers(session: Session, settings: Settings, at: datetime) -> Valuation:
    """Fit both models on the purchases up to `at` and value every buyer."""
    cfg = settings.value
    s = summarise(session, at)
    if len(s.contact_ids) == 0:
        raise InputError("CLV needs purchases: there are none up to that date")
    model = fit_bgnbd(s.x, s.t_x, s.T)
    spend = fit_gamma_gamma(s.x, s.m_x)
    horizon_weeks = parse_duration(cfg.horizon).total_seconds() / (7 * 86400)
    purchases = discounted_purchases(model, s.x, s.t_x, s.T, horizon_weeks, cfg.discount_rate)
    per_purchase = spend.expected_spend(s.x, s.m_x)
    return Valuation(
        at=at, summary=s, purchases_model=model, spend_model=spend, p_alive=model.p_alive(s.x, s.t_x, s.T),
        expected_purchases=model.expected_purchases(horizon_weeks, s.x, s.t_x, s.T),
        historical_profit=cfg.margin * s.total_cents / 100, future_profit=cfg.margin * per_purchase * purchases,
        margin=cfg.margin, discount_rate=cfg.discount_rate, horizon=cfg.horizon)


def model_description(v: Valuation) -> dict[str, Any]:
    """The fitted model as plain data (the `model` object of `customers clv --json`)."""
    m, g, s = v.purchases_model, v.spend_model, v.summary
    return {
        "name": "BG/NBD (Fader, Hardie & Lee 2005) + Gamma-Gamma spend",
        "params": {"r": m.r, "alpha": m.alpha, "a": m.a, "b": m.b, "p": g.p, "q": g.q, "v": g.v},
        "time_unit": "weeks",
        "fitted_on": {"purchases_up_to": v.at.isoformat(), "customers": len(s.contact_ids),
                      "purchases": s.purchases, "repeat_customers": int(np.sum(s.x > 0)),
                      "first_purchase": None if s.first_day is None else s.first_day.isoformat(),
                      "last_purchase": None if s.last_day is None else s.last_day.isoformat(),
                      "transactions": "distinct purchase days (UTC)"},
        "margin": v.margin, "discount_rate": v.discount_rate, "horizon": v.horizon,
    }


def ids_where(v: Valuation, field: str, test: Any) -> list[int]:
    """Contact ids of buyers whose `field` (clv in cents, or p_alive) passes `test`."""
    values = v.clv * 100 if field == "clv" else v.p_alive
    return [int(cid) for cid, value in zip(v.summary.contact_ids, values, strict=True) if test(float(value))]


def in_ids(ids: list[int]) -> ColumnElement[bool]:
    """Contact.id IN (ids) with the ids written into the SQL (no bound-parameter limit)."""
    return Contact.id.in_(bindparam("value_ids", ids, expanding=True, literal_execute=True))


def _spread(values: np.ndarray) -> dict[str, Any]:
    q = np.percentile(values, [10, 25, 50, 75, 90]) if len(values) else [None] * 5
    return {"customers": len(values), "mean": float(np.mean(values)) if len(values) else None,
            "total": float(np.sum(values)), **{f"p{k}": None if v is None else float(v)
                                                for k, v in zip((10, 25, 50, 75, 90), q, strict=True)}}


def clv_report(session: Session, settings: Settings, at: datetime, top: int = 10) -> dict[str, Any]:
    """The fitted model, the distribution of CLV and P(alive), and the most valuable customers."""
    v = value_customers(session, settings, at)
    order = np.argsort(-v.clv, kind="stable")[:top]
    ids = [int(v.summary.contact_ids[i]) for i in order]
    who = {cid: email or external_id or f"#{cid}" for cid, email, external_id in session.execute(
        select(Contact.id, Contact.email, Contact.external_id).where(Contact.id.in_(ids)))}
    s = v.summary
    return {
        "model": model_description(v),
        "distribution": {"clv": _spread(v.clv), "p_alive": _spread(v.p_alive),
                         "historical_profit": _spread(v.historical_profit), "future_profit": _spread(v.future_profit)},
        "top": [{"contact": who.get(int(s.contact_ids[i]), f"#{int(s.contact_ids[i])}"),
                 "purchase_days": int(s.x[i]) + 1, "spent": int(s.total_cents[i]) / 100,
                 "p_alive": float(v.p_alive[i]), "expected_purchases": float(v.expected_purchases[i]),
                 "historical_profit": float(v.historical_profit[i]), "future_profit": float(v.future_profit[i]),
                 "clv": float(v.clv[i])} for i in order],
    }


def value_condition(resolve: Any, settings: Settings, at: datetime, node: Any, values: list[Any]) -> ColumnElement[bool]:
    """The filter condition for `clv` (cents) or `p_alive`: the models are fitted, every buyer
    valued in Python, and the matching ids written into the SQL. Needs the database."""
    from campaigns.segments.compiler import _py
    from campaigns.segments.lexer import error

    session = getattr(resolve, "session", None)
    field = node.field.name
    if session is None:
        raise error(node.field.col, f"{field} needs the database (fitted models); compile it through members_query")
    if any(v is None for v in values):
        raise error(node.field.col, f"{field} compares with numbers")
    try:
        valuation = value_customers(session, settings, at)
    except InputError as exc:
        raise error(node.field.col, f"{field}: {exc}") from None
    wanted = [float(v) for v in values]
    return in_ids(ids_where(valuation, field, lambda x: _py(x, node.op, wanted)))
