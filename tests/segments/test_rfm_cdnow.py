"""RFM quintiles on the CDNOW sample: equal-sized at every month's end, in SQL and in profiles.

Ranked with ties sharing the lowest rank, F was 1 for most buyers (most bought once) and
5 for everyone with a few orders; the old scores failed the 30% bound at every date.
"""

from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import func, select

from campaigns.segments import metrics, profiles
from tests.segments.cdnow import load_sample

DATES = [datetime(1997, 2, 15, tzinfo=UTC)] + [datetime(y, m, 1, tzinfo=UTC) for y, m in
                                                ((1997, 4), (1997, 7), (1997, 10), (1998, 1), (1998, 4), (1998, 7))]


def test_no_score_holds_more_than_30_percent_of_buyers_at_any_date(app):
    ids = load_sample(app)
    worst = {}
    with app.session() as s:
        for at in DATES:
            b = metrics.buyers(at, metrics.Needs(scores=frozenset("rfm")))
            buyers = s.scalar(select(func.count()).select_from(b))
            for score in ("r", "f", "m"):
                counts = dict(s.execute(select(b.c[score], func.count()).group_by(b.c[score])).all())
                assert sorted(counts) == [1, 2, 3, 4, 5], (at, score, counts)
                worst[(at.date(), score)] = max(counts.values()) / buyers
                assert max(counts.values()) - min(counts.values()) <= 1  # equal sizes, to one buyer
        got = profiles(s, app.settings, list(ids.values()), DATES[0])
        b = metrics.buyers(DATES[0], metrics.Needs(scores=frozenset("rfm")))
        in_sql = {row.contact_id: (row.r, row.f, row.m) for row in s.execute(select(b.c.contact_id, b.c.r, b.c.f, b.c.m))}
    assert max(worst.values()) <= 0.30, max(worst.items(), key=lambda kv: kv[1])
    # a profile scores every buyer exactly as the filter language does
    assert {cid: (p.r, p.f, p.m) for cid, p in got.items() if p.r is not None} == in_sql
    assert Counter(p.f for p in got.values() if p.f is not None) == Counter(f for _, f, _ in in_sql.values())
