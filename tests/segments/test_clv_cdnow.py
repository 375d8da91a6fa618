"""CLV on the CDNOW sample: BG/NBD fitted on weeks 1-39 gives the published parameters."""

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from campaigns.segments.clv import value_customers
from campaigns.segments.clv_model import BgNbd, bgnbd_loglik
from tests.segments.cdnow import load_sample

CALIBRATION_END = datetime(1997, 9, 30, 23, 59, 59, tzinfo=UTC)
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # Fader, Hardie & Lee (2005), weeks


@pytest.fixture
def cdnow(app):
    return load_sample(app)


def test_bgnbd_on_the_cdnow_sample_matches_the_published_fit(app, cdnow):
    with app.session() as s:
        v = value_customers(s, app.settings, CALIBRATION_END)
    m = v.purchases_model
    got = {"r": m.r, "alpha": m.alpha, "a": m.a, "b": m.b}
    for name, published in PUBLISHED.items():
        assert got[name] == pytest.approx(published, rel=0.02), name
    assert len(v.summary.contact_ids) == 2357
    # the paper's log-likelihood at its optimum is -9582.4; ours is the same function
    s = v.summary
    assert bgnbd_loglik((m.r, m.alpha, m.a, m.b), s.x, s.t_x, s.T) == pytest.approx(-9582.4, abs=0.5)
    # Gamma-Gamma on the same data: a finite mean spend per purchase, near the sample's
    g = v.spend_model
    assert g.q > 1 and 20 < g.p * g.v / (g.q - 1) < 50
    assert np.all((v.p_alive > 0) & (v.p_alive <= 1)) and np.all(v.clv >= v.historical_profit)


def test_a_silent_customer_is_worth_less_than_an_active_one_with_the_same_history():
    """Both bought 4 times for the same money; one's last purchase was 52 weeks ago. The old
    run-rate CLV gave both the same value."""
    m = BgNbd(**PUBLISHED)
    active, silent = m.p_alive(3, 50, 52), m.p_alive(3, 0.5, 52)
    assert active > 0.8 and silent < 0.01
    assert m.expected_purchases(52, 3, 50, 52) > 100 * m.expected_purchases(52, 3, 0.5, 52)


def test_customers_clv_prints_the_model_distribution_and_top_customers(cli, cdnow):
    r = cli("customers", "clv", "--at", "1997-09-30", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    model = data["model"]
    assert model["name"].startswith("BG/NBD") and model["time_unit"] == "weeks"
    assert set(model["params"]) == {"r", "alpha", "a", "b", "p", "q", "v"}
    for name, published in PUBLISHED.items():
        assert model["params"][name] == pytest.approx(published, rel=0.02)
    assert model["fitted_on"]["customers"] == 2357 and model["fitted_on"]["last_purchase"] == "1997-09-30"
    assert data["distribution"]["clv"]["customers"] == 2357
    top = data["top"]
    assert len(top) == 10 and [t["clv"] for t in top] == sorted((t["clv"] for t in top), reverse=True)
    table = cli("customers", "clv", "--at", "1997-09-30")
    assert table.exit_code == 0 and "alpha" in table.stdout and "P(alive)" in table.stdout
    abc = json.loads(cli("customers", "abc", "--at", "1997-09-30", "--json").stdout)
    assert [row["abc"] for row in abc] == ["A", "B", "C"] and sum(row["contacts"] for row in abc) == 2357


def test_clv_and_p_alive_are_segment_fields(app, cdnow):
    from sqlalchemy import select

    from campaigns.segments import compile_where
    from campaigns.segments.clv import value_customers
    from campaigns.store.models import Contact

    at = CALIBRATION_END
    with app.session() as s:
        v = value_customers(s, app.settings, at)
        prospect = Contact(email="never@example.com")
        s.add(prospect)
        s.flush()

        def members(text):
            return set(s.scalars(select(Contact.id).where(compile_where(text, app.settings, at, session=s))))

        ids = [int(c) for c in v.summary.contact_ids]
        assert members("clv >= 100") == {c for c, x in zip(ids, v.clv, strict=True) if x >= 100}
        assert members("p_alive < 0.5") == {c for c, x in zip(ids, v.p_alive, strict=True) if x < 0.5}
        assert 0 < len(members("p_alive < 0.5")) < len(ids)
        assert prospect.id in members("not p_alive < 0.5") and prospect.id not in members("p_alive >= 0.5")
        with pytest.raises(Exception, match="needs the database"):
            compile_where("clv > 10", app.settings, at)


def test_clv_without_enough_purchases_is_one_clear_line(cli, app):
    from campaigns.store.models import Contact, Purchase

    empty = cli("customers", "clv")
    assert empty.exit_code == 1 and "CLV needs purchases: there are none" in empty.stderr
    assert "Traceback" not in empty.stderr and len(empty.stderr.strip().splitlines()) == 1
    with app.session() as s:
        c = Contact(email="once@example.com")
        s.add(c)
        s.flush()
        s.add(Purchase(order_id="o1", contact_id=c.id, amount_cents=500, currency="USD", source="test",
                       occurred_at=CALIBRATION_END))
    once = cli("customers", "clv", "--at", "1997-10-01")
    assert once.exit_code == 1 and "repeat purchases" in once.stderr and "Traceback" not in once.stderr
    shown = cli("customers", "show", "once@example.com", "--at", "1997-10-01", "--json")
    assert shown.exit_code == 0 and json.loads(shown.stdout)["clv_cents"] is None
