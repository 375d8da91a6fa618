"""`campaigns topics ...`: what campaigns are about, so a contact can leave one and keep the channel."""

from __future__ import annotations

import typer

from campaigns.audience import consent as ledger
from campaigns.audience.contacts import find_contact
from campaigns.audience.topics import create_topic, delete_topic, get_topic, list_topics
from campaigns.cli.common import Channel, CsvOpt, JsonOpt, emit_record, emit_rows, get_app, ok

app = typer.Typer(help="Topics: what campaigns are about; a contact can leave one and keep the channel (docs/tracking.md).",
                  no_args_is_help=True)

ContactArg = typer.Argument(..., help="Email, external_id, +phone or #id.")
SourceOpt = typer.Option(..., "--source", help="Where the person said it (phone call, preference form).")


@app.command("create")
def create_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Lowercase letters, digits, '_' or '-': it becomes the List-Id <NAME.topics.domain>."),
    description: str | None = typer.Option(None, "--description", help="What the recipient gets: shown on the unsubscribe page."),
    as_json: bool = JsonOpt,
) -> None:
    """Create a topic; give campaigns `--topic NAME`."""
    a = get_app(ctx)
    with a.session() as session:
        topic = create_topic(session, name, description)
        record = {"name": topic.name, "description": topic.description}
    if as_json:
        emit_record(record, as_json=True)
        return
    ok(f"topic {name} created: give campaigns `--topic {name}`")


@app.command("list")
def list_cmd(ctx: typer.Context, as_json: bool = JsonOpt, as_csv: bool = CsvOpt) -> None:
    """Every topic, the campaigns on it and how many contacts left it."""
    a = get_app(ctx)
    with a.session(write=False) as session:
        rows = [{"name": t.name, "description": t.description, "campaigns": t.campaigns,
                 "left": ledger.left_count(session, t.id), "created_at": t.created_at} for t in list_topics(session)]
    emit_rows(rows, ["name", "description", "campaigns", "left", "created_at"], title="Topics", as_json=as_json, as_csv=as_csv)


@app.command("delete")
def delete_cmd(ctx: typer.Context, name: str = typer.Argument(...)) -> None:
    """Delete a topic no campaign (archived ones aside) carries and nobody left or rejoined (the ledger keeps its rows)."""
    a = get_app(ctx)
    with a.session() as session:
        delete_topic(session, name)
    ok(f"topic {name} deleted")


@app.command("leave")
def leave_cmd(ctx: typer.Context, contact: str = ContactArg, topic: str = typer.Argument(..., help="The topic's name."),
              source: str = SourceOpt, channel: Channel = typer.Option("email", "--channel", help="Where they said it.")) -> None:
    """Record that a contact left a topic (their channel consent stays)."""
    a = get_app(ctx)
    with a.session() as session:
        c = find_contact(session, contact)
        t = get_topic(session, topic, "TOPIC")
        if not ledger.in_topic(session, c.id, t.id):
            ok(f"{c.email or c.phone} had already left {topic}; nothing recorded")
            return
        ledger.leave_topic(session, c, t.id, channel.value, source)
    ok(f"{c.email or c.phone} left topic {topic}; campaigns about it skip them")


@app.command("join")
def join_cmd(ctx: typer.Context, contact: str = ContactArg, topic: str = typer.Argument(..., help="The topic's name."),
             source: str = SourceOpt, channel: Channel = typer.Option("email", "--channel", help="Where they said it."),
             text: str | None = typer.Option(None, "--text", help="The wording they agreed to.")) -> None:
    """Record that a contact rejoined a topic they had left (channel consent is still needed)."""
    a = get_app(ctx)
    with a.session() as session:
        c = find_contact(session, contact)
        t = get_topic(session, topic, "TOPIC")
        if ledger.in_topic(session, c.id, t.id):
            ok(f"{c.email or c.phone} is in topic {topic}; nothing recorded")
            return
        ledger.join_topic(session, c, t.id, channel.value, source, text)
    ok(f"{c.email or c.phone} rejoined topic {topic}")
