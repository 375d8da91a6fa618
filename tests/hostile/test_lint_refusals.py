"""`templates lint` reports everything a send would refuse (issue 17): other files, the
sandbox's hidden names, and caps that do not depend on the contact."""

from __future__ import annotations

import pytest

from campaigns.messages.templates_store import MessageTemplate, lint_sources

REFUSED = {
    "{% include '/etc/passwd' %}": "include/import/extends are not supported",
    "{% import 'os' as os %}{{ os }}": "include/import/extends are not supported",
    "{% extends '/etc/passwd' %}": "include/import/extends are not supported",
    "{{ coupon.__globals__ }}": "'__globals__' is refused by the sandbox",
    "{{ sender|attr('__class__') }}": "'__class__' is refused by the sandbox",
    "{{ now['__class__'] }}": "'__class__' is refused by the sandbox",
    "{{ 'x' * 999999999 }}": "value cap",
    # every send refuses these too, whatever the contact; lint said "no problems" (or, for
    # an unknown filter, crashed with an internal error)
    "{{ 'x'|nosuchfilter }}": "No filter named 'nosuchfilter'",
    "{% if 1 is nosuchtest %}{% endif %}": "No test named 'nosuchtest'",
    "{% for i in range(100000000) %}{% endfor %}": "Range too big",
    "{{ 1.5 ** 1000000 }}": "out of range",
}


def _email(body: str) -> MessageTemplate:
    return MessageTemplate("t", "email", "hello", body + "{{ unsubscribe_url }}", None, None, "h", None)  # type: ignore[arg-type]


@pytest.mark.parametrize("body", sorted(REFUSED))
def test_lint_reports_what_a_send_refuses_with_the_line(body: str) -> None:
    errors = [i.message for i in lint_sources(_email("\n" + body)) if i.level == "error"]
    assert any(REFUSED[body] in e and e.startswith("body.html line 2") for e in errors), errors


def test_lint_does_not_report_failures_that_depend_on_the_contact() -> None:
    body = "<p>{{ contact.attributes.city|default('') }} {{ (contact.attributes.points|int) * 2 }}</p>"
    assert [i for i in lint_sources(_email(body)) if i.level == "error"] == []
