"""Bootstrap and administration commands: organisations, users, API keys, the audit trail.

``urbansec users create-admin`` is how a new deployment gets its first admin; everything else
an admin does later can also be done through the API. The CLI acts as ``SYSTEM`` (``cli`` in
the audit trail): whoever runs it already holds the database.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer
from rich.table import Table

from urbansec.cli import JsonFlag, _print_json, _ready_engine, _run, app, err, out
from urbansec.errors import UsageError

orgs_app = typer.Typer(help="Organisations (partners of the council).", no_args_is_help=True)
users_app = typer.Typer(help="Users who sign in, and their roles.", no_args_is_help=True)
apikeys_app = typer.Typer(help="API keys for organisations' machine clients.",
                          no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
app.add_typer(orgs_app, name="orgs")
app.add_typer(users_app, name="users")
app.add_typer(apikeys_app, name="apikeys")
app.add_typer(audit_app, name="audit")

ROLE_HELP = "admin, analyst, partner or viewer"
PASSWORD_ENV = "URBANSEC_ADMIN_PASSWORD"
EmailOption = Annotated[str, typer.Option("--email", help="Sign-in e-mail address.")]
NameOption = Annotated[str, typer.Option("--name", help="The person's name.")]
PasswordOption = Annotated[str | None, typer.Option(
    "--password", help=f"Password (at least 12 characters; default: ${PASSWORD_ENV}, "
                       "else asked for).", show_default=False)]


def _password(given: str | None) -> str:
    """--password, else the environment, else a hidden prompt (twice) on a terminal."""
    if given:
        return given
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not err.is_terminal:
        raise UsageError(f"give the password with --password or ${PASSWORD_ENV} (no terminal "
                         "to ask on)")
    return typer.prompt("password", hide_input=True, confirmation_prompt=True, err=True)


# --- orgs -------------------------------------------------------------------------------------


@orgs_app.command("add")
def orgs_add(
    key: Annotated[str, typer.Argument(help="Short handle, e.g. police-18.")],
    name: Annotated[str, typer.Argument(help="Full name.")],
    kind: Annotated[str, typer.Option(
        "--kind", help="city, police, partner, ngo, school, business or other")] = "partner",
    as_json: JsonFlag = False,
) -> None:
    """Add an organisation."""

    def action() -> None:
        from urbansec.services import identity

        engine = _ready_engine()
        identity.create_organisation(engine, key, name, kind)
        org = identity.organisation_by_key(engine, key)
        if as_json:
            _print_json(org)
        else:
            out.print(f"added organisation {org['key']} ({org['name']}, {org['kind']}), "
                      f"id {org['id']}", highlight=False)

    _run(action, as_json)


@orgs_app.command("list")
def orgs_list(as_json: JsonFlag = False) -> None:
    """List organisations."""

    def action() -> None:
        from urbansec.services import identity

        orgs = identity.list_organisations(_ready_engine())
        if as_json:
            _print_json(orgs)
            return
        if not orgs:
            out.print("no organisations yet: add one with `urbansec orgs add KEY NAME`")
            return
        table = Table(title_justify="left")
        for column in ("id", "key", "name", "kind"):
            table.add_column(column)
        for o in orgs:
            table.add_row(str(o["id"]), o["key"], o["name"], o["kind"])
        out.print(table)

    _run(action, as_json)


# --- users ------------------------------------------------------------------------------------


@users_app.command("create-admin")
def users_create_admin(
    email: EmailOption, name: NameOption,
    org: Annotated[str, typer.Option(
        "--org", help="Organisation key (created, as kind city, if it does not exist).")
                   ] = "city",
    password: PasswordOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an admin (the first user of a new deployment)."""

    def action() -> None:
        from urbansec.errors import NotFoundError
        from urbansec.services import identity

        engine = _ready_engine()
        secret = _password(password)
        identity.check_password(secret)  # before creating the organisation
        try:
            organisation = identity.organisation_by_key(engine, org)
        except NotFoundError:
            identity.create_organisation(engine, org, org.replace("-", " ").title(), "city")
            organisation = identity.organisation_by_key(engine, org)
        user_id = identity.create_user(engine, organisation["id"], email, name, secret,
                                       "admin")
        user = identity.get_user(engine, user_id)
        if as_json:
            _print_json({**user, "organisation": organisation})
        else:
            out.print(f"created admin {user['email']} (id {user_id}) in organisation "
                      f"{organisation['key']}", highlight=False)

    _run(action, as_json)


