"""A small hand-worked shop: ten buyers and two prospects, as of AT.

Every expected answer in tests/segments is worked out by hand from the table below
(the comments show the working), not computed by the code under test.

buyer  last purchase  orders  every     total $   R F M   FM  named segment        lifecycle  loyalty      ABC
A      2 days ago     10      10 days    900      5 5 5   5   champions            active     true_friend  A
B      4              1       -         1000      5 1 5   3   potential_loyalists  new        butterfly    A
C      10             6       3 days      50      4 4 2   3   potential_loyalists  new        barnacle     C
D      20             2       30 days    400      4 2 3   3   potential_loyalists  active     stranger     B
E      40             8       5 days     600      3 4 3   4   loyal                at_risk    barnacle     A
F      60             3       100 days    30      3 2 1   2   about_to_sleep       active     stranger     C
G      100            5       60 days    700      2 3 4   4   at_risk              active     butterfly    A
H      200            1       -           20      2 1 1   1   hibernating          at_risk    stranger     C
I      300            9       2 days     800      1 5 4   5   cant_lose_them       at_risk    true_friend  A
J      500            4       10 days    100      1 3 2   3   at_risk              lapsed     stranger     C
P, Q   never bought                                                                prospect

Scores: row ascending (ties by the other figures, then id), score = 1 + 5*(row-1) // 10.
  R by last purchase: J I H G F E D C B A -> 1 1 2 2 3 3 4 4 5 5
  F by orders: H, B (1 order each: H spent less) D F J G C E I A -> 1 1 2 2 3 3 4 4 5 5
  M by total: H F C J D E G I A B -> 1 1 2 2 3 3 4 4 5 5
Loyalty over the last 365 days (everyone's orders fall inside it except J's, 500+ days ago):
  medians over the nine who bought in it: orders 1 1 2 3 [5] 6 8 9 10 -> 5;
  totals 20 30 50 400 [600] 700 800 900 1000 -> $600. J bought nothing in it: stranger.
ABC: totals desc B A I G E D J C F H = 4600; revenue before each: 0 1000 1900 2700 3400
  (< 3680 = 80%: A) 4000 (< 4370 = 95%: B) 4400 4500 4550 4580 (C).
Lifecycle (new 30d, at risk 2x usual interval or 90d under 3 orders, lapsed 365d):
  B, C first bought 4 and 25 days ago: new. E silent 40 > 2*5: at risk. G silent 100 <= 2*60:
  active. H 1 order, silent 200 > 90: at risk. I silent 300 > 2*2: at risk. J silent 500 > 365: lapsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.store.models import ConsentEvent, Contact, Purchase

AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

# name: (last purchase days ago, orders, gap days, total dollars)
BUYERS = {
    "A": (2, 10, 10, 900), "B": (4, 1, 0, 1000), "C": (10, 6, 3, 50), "D": (20, 2, 30, 400),
    "E": (40, 8, 5, 600), "F": (60, 3, 100, 30), "G": (100, 5, 60, 700), "H": (200, 1, 0, 20),
    "I": (300, 9, 2, 800), "J": (500, 4, 10, 100),
}
CONTACTS = {
    "A": {"name": "Ann Lee", "attributes": {"city": "Shanghai", "age": 30}, "tags": ["vip", "newsletter"],
              "timezone": "Asia/Shanghai", "locale": "zh", "external_id": "EXT-A"},
    "B": {"name": "Bob Smith", "attributes": {"city": "Hangzhou", "age": "41"}, "tags": ["vip"],
              "timezone": "Asia/Shanghai", "locale": "zh", "external_id": "EXT-B"},
    "C": {"name": "Chen Wang", "attributes": {"city": "Paris", "age": 25, "member": True}, "tags": ["wholesale"],
              "timezone": "Europe/Paris", "locale": "fr", "external_id": "EXT-C"},
    "D": {"name": "Dana O'Neil", "attributes": {"city": "Shanghai", "member": False}, "tags": [],
              "timezone": "Asia/Shanghai", "locale": "en", "external_id": "EXT-D"},
    "E": {"name": "Eli", "attributes": {"age": 52.5}, "tags": ["newsletter"], "timezone": "Europe/Berlin", "locale": "de"},
    "F": {"name": None, "attributes": {"city": "100%_off"}, "tags": [], "timezone": None, "locale": None},
    "G": {"name": "Gus", "attributes": {}, "tags": []}, "H": {"name": "Hana", "attributes": {}, "tags": []},
    "I": {"name": "Ivan", "attributes": {}, "tags": []}, "J": {"name": "Jia", "attributes": {}, "tags": []},
    "P": {"name": "Pat", "attributes": {"city": "Hangzhou"}, "tags": ["vip"], "timezone": "Asia/Shanghai"},
    "Q": {"name": "Quinn", "attributes": {}, "tags": []},
}
# created_at: A..J one year before AT, P 10 days before, Q on 2026-01-31 at 15:00 UTC
SMS = {"A": ["granted"], "C": ["granted"], "D": ["granted", "revoked"], "P": ["granted"]}
EMAIL = {"A": ["granted"], "B": ["granted"], "E": ["granted", "revoked", "granted"]}


@dataclass
class Shop:
    ids: dict[str, int]

    def names(self, ids: object) -> set[str]:
        by_id = {v: k for k, v in self.ids.items()}
        return {by_id[i] for i in ids}  # type: ignore[union-attr]


@pytest.fixture
def shop(app) -> Shop:  # type: ignore[no-untyped-def]
    ids: dict[str, int] = {}
    with app.session() as s:
        for name, fields in CONTACTS.items():
            created = AT - timedelta(days=365)
            if name == "P":
                created = AT - timedelta(days=10)
            if name == "Q":
                created = datetime(2026, 1, 31, 15, 0, tzinfo=UTC)
            c = Contact(email=f"{name.lower()}@example.com", phone=f"+1415555000{len(ids)}",
                        created_at=created, updated_at=created, **fields)
            s.add(c)
            s.flush()
            ids[name] = c.id
        for name, (last_ago, n, gap, dollars) in BUYERS.items():
            cents = dollars * 100
            each = cents // n
            for k in range(n):
                amount = each + (cents - each * n if k == 0 else 0)
                s.add(Purchase(order_id=f"{name}-{k}", contact_id=ids[name], amount_cents=amount, currency="USD",
                               occurred_at=AT - timedelta(days=last_ago + gap * k)))
        for channel, table in (("sms", SMS), ("email", EMAIL)):
            for name, actions in table.items():
                for k, action in enumerate(actions):
                    when = AT - timedelta(days=300 - k)
                    s.add(ConsentEvent(contact_id=ids[name], channel=channel, action=action, source="test",
                                       occurred_at=when, recorded_at=when))
    return Shop(ids)
