"""Import jobs started through the API: an uploaded file imported with a preset, audited.

The import runs synchronously inside the request (one transaction, all or nothing, as on the
command line); the request's body limit bounds its size. The uploaded bytes go to a private
temporary file named only by the upload's *suffix* (the client's file name is never used as a
path), and the report names the file as the client did.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Engine, select

from urbansec.errors import InputFormatError, NotFoundError, UrbansecError, UsageError
from urbansec.services import audit
from urbansec.services.access import Principal, require
from urbansec.services.imports import import_incidents, list_imports, rejected_rows
from urbansec.store import repository as repo
from urbansec.store.engine import write_transaction

SUFFIXES = (".csv.gz", ".geojson.gz", ".csv", ".geojson", ".json")
#: upload presets: ``generic`` needs a column mapping, which the API does not take (yet)
API_PRESETS_EXCLUDED = frozenset({"generic"})


def _suffix(filename: str) -> str:
    name = (filename or "").lower().strip()
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise InputFormatError(f"{filename!r}: unsupported file type; upload one of "
                           f"{', '.join(SUFFIXES)}")


def import_upload(engine: Engine, principal: Principal, *, filename: str, stream: BinaryIO,
                  preset: str) -> dict[str, Any]:
    """Import one uploaded incidents file; returns the ImportReport as a dict.

    The audit entry (action ``import.incidents``) is written after the import commits, with
    the batch ids and counts; a failed import is audited too (``import.failed``) and its error
    re-raised.
    """
    require(principal, "imports:write")
    if preset in API_PRESETS_EXCLUDED:
        raise UsageError(f"the {preset} preset needs a column mapping; import it with the "
                         "command line (urbansec import incidents --preset generic)")
    suffix = _suffix(filename)
    shown = Path(filename).name[:200] or f"upload{suffix}"
    with tempfile.TemporaryDirectory(prefix="urbansec-upload-") as directory:
        # the client's name, reduced to safe characters, so the batch keeps a useful name
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", shown)[:150].lstrip(".") or "upload"
        path = Path(directory) / (safe if safe.lower().endswith(suffix) else safe + suffix)
        with path.open("wb") as handle:
            shutil.copyfileobj(stream, handle, length=1 << 20)
        if path.stat().st_size == 0:
            raise UsageError("the uploaded file is empty")
        try:
            report = import_incidents(engine, [path], preset)
        except UrbansecError as exc:
            with write_transaction(engine) as connection:
                audit.record(connection, principal, "import.failed", target_type="import",
                             details={"file": shown, "preset": preset, "error": exc.message})
            raise
    result = report.as_dict()
    for file in result["files"]:
        file["file"] = shown
    with write_transaction(engine) as connection:
        audit.record(connection, principal, "import.incidents", target_type="import",
                     target_id=",".join(str(f["batch_id"]) for f in result["files"]),
                     details={"file": shown, "preset": preset,
                              "inserted": sum(f["inserted"] for f in result["files"]),
                              "updated": sum(f["updated"] for f in result["files"]),
                              "rejected": sum(f["rejected"] for f in result["files"])})
    return result


def imports(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """The latest import batches, newest first."""
    return [_batch(row) for row in list_imports(engine, limit)]


def import_batch(engine: Engine, batch_id: int, rejected_limit: int = 100) -> dict[str, Any]:
    """One batch with (up to ``rejected_limit``) of its rejected rows."""
    with engine.connect() as connection:
        row = connection.execute(
            select(repo.batches, repo.sources.c.key.label("source_key"))
            .select_from(repo.batches.outerjoin(
                repo.sources, repo.sources.c.id == repo.batches.c.source_id))
            .where(repo.batches.c.id == batch_id)).first()
    if row is None:
        raise NotFoundError(f"no import batch {batch_id}")
    out = _batch(dict(row._mapping))
    out["rejected_rows"] = [
        {"line": r["line_number"], "reason": r["reason"], "raw": (r["raw_line"] or "")[:300]}
        for r in rejected_rows(engine, batch_id, rejected_limit)]
    return out


def _batch(row: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "kind", "preset", "source_key", "file_name", "sha256", "status", "rows_read",
            "rows_inserted", "rows_updated", "rows_unchanged", "rows_rejected",
            "rows_unlocated", "summary", "message", "started_at", "finished_at")
    out = {k: row.get(k) for k in keys}
    # the server-side path of an upload says nothing useful and leaks the temp layout
    out["file_name"] = Path(str(out["file_name"] or "")).name
    return out
