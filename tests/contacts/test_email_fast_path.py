"""normalise_email checks each domain once, yet decides every address as email_validator does."""

from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from campaigns.audience import emails
from campaigns.errors import InputError


def _library(value: str) -> str:
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        return f"error: '{value}' is not a valid email address: {exc}"


def _ours(value: str) -> str:
    try:
        return emails.normalise_email(value)
    except InputError as exc:
        return f"error: {exc}"


atoms = st.text(alphabet="abcXYZ09._-+!#'`{}|~/=?^&%$@\"() <>[]:;,\\é", max_size=12)
hosts = st.text(alphabet="abcXYZ09.-_é", max_size=12) | st.sampled_from(
    ["example.com", "Example.COM", "a.b", "localhost", "x.test", "x.invalid", "1.2.3.4", "[1.2.3.4]", "ex--ample.com",
     "-a.com", "a-.com", "a..com", ".a.com", "a.com.", "a.123", "xn--bcher-kva.example", "bücher.example"])


@hsettings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(atoms, hosts, st.sampled_from(["", " ", "\t"]))
@example("a" * 64, "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + ".com", "")  # near the 254 limit
@example("a" * 70, "example.com", "")  # a long part before the @ (allowed unless strict)
@example("Postmaster", "Example.com", "")
def test_an_address_is_decided_as_the_library_decides_it(local, host, pad):
    emails._DOMAINS.clear()
    value = f"{pad}{local}@{host}{pad}"
    assert _ours(value) == _library(value)
    assert _ours(value) == _library(value)  # and again, from the domain cache


def test_each_domain_is_checked_once(monkeypatch):
    emails._DOMAINS.clear()
    calls = []
    real = emails.validate_email
    monkeypatch.setattr(emails, "validate_email", lambda v, **kw: calls.append(v) or real(v, **kw))
    assert [emails.normalise_email(f"Person.{i}@Example.com") for i in range(50)] == [f"person.{i}@example.com" for i in range(50)]
    assert len(calls) == 1
