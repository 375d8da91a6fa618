"""The few small HTML pages a recipient sees; every value is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}"
          "button{font-size:1rem;padding:.6rem 1.2rem;margin:.3rem 0;border:0;border-radius:.3rem;background:#333;color:#fff;cursor:pointer}"
          "label{display:block;margin:.8rem 0}")


def page(title: str, body_html: str) -> str:
    """A complete page (no external resources)."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body_html}</body></html>")


def unsubscribe_form(sender: str, topic: str | None = None, description: str | None = None,
                     topics: Sequence[Any] = ()) -> str:
    """GET /u/...: asks, changes nothing. With a topic, the choice is that topic or everything;
    below, every topic (`topics`) to leave or rejoin."""
    choice = ""
    if topic is not None:
        about = f" ({escape(description)})" if description else ""
        choice = (f"<label><input type='radio' name='scope' value='topic' checked> Only \u201c{escape(topic)}\u201d{about}</label>"
                  f"<label><input type='radio' name='scope' value='everything'> All marketing email from {escape(sender)}</label>")
    question = "What would you like to stop receiving?" if topic is not None else f"Stop receiving marketing email from {escape(sender)}?"
    return page("Unsubscribe", (
        f"<p>{question}</p>"
        "<form method='post'><input type='hidden' name='List-Unsubscribe' value='One-Click'>" + choice +
        "<label><input type='checkbox' name='all' value='1'> Also stop text messages (all channels)</label>"
        "<button type='submit'>Unsubscribe</button></form>" + topics_form(topics)))


def topics_form(topics: Sequence[Any]) -> str:
    """The preference form under the unsubscribe form: every topic, checked when the recipient is
    in it, so one they left can be rejoined (an HTML fragment; empty when there are no topics)."""
    if not topics:
        return ""
    boxes = "".join(
        f"<label><input type='checkbox' name='topic_{t.id}' value='1'{' checked' if t.member else ''}> "
        f"\u201c{escape(t.name)}\u201d{f' ({escape(t.description)})' if t.description else ''}</label>" for t in topics)
    return ("<h2>Your topics</h2><p>Choose what you would like to hear about.</p>"
            "<form method='post'><input type='hidden' name='List-Unsubscribe' value='One-Click'>"
            "<input type='hidden' name='scope' value='preferences'>" + boxes +
            "<button type='submit'>Save my topics</button></form>")


def message(title: str, text: str) -> str:
    """A one-paragraph page."""
    return page(title, f"<p>{escape(text)}</p>")


def confirm_form(sender: str) -> str:
    """GET /confirm/...: a button; only its POST confirms (link scanners follow GETs)."""
    return page("Confirm your subscription", (
        f"<p>Confirm that you want to receive messages from {escape(sender)}.</p>"
        "<form method='post'><button type='submit'>Confirm</button></form>"))
