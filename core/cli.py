"""Flask CLI commands for the schema and API tokens."""

from __future__ import annotations

import click
from flask import Flask

from core import auth
from core.db import database, migrate_database, optimize_database
from core.emails import normalize_email
from core.models import ApiToken
from core.timeutil import isoformat


def init_app(app: Flask) -> None:
    app.cli.add_command(init_db)
    app.cli.add_command(create_token)
    app.cli.add_command(list_tokens)
    app.cli.add_command(revoke_token)


@click.command("init-db")
def init_db() -> None:
    """Create the schema or apply pending migrations; safe to run again."""
    with database.connection_context():
        applied = migrate_database()
        optimize_database()
    if applied:
        click.echo(f"Applied migrations: {', '.join(applied)}")
    else:
        click.echo("The schema is up to date.")


@click.command("create-token")
@click.argument("email")
@click.option(
    "--service",
    is_flag=True,
    help="Let the token act for other people, as integrations need.",
)
def create_token(email: str, service: bool) -> None:
    """Print a new API token for EMAIL. It is shown only once."""
    try:
        address = normalize_email(email)
    except ValueError:
        address = ""
    if not address:
        raise click.BadParameter(
            f"{email!r} is not an email address; pass one such as alice@example.com",
            param_hint="EMAIL",
        )
    with database.connection_context():
        row, secret = auth.create_token(address, service=service)
    kind = "service token" if service else "token"
    click.echo(f"Created {kind} {row.id} for {address}. Keep it secret:", err=True)
    click.echo(secret)


@click.command("list-tokens")
def list_tokens() -> None:
    """List tokens: id, email, kind, prefix, created, last used, revoked."""
    with database.connection_context():
        rows = list(ApiToken.select().order_by(ApiToken.id))
    for row in rows:
        kind = "service" if row.is_service else "user"
        click.echo(
            f"{row.id}\t{row.email}\t{kind}\t{row.prefix}...\t{isoformat(row.created_at)}"
            f"\tlast used {isoformat(row.last_used_at) or 'never'}"
            f"\t{'revoked ' + isoformat(row.revoked_at) if row.revoked_at else 'active'}"
        )


@click.command("revoke-token")
@click.argument("token_id", type=int)
def revoke_token(token_id: int) -> None:
    """Revoke the token with id TOKEN_ID (see list-tokens)."""
    with database.connection_context():
        revoked = auth.revoke_token(token_id)
    if not revoked:
        raise click.ClickException(
            f"No active token has id {token_id}; run list-tokens to see the ids."
        )
    click.echo(f"Revoked token {token_id}.")
