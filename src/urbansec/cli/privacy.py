"""Privacy commands: ``urbansec privacy purge`` applies the retention rule for reporters'
contact details (``URBANSEC_CONTACT_RETENTION_DAYS``, default 180) and deletes sign-in tokens
expired or revoked more than a day ago. Run it daily (cron or a systemd timer). The CLI acts
as ``SYSTEM`` (``cli`` in the audit trail)."""

from __future__ import annotations

from typing import Annotated

import typer

from urbansec.cli import JsonFlag, _print_json, _ready_engine, _run, app, out
from urbansec.config import get_settings

privacy_app = typer.Typer(help="Privacy: retention of personal data.", no_args_is_help=True)
app.add_typer(privacy_app, name="privacy")


@privacy_app.command("purge")
def purge_command(
    older_than: Annotated[int | None, typer.Option(
        "--older-than", min=0, metavar="DAYS",
        help="Erase contact details of reports submitted more than DAYS ago (default: "
             "URBANSEC_CONTACT_RETENTION_DAYS).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Erase reporters' contact details (and the unredacted text) after the retention period,
    and delete sign-in tokens that expired or were revoked more than a day ago."""

    def action() -> None:
        from urbansec.services.identity import purge_expired_tokens
        from urbansec.services.reports import purge_contacts

        settings = get_settings()
        days = settings.contact_retention_days if older_than is None else older_than
        engine = _ready_engine()
        count = purge_contacts(engine, older_than_days=days, settings=settings)
        tokens = purge_expired_tokens(engine)
        if as_json:
            _print_json({"older_than_days": days, "reports_purged": count,
                         "tokens_purged": tokens})
        else:
            out.print(f"erased the contact details of [bold]{count:,}[/] report"
                      f"{'' if count == 1 else 's'} submitted more than {days} days ago")
            out.print(f"deleted [bold]{tokens:,}[/] expired or revoked sign-in token"
                      f"{'' if tokens == 1 else 's'}")

    _run(action, as_json)
