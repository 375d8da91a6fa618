"""Run one template operation in this (child) process and report its CPU time and peak memory.

Usage: python -m tests.hostile.probe MODE... < template source (the HTML body, or a JSON
object with "subject", "html" and "text"), each MODE being `lint`
(lint the template as `templates lint` does) or `render` (compile and render it for one
contact, as a send does). Prints one JSON line per mode: outcome ("ok" / "refused" / "crash"), the message,
CPU seconds spent on the operation, and the process's peak resident memory in MB (the
imports alone take about 70 MB; `base_mb` is the peak before the operation).
The address space is limited (RLIMIT_AS) so a bomb on old code fails fast with a
MemoryError instead of swapping the shared machine.
"""

from __future__ import annotations

import json
import resource
import sys

LIMIT_AS = 1536 * 1024 * 1024


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_mb() -> float:
    """This process's peak resident set (VmHWM): ru_maxrss would carry the parent's peak over
    fork and exec, so inside a long pytest run it reported pytest's size, not the probe's."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    modes, source = sys.argv[1:], sys.stdin.read()
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from campaigns.config import Settings
    from campaigns.messages.rendering import RenderError, render_delivery
    from campaigns.messages.templates_store import MessageTemplate, lint_sources
    from campaigns.store.models import Contact

    # the source is the HTML body, or a JSON object {"subject", "html", "text"} for every part
    parts = json.loads(source) if source.startswith('{"') else {"html": source}
    tmpl = MessageTemplate("hostile", "email", parts.get("subject", "hello"), parts["html"] + "{{ unsubscribe_url }}",
                           parts.get("text"), None, "h", None)  # type: ignore[arg-type]
    person = Contact(id=5, email="ann@example.com", name="Ann Lee", attributes={"city": "Paris"}, tags=["vip"])
    settings = Settings(secret_key="hostile-probe-secret-key-32-bytes-long")
    engine = create_engine("sqlite://")
    for mode in modes:
        base_rss = _peak_mb()
        start = _cpu()
        outcome, message = "ok", ""
        try:
            if mode == "lint":
                errors = [i.message for i in lint_sources(tmpl) if i.level == "error"]
                outcome, message = ("refused", "; ".join(errors)) if errors else ("ok", "")
            else:
                with Session(engine) as session:
                    render_delivery(session, settings, tmpl, contact=person, delivery_id=3)
        except RenderError as exc:
            outcome, message = "refused", str(exc)
        except BaseException as exc:
            outcome, message = "crash", f"{type(exc).__name__}: {str(exc)[:200]}"
        cpu = _cpu() - start
        peak = _peak_mb()
        print(json.dumps({"mode": mode, "outcome": outcome, "message": message, "cpu_s": round(cpu, 3),
                          "peak_mb": round(peak, 1), "base_mb": round(base_rss, 1)}), flush=True)

if __name__ == "__main__":
    main()
