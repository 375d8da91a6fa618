"""Templates are untrusted: SSTI payloads are refused or inert, runaway templates are cut off."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from campaigns.config import Settings
from campaigns.messages import rendering
from campaigns.messages.rendering import (
    TEXT_ENV,
    CapExceeded,
    RenderError,
    build_context,
    render_capped,
    render_delivery,
)
from campaigns.messages.templates_store import MessageTemplate
from campaigns.store.models import Contact

SECRET = "sandbox-test-secret-key-of-32-bytes-or-more"
SSTI = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__base__.__subclasses__()[40]('/etc/passwd').read() }}",
    "{{ [].__class__.__base__.__subclasses__() }}",
    "{% for c in ().__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ self.__init__.__globals__.__builtins__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "{{ namespace.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ lipsum.__globals__.__builtins__.__import__('os').popen('id').read() }}",
    "{{ lipsum|attr('__globals__')|attr('__getitem__')('os') }}",
    "{{ ''|attr('__class__')|attr('__mro__') }}",
    "{{ ''|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ ''|attr('__cla' ~ 'ss__') }}",
    "{{ ''|attr(['_', '_class_', '_']|join) }}",
    "{{ request|attr('application')|attr('__globals__') }}",
    "{{ coupon.__globals__ }}",
    "{{ coupon.__closure__ }}",
    "{{ coupon|attr('__globals__') }}",
    "{{ range.__self__ }}",
    "{{ now.__class__.__init__.__globals__ }}",
    "{{ contact.__class__.__subclasses__() }}",
    "{{ contact.attributes.__class__ }}",
    "{{ sender.__class__.__init__.__globals__ }}",
    "{{ unsubscribe_url.__class__.__mro__ }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ '{0.__globals__}'.format(coupon) }}",
    "{{ '{0.__init__.__globals__}'.format(cycler) }}",
    "{{ ''.format_map({}) }}",
    "{{ '%s'|format(coupon.__globals__) }}",
    "{{ '%(a)s' % {'a': lipsum.__globals__} }}",
    "{{ contact.attributes.update({'vip': true}) }}{{ contact.attributes.vip }}",
    "{{ contact.tags.append('hacked') }}",
    "{% set x = contact.attributes.pop('city') %}{{ x }}",
    "{{ config.items() }}",
    "{{ settings.secret_key }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}{{ os }}",
    "{% extends '/etc/passwd' %}",
    "{{ self.__dict__ }}",
    "{{ contact.__dict__ }}",
    "{% for x in contact.attributes.__iter__.__self__.__class__.__mro__ %}{{ x }}{% endfor %}",
]
LEAKS = ("<class", "<function", "<module", "<built-in", "__", "uid=", "root:", "Popen", SECRET, "hacked")


@pytest.fixture
def settings() -> Settings:
    return Settings(secret_key=SECRET)


@pytest.fixture
def session():
    engine = create_engine("sqlite://")
    with Session(engine) as s:
        yield s
    engine.dispose()


def contact() -> Contact:
    return Contact(id=5, email="ann@example.com", name="Ann Lee", attributes={"city": "Paris"}, tags=["vip"])


def html_template(body: str, subject: str = "hello") -> MessageTemplate:
    return MessageTemplate("t", "email", subject, body, "text", None, str(hash(body + subject)), None)  # type: ignore[arg-type]


@pytest.mark.parametrize("payload", SSTI)
def test_known_ssti_payloads_are_refused_or_inert(settings, session, payload):
    person = contact()
    try:
        out = render_delivery(session, settings, html_template(payload), contact=person, delivery_id=3)
    except RenderError as exc:
        assert "template 't'" in str(exc)  # refused, with a reason a report can show
    else:
        body = out.data.decode()
        assert not any(leak in body for leak in LEAKS), body
    assert person.attributes == {"city": "Paris"} and person.tags == ["vip"]


@pytest.mark.parametrize("payload", SSTI[:12])
def test_ssti_payloads_in_the_subject_and_sms_are_refused_too(settings, session, payload):
    with pytest.raises(RenderError):
        render_delivery(session, settings, html_template("<p>x</p>", subject=payload), contact=contact(), delivery_id=3)
    sms = MessageTemplate("s", "sms", None, None, None, payload, str(hash(payload)), None)  # type: ignore[arg-type]
    person = contact()
    person.phone = "+14155550100"
    with pytest.raises(RenderError):
        render_delivery(session, settings, sms, contact=person, delivery_id=3)


def test_the_context_is_plain_data_not_orm_objects(settings):
    ctx = build_context(None, settings, contact=contact(), delivery_id=1, campaign=None,  # type: ignore[arg-type]
                        lifecycle="active", rfm_segment="champions")
    assert type(ctx["contact"]) is dict and type(ctx["contact"]["attributes"]) is dict
    assert ctx["contact"]["first_name"] == "Ann" and ctx["lifecycle"] == "active"


RUNAWAY = [
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% set s = 'x' * 5000 %}{% for a in s %}{% for b in s %}{% for c in s %}{% endfor %}{% endfor %}{% endfor %}",
]


@pytest.mark.parametrize("payload", RUNAWAY)
def test_runaway_loops_are_cut_off_by_the_time_cap(payload):
    with pytest.raises(CapExceeded, match=r"took longer than the 0\.3 s time cap"):
        render_capped(TEXT_ENV.from_string(payload), {}, seconds=0.3)


def test_the_cap_counts_the_rendering_threads_cpu_not_the_wall_clock():
    # A render that waits (here: a context function asleep, as a thread does when the machine's
    # cores are busy elsewhere) is not cut off; only CPU spent rendering counts.
    import time

    def wait() -> str:
        time.sleep(0.8)
        return "done"

    assert render_capped(TEXT_ENV.from_string("{{ wait() }}"), {"wait": wait}, seconds=0.3) == "done"


def test_a_runaway_template_fails_its_delivery_and_the_thread_stays_usable(settings, session, monkeypatch):
    monkeypatch.setattr(rendering, "MAX_RENDER_SECONDS", 0.3)
    with pytest.raises(RenderError, match="rendering took longer than"):
        render_delivery(session, settings, html_template(RUNAWAY[0]), contact=contact(), delivery_id=3)
    ok = render_delivery(session, settings, html_template("<p>fine {{ first_name }}</p>"), contact=contact(), delivery_id=3)
    assert b"fine Ann" in ok.data


def test_time_cap_works_in_other_threads_independently():
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            render_capped(TEXT_ENV.from_string(RUNAWAY[0]), {}, seconds=0.3)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=slow) for _ in range(3)]
    for t in threads:
        t.start()
    fast = [render_capped(TEXT_ENV.from_string("{{ 1 + 1 }}"), {}) for _ in range(100)]
    for t in threads:
        t.join()
    assert fast == ["2"] * 100
    assert len(errors) == 3 and all(isinstance(e, CapExceeded) for e in errors)


@pytest.mark.parametrize("payload", [
    "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}",  # output size
    "{{ 'a' * 1000000000 }}",
    "{{ ['a' * 1000] * 100000 }}",
    "{{ 9 ** (9 ** 9) }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ '{:0999999999}'.format(1) }}",
    "{{ '{:0999999999}'['format'](1) }}",
    "{{ '%0999999999d'|format(1) }}",
    "{{ 'x'|center(999999999) }}",
    "{{ (['a'] * 1000)|join('x' * 2000) }}",
    "{{ ('a\\n' * 300000)|indent(8) }}",
    "{{ 'x'.ljust(999999999) }}",
    "{{ ('a' * 1000)|replace('a', 'a' * 1000)|replace('a', 'aa') }}",
    "{{ range(1000000000)|list }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    "{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f('ab') }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
])
def test_size_bombs_are_refused_before_they_eat_memory(settings, session, payload):
    with pytest.raises(RenderError):
        render_delivery(session, settings, html_template(payload), contact=contact(), delivery_id=3)


def test_time_spent_waiting_for_a_coupon_code_does_not_count_against_the_cap(settings, session, monkeypatch):
    import time

    from campaigns.messages import coupons

    monkeypatch.setattr(rendering, "MAX_RENDER_SECONDS", 0.2)
    monkeypatch.setattr(coupons, "assign_code", lambda s, pool, d: time.sleep(0.5) or "SLOW-DB-CODE")
    out = render_delivery(session, settings, html_template("<p>{{ coupon('P') }}</p>"), contact=contact(), delivery_id=3)
    assert b"SLOW-DB-CODE" in out.data


@pytest.mark.parametrize("payload", ["{{ cycler }}", "{{ range }}", "{{ namespace }}", "{{ coupon }}", "{{ dict }}"])
def test_functions_and_classes_are_not_printed(settings, session, payload):
    with pytest.raises(RenderError, match="cannot be printed"):
        render_delivery(session, settings, html_template("<p>x</p>", subject=payload), contact=contact(), delivery_id=3)
