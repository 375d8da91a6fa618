"""`campaigns daemon`, `campaigns worker`, `campaigns status`."""

from __future__ import annotations

import logging

import typer

from campaigns import preflight
from campaigns.cli.common import JsonOpt, console, emit_rows, get_app, print_json, warn
from campaigns.messages import dkim_signing
from campaigns.timespec import utcnow


def register(app: typer.Typer) -> None:
    """Attach the process commands to the root app."""
    app.command("daemon")(daemon)
    app.command("worker")(worker)
    app.command("status")(status)


def _logging(verbose: bool) -> None:
    """One line per condition, redacted; tracebacks only with --verbose (campaigns.logsetup)."""
    from campaigns.logsetup import configure

    configure(verbose)


def daemon(ctx: typer.Context,
           no_tracking: bool = typer.Option(False, "--no-tracking", help="Do not serve the tracking endpoints."),
           no_dispatch: bool = typer.Option(False, "--no-dispatch", help="Only schedule and plan (workers send)."),
           verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug lines and full tracebacks in the log.")) -> None:
    """Run the scheduler, the dispatcher and the tracking app until SIGTERM/SIGINT."""
    from scheduler.daemon import Daemon, run_until_signalled

    a = get_app(ctx)
    a.ready_engine()
    dkim_signing.signer(a.settings)  # a bad DKIM setup is one line now, not a failure per message later
    for warning in preflight.check_daemon(a.settings, tracking=not no_tracking):  # what cannot work: one line, exit 1
        warn(warning)
    from campaigns.tracking.guard import startup_warnings

    for line in startup_warnings(a.settings, serving=not no_tracking, sending=not no_dispatch):
        warn(line)
    _logging(verbose)
    run_until_signalled(Daemon(a, tracking=not no_tracking, dispatch=not no_dispatch).run)


def worker(ctx: typer.Context, name: str = typer.Option(None, "--name", help="A name for this worker (default role@host:pid)."),
           verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug lines and full tracebacks in the log.")) -> None:
    """Run only the dispatcher: start several (on several machines, sharing PostgreSQL) to send faster."""
    import asyncio

    from scheduler.daemon import finish, run_until_signalled
    from scheduler.dispatcher import Dispatcher, default_worker_name
    from scheduler.liveness import heartbeat, release_own

    a = get_app(ctx)
    a.ready_engine()
    dkim_signing.signer(a.settings)  # a bad DKIM setup is one line now, not a failure per message later
    for warning in preflight.check_daemon(a.settings, tracking=False):
        warn(warning)
    from campaigns.tracking.guard import startup_warnings

    for line in startup_warnings(a.settings, serving=False):
        warn(line)
    _logging(verbose)
    worker_name = name or default_worker_name()

    async def run(stop: asyncio.Event) -> None:
        heartbeat(a, worker_name, "worker")
        beat = asyncio.create_task(_beat(a, worker_name, stop))
        sender = asyncio.create_task(Dispatcher(a, worker_name=worker_name).run(stop), name="the dispatcher")
        clean = False
        try:
            waiter = asyncio.create_task(stop.wait())
            await asyncio.wait([sender, waiter], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            clean = await finish([sender])  # SIGTERM: the wave in flight finishes, within the grace
        finally:
            beat.cancel()
            try:
                release_own(a, worker_name, in_flight=not clean)  # claimed, never handed over: queued again
                heartbeat(a, worker_name, "worker", stopping=True)
            except Exception as exc:
                logging.getLogger("campaigns.worker").warning("could not release this worker's rows: %s",
                                                              (str(exc).splitlines() or [""])[0][:200])

    run_until_signalled(run)


async def _beat(a, name: str, stop) -> None:
    """The worker's heartbeat, and the rows of dead senders released (scheduler.liveness)."""
    import asyncio

    from scheduler.liveness import beat

    while not stop.is_set():
        await asyncio.sleep(a.settings.sending.heartbeat_seconds)
        try:
            await asyncio.to_thread(beat, a, name, "worker")
        except Exception as exc:
            logging.getLogger("campaigns.worker").warning("heartbeat failed: %s: %s", type(exc).__name__,
                                                          (str(exc).splitlines() or [""])[0][:200])


def status(ctx: typer.Context, as_json: bool = JsonOpt) -> None:
    """What is scheduled next, what is running, and the outbox by state."""
    from scheduler.status import gather

    a = get_app(ctx)
    with a.session(write=False) as s:
        found = gather(s, utcnow())
    upcoming, processes, outbox, paused, errors = (found[k] for k in ("upcoming", "processes", "outbox", "paused", "errors"))
    if as_json:
        print_json({"upcoming": upcoming, "processes": processes, "outbox": outbox, "paused": paused, "errors": errors})
        return
    emit_rows(upcoming, ["campaign", "kind", "next", "note"], title="Scheduled next",
              empty="No campaign is scheduled (a new campaign is a draft until `campaigns activate NAME`).")
    if processes:
        emit_rows(processes, ["name", "role", "started_at", "last_seen", "alive"], title="Running")
    else:
        console.print("[yellow]no daemon or worker is running[/yellow]")
    emit_rows(outbox, ["campaign", "state", "count"], title="Outbox", empty="The outbox is empty.")
    if paused:
        emit_rows(paused, ["campaign", "reason"], title="Paused")
    if errors:
        emit_rows(errors, ["campaign", "last_error", "at"], title="Last transport error")
