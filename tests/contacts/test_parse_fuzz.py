"""Hostile rows never crash the parser: every input is a valid contact or one RowError."""

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import SecretStr

from campaigns.audience.contacts import parse_row
from campaigns.audience.purchases import parse_purchase_row
from campaigns.config import Settings
from campaigns.errors import RowError

SETTINGS = Settings(secret_key=SecretStr("fuzz-secret-key-at-least-32-bytes-long"))
text = st.text(max_size=80)
rows = st.fixed_dictionaries({}, optional={
    k: text for k in ("email", "phone", "name", "timezone", "locale", "external_id", "tags",
                      "consent_email", "consent_sms", "city")
})


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows)
def test_contact_rows_parse_or_fail_with_a_row_error(row):
    try:
        data = parse_row(row, 2, SETTINGS)
    except RowError as err:
        assert err.line == 2 and str(err).startswith("line 2") and "\n" not in str(err)
        return
    assert data.email or data.phone
    if data.phone:
        assert data.phone.startswith("+") and data.phone[1:].isdigit()


@hsettings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={k: text for k in ("order_id", "external_id", "email", "amount", "currency",
                                                                "occurred_at", "items", "utm_campaign")}))
def test_purchase_rows_parse_or_fail_with_a_row_error(row):
    try:
        data = parse_purchase_row(row, 5, SETTINGS)
    except RowError as err:
        assert err.line == 5 and str(err).startswith("line 5") and "\n" not in str(err)
        return
    assert data.amount_cents >= 0 and len(data.currency) == 3
