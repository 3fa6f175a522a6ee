"""`legato keys`: the API keys `legato serve` accepts (create, list, revoke)."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.table import Table

from legato.cli.options import AtOption, DatabaseOption, JsonOption, engine_for, now_at
from legato.cli.output import console, emit_json, errors
from legato.store.status import KeyRole

keys_app = typer.Typer(help="API keys for `legato serve`: create (shown once), list, revoke.", no_args_is_help=True)
ByOption = Annotated[str | None, typer.Option("--by", help="Who makes the change, for the audit log; default the login name.")]


def _by(by: str | None) -> str:
    return by or getpass.getuser() or "cli"


@keys_app.command("create")
def create_command(
    name: Annotated[str, typer.Option("--name", help="Who or what uses the key; a reviewer's actions are recorded under it.")],
    role: Annotated[KeyRole, typer.Option("--role", help="viewer, marketer, reviewer, admin, or ingest (a Segment write key).")],
    by: ByOption = None,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a key and print it once: it is stored only as a hash and cannot be shown again.

    Example: `legato keys create --name ana --role reviewer`
    """
    from legato.service import keys

    key, secret = keys.create(engine_for(database), name, role, by=_by(by), now=now_at(at))
    if as_json:
        emit_json({"name": key.name, "role": key.role.value, "key": secret})
        return
    console.print(secret, markup=False, highlight=False)
    errors.print(f"key {key.name!r} ({key.role.value}) created; it is shown only now: keep it somewhere safe", highlight=False)


@keys_app.command("list")
def list_command(
    revoked: Annotated[bool, typer.Option("--revoked", help="Also list revoked keys.")] = False,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """The keys by name, role and prefix (never the key itself)."""
    from legato.service import keys

    found = keys.list_keys(engine_for(database), include_revoked=revoked)
    if as_json:
        emit_json({"keys": [key.to_dict() for key in found]})
        return
    if not found:
        console.print("no keys; make one with `legato keys create --name NAME --role ROLE`")
        return
    table = Table("name", "role", "prefix", "created", "by", "revoked")
    for key in found:
        table.add_row(key.name, key.role.value, key.prefix + "…", f"{key.created_at:%Y-%m-%d %H:%M}", key.created_by,
                      f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "")
    console.print(table)


@keys_app.command("revoke")
def revoke_command(
    name: Annotated[str, typer.Argument(help="The key's name.")],
    by: ByOption = None,
    at: AtOption = None,
    database: DatabaseOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a key: the server refuses it from the next request on."""
    from legato.service import keys

    key = keys.revoke(engine_for(database), name, by=_by(by), now=now_at(at))
    if as_json:
        emit_json(key.to_dict())
        return
    console.print(f"[green]✓[/] revoked {key.name!r} ({key.role.value})")
