"""Import arrows run one way, read from every module's source with `ast` (scripts/import_graph.py).

- `campaigns` (outside `campaigns/cli`, the veneer that wires things together) never imports
  `scheduler`: the library does not know who runs it.
- `scheduler/channels` imports nothing from `campaigns`: transports take their own small
  config objects, built from the settings by their caller.
- Only the CLI imports `campaigns.demo` (the demo is a leaf, not a library).
- Only the SMTP channel speaks SMTP (one transport layer for the dispatcher and send-test).
- The CLI imports nothing from SQLAlchemy but the Session type: no SQL in the veneer.
- No project import is wrapped in a handler that catches ImportError: a broken module fails
  loudly where it is imported instead of silently switching a feature off.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _import_graph() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scripts_import_graph", ROOT / "scripts" / "import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


ig = _import_graph()
GRAPH: dict[str, set[str]] = ig.module_imports(ROOT)
IMPORTS = ig.all_imports(ROOT)


def test_the_graph_sees_the_whole_project() -> None:
    # A guard for the rules below: an empty or partial scan would pass them vacuously.
    assert {"campaigns.cli", "campaigns.demo.run", "scheduler.daemon", "scheduler.channels.smtp"} <= GRAPH.keys()
    assert "campaigns.config" in GRAPH["campaigns.cli.common"]  # `from a.b import c`, c a name in a.b
    assert "campaigns.store.schema" in GRAPH["campaigns.demo.run"]  # `from a import b`, b a module
    assert "scheduler.channels" in GRAPH["scheduler.channels.smtp"]  # a package's __init__


def test_campaigns_outside_its_cli_never_imports_scheduler() -> None:
    back = sorted(f"{src} -> {dst}" for src, targets in GRAPH.items() for dst in targets
                  if src.startswith("campaigns") and not src.startswith("campaigns.cli") and dst.startswith("scheduler"))
    assert back == []


def test_only_the_cli_imports_the_demo() -> None:
    # The demo pulls in the tracking app, the reports and the simulator: a library module that
    # imports it (double opt-in once did, for the shipped templates' folder) ties the whole
    # package into one circle.
    users = sorted(f"{src} -> {dst}" for src, targets in GRAPH.items() for dst in targets
                   if dst.startswith("campaigns.demo") and not src.startswith(("campaigns.cli", "campaigns.demo")))
    assert users == []


def test_channels_import_nothing_from_campaigns() -> None:
    back = sorted(f"{src} -> {dst}" for src, targets in GRAPH.items() for dst in targets
                  if src.startswith("scheduler.channels") and dst.startswith("campaigns"))
    assert back == []


def test_no_project_import_hides_behind_an_import_error_handler() -> None:
    project = tuple(f"{p}." for p in ig.PACKAGES)
    hidden = sorted(f"{i.module}:{i.line} imports {i.target}" for i in IMPORTS
                    if i.guarded and (i.target + ".").startswith(project))
    assert hidden == []


def test_no_circle_between_rooms() -> None:
    # A circle between rooms makes them one room in disguise: the double opt-in ledger once
    # created its own request campaign and tied audience, campaign_defs, messages, segments and
    # triggers into one (campaigns/request_campaigns.py now does that from above).
    assert ig.figures(GRAPH, ig.room).circles == []


def test_the_rules_are_the_ones_the_figures_count() -> None:
    # docs/architecture.md quotes `python -m scripts.import_graph`; its "running back" count is these rules.
    assert ig.figures(GRAPH, ig.room).back_arrows == []


def test_one_smtp_client_the_channel() -> None:
    # `templates send-test` once had its own aiosmtplib client; everything now sends through the channel.
    # smtp_pipelining is the channel's own protocol (aiosmtplib's, with pipelined replies queued).
    clients = sorted({i.module for i in IMPORTS if i.target.split(".")[0] == "aiosmtplib"})
    assert clients == ["scheduler.channels.smtp", "scheduler.channels.smtp_pipelining"]


def test_the_cli_holds_no_sql() -> None:
    # The CLI is a veneer: queries live in the library (campaign_views, scheduler/status, the rooms'
    # own functions), so a script and the CLI read the same thing. A Session may be named in a type.
    sql = sorted(f"{i.module}:{i.line} imports {i.target}" for i in IMPORTS
                 if i.module.startswith("campaigns.cli") and i.target.split(".")[0] == "sqlalchemy"
                 and i.target != "sqlalchemy.orm.Session")
    assert sql == []
