"""BG/NBD and Gamma-Gamma: the customer-lifetime-value models, fitted by maximum likelihood.

Pure numpy/scipy on plain arrays (no database here; campaigns/segments/clv.py feeds it).

- BG/NBD (Fader, Hardie & Lee, "Counting Your Customers the Easy Way", Marketing Science
  2005): while alive a customer buys at rate lambda ~ Gamma(r, alpha); after each purchase
  they drop out with probability p ~ Beta(a, b). Per customer the data are x (repeat
  purchases), t_x (time of the last purchase after the first) and T (time since the first
  purchase), in weeks. The log-likelihood is the paper's equation (6); the conditional
  expectation of purchases in the next t weeks its equation (10); P(alive) its (11).
- Gamma-Gamma (Fader, Hardie & Lee, "RFM and CLV", JMR 2005; Colombo & Jiang 1999): a
  customer's mean spend per transaction varies around their own mean, itself Gamma
  distributed: parameters p, q, v fitted on customers with at least one repeat purchase,
  from x and the mean value of their repeat transactions m_x.

Both fits run scipy.optimize.minimize (L-BFGS-B) on log-parameters over the customers
grouped by identical data (the likelihood is a weighted sum), which is light and exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize  # type: ignore[import-untyped]
from scipy.special import gammaln, hyp2f1  # type: ignore[import-untyped]

from campaigns.errors import InputError

WEEKS_PER_YEAR = 365.25 / 7


@dataclass(frozen=True)
class BgNbd:
    """Fitted BG/NBD parameters (time in weeks)."""

    r: float
    alpha: float
    a: float
    b: float

    def _odds(self, x: Any, t_x: Any, T: Any) -> Any:
        """a / (b + x - 1) * ((alpha + T) / (alpha + t_x))^(r + x) for x > 0, else 0: the odds of having dropped out."""
        x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log = np.log(self.a) - np.log(self.b + x - 1) + (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x))
            return np.where(x > 0, np.exp(np.minimum(log, 700)), 0.0)

    def p_alive(self, x: Any, t_x: Any, T: Any) -> Any:
        """P(still a customer | x, t_x, T), equation (11)."""
        return 1.0 / (1.0 + self._odds(x, t_x, T))

    def expected_purchases(self, t: Any, x: Any, t_x: Any, T: Any) -> Any:
        """Expected purchases in the next t weeks given x, t_x, T, equation (10)."""
        x, t_x, T, t = (np.asarray(v, dtype=float) for v in (x, t_x, T, t))
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        z = t / (alpha + T + t)
        head = (a + b + x - 1) / (a - 1)
        tail = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
        return head * tail / (1.0 + self._odds(x, t_x, T))


@dataclass(frozen=True)
class GammaGamma:
    """Fitted Gamma-Gamma spend parameters (money in currency units)."""

    p: float
    q: float
    v: float

    def expected_spend(self, x: Any, m_x: Any) -> Any:
        """E[mean spend per transaction | x repeat purchases averaging m_x]; the population mean when x = 0."""
        x, m_x = np.asarray(x, dtype=float), np.asarray(m_x, dtype=float)
        p, q, v = self.p, self.q, self.v
        return p * (v + x * m_x) / (p * x + q - 1)


def bgnbd_loglik(params: Any, x: Any, t_x: Any, T: Any, weights: Any = 1.0) -> float:
    """Sum of the BG/NBD log-likelihood, equation (6) of the paper."""
    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = gammaln(a + b) + gammaln(b + x) - gammaln(b) - gammaln(a + b + x)
    a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x), -np.inf)
    return float(np.sum(weights * (a1 + a2 + np.logaddexp(a3, a4))))


def gg_loglik(params: Any, x: Any, m_x: Any, weights: Any = 1.0) -> float:
    """Sum of the Gamma-Gamma log-likelihood of mean repeat spend m_x over x transactions."""
    p, q, v = params
    px = p * x
    ll = gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v) + (px - 1) * np.log(m_x) + px * np.log(x) \
        - (px + q) * np.log(x * m_x + v)
    return float(np.sum(weights * ll))


def _grouped(*columns: Any) -> tuple[list[Any], Any]:
    stacked = np.column_stack([np.asarray(c, dtype=float) for c in columns])
    unique, counts = np.unique(stacked, axis=0, return_counts=True)
    return [unique[:, i] for i in range(unique.shape[1])], counts


def _fit(loglik: Any, start: list[float], data: list[Any], weights: Any, what: str) -> np.ndarray:
    def nll(log_params: Any) -> float:
        value = -loglik(np.exp(log_params), *data, weights)
        return value if np.isfinite(value) else 1e300

    result = minimize(nll, np.log(start), method="L-BFGS-B", bounds=[(-12.0, 12.0)] * len(start))
    if not np.isfinite(result.fun) or result.fun >= 1e299:
        raise InputError(f"the {what} model could not be fitted to these purchases")
    return np.exp(result.x)


def fit_bgnbd(x: Any, t_x: Any, T: Any) -> BgNbd:
    """Maximum-likelihood BG/NBD parameters; InputError when there is nothing to fit."""
    if len(np.asarray(x)) < 2 or not np.any(np.asarray(x) > 0):
        raise InputError("CLV needs repeat purchases to fit BG/NBD: no customer has bought twice")
    data, weights = _grouped(x, t_x, T)
    r, alpha, a, b = _fit(bgnbd_loglik, [1.0, 1.0, 1.0, 1.0], data, weights, "BG/NBD")
    return BgNbd(float(r), float(alpha), float(a), float(b))


def fit_gamma_gamma(x: Any, m_x: Any) -> GammaGamma:
    """Maximum-likelihood Gamma-Gamma parameters from customers with x >= 1 and m_x > 0."""
    x, m_x = np.asarray(x, dtype=float), np.asarray(m_x, dtype=float)
    keep = (x > 0) & (m_x > 0)
    if keep.sum() < 2:
        raise InputError("CLV needs repeat purchases with a value to fit Gamma-Gamma")
    data, weights = _grouped(x[keep], m_x[keep])
    start = [1.0, 2.0, float(np.mean(m_x[keep]))]
    p, q, v = _fit(gg_loglik, start, data, weights, "Gamma-Gamma")
    if q <= 1:
        raise InputError("the Gamma-Gamma fit has no finite mean spend (q <= 1)")
    return GammaGamma(float(p), float(q), float(v))


def discounted_purchases(model: BgNbd, x: Any, t_x: Any, T: Any, horizon_weeks: float, annual_rate: float,
                         steps_per_year: int = 12) -> Any:
    """Expected purchases over the horizon, each step's purchases discounted to today.

    The horizon is cut into steps (monthly by default); the purchases expected in a step
    (equation (10) at its end minus at its start) are discounted at the step's end by
    (1 + annual_rate) ** years.
    """
    step = WEEKS_PER_YEAR / steps_per_year
    ends = np.append(np.arange(step, horizon_weeks, step), horizon_weeks) if horizon_weeks > 0 else np.array([])
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    total = np.zeros_like(x)
    previous = np.zeros_like(x)
    for end in ends:
        cumulative = model.expected_purchases(end, x, t_x, T)
        total += (cumulative - previous) / (1 + annual_rate) ** (end / WEEKS_PER_YEAR)
        previous = cumulative
    return total