@users_app.command("add")
def users_add(
    email: EmailOption, name: NameOption,
    org: Annotated[str, typer.Option("--org", help="Organisation key.")],
    role: Annotated[str, typer.Option("--role", help=ROLE_HELP)],
    password: PasswordOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a user with a role to an organisation."""

    def action() -> None:
        from urbansec.services import identity

        engine = _ready_engine()
        identity.check_role(role)
        secret = _password(password)
        organisation = identity.organisation_by_key(engine, org)
        user_id = identity.create_user(engine, organisation["id"], email, name, secret, role)
        user = identity.get_user(engine, user_id)
        if as_json:
            _print_json(user)
        else:
            out.print(f"added {user['role']} {user['email']} (id {user_id}) to "
                      f"{organisation['key']}", highlight=False)

    _run(action, as_json)


@users_app.command("list")
def users_list(
    org: Annotated[str | None, typer.Option("--org", help="Only this organisation.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List users."""

    def action() -> None:
        from urbansec.services import identity

        engine = _ready_engine()
        org_id = identity.organisation_by_key(engine, org)["id"] if org else None
        users = identity.list_users(engine, org_id)
        if as_json:
            _print_json(users)
            return
        table = Table(title_justify="left")
        for column in ("id", "email", "name", "role", "org id", "active"):
            table.add_column(column)
        for u in users:
            table.add_row(str(u["id"]), u["email"], u["name"], u["role"],
                          str(u["organisation_id"]), "yes" if u["active"] else "no")
        out.print(table)

    _run(action, as_json)


# --- API keys ---------------------------------------------------------------------------------


@apikeys_app.command("create")
def apikeys_create(
    org: Annotated[str, typer.Option("--org", help="Organisation key.")],
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    role: Annotated[str, typer.Option("--role", help=ROLE_HELP)],
    as_json: JsonFlag = False,
) -> None:
    """Create an API key; the key is printed this once (only its hash is kept)."""

    def action() -> None:
        from urbansec.services import identity

        engine = _ready_engine()
        organisation = identity.organisation_by_key(engine, org)
        key_id, plaintext = identity.create_api_key(engine, organisation["id"], name, role)
        if as_json:
            _print_json({"id": key_id, "organisation": organisation["key"], "name": name,
                         "role": role, "key": plaintext})
        else:
            err.print(f"API key {key_id} ({role}) for {organisation['key']}; store it now, it "
                      "is not shown again:", highlight=False)
            out.print(plaintext, highlight=False, soft_wrap=True)

    _run(action, as_json)


# --- audit ------------------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(as_json: JsonFlag = False) -> None:
    """Recompute the audit trail's hash chain; exit 1 if any entry was altered or deleted."""
    broken = False

    def action() -> None:
        nonlocal broken
        from urbansec.services import audit

        result = audit.verify(_ready_engine())
        broken = not result["ok"]
        if as_json:
            _print_json(result)
        elif result["ok"]:
            out.print(f"audit trail intact: {result['entries']:,} entries, last hash "
                      f"{result['last_hash'] or '-'}", highlight=False)
        else:
            err.print(f"[bold red]audit trail broken:[/] {len(result['problems'])} "
                      f"problem(s) in {result['entries']:,} entries", highlight=False)
            for problem in result["problems"]:
                where = "" if problem["id"] is None else f"entry {problem['id']}: "
                err.print(f"  {where}{problem['problem']}", highlight=False)

    _run(action, as_json)
    if broken:
        raise typer.Exit(1)
