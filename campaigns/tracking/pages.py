"""The few small HTML pages a recipient sees; every value is escaped."""

from __future__ import annotations

from html import escape

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}"
          "button{font-size:1rem;padding:.6rem 1.2rem;margin:.3rem 0;border:0;border-radius:.3rem;background:#333;color:#fff;cursor:pointer}"
          "label{display:block;margin:.8rem 0}")


def page(title: str, body_html: str) -> str:
    """A complete page (no external resources)."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' content='width=device-width'>"
            f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{body_html}</body></html>")


def unsubscribe_form(sender: str, topic: str | None = None, description: str | None = None) -> str:
    """GET /u/...: asks, changes nothing. With a topic, the choice is that topic or everything."""
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
        "<button type='submit'>Unsubscribe</button></form>"))


def message(title: str, text: str) -> str:
    """A one-paragraph page."""
    return page(title, f"<p>{escape(text)}</p>")


def confirm_form(sender: str) -> str:
    """GET /confirm/...: a button; only its POST confirms (link scanners follow GETs)."""
    return page("Confirm your subscription", (
        f"<p>Confirm that you want to receive messages from {escape(sender)}.</p>"
        "<form method='post'><button type='submit'>Confirm</button></form>"))
