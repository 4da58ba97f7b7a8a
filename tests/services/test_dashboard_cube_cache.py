"""The saved event cube (one file per database and data version), on SQLite and PostgreSQL.

A "restarted server" is a new engine on the same database with a new ``CubeCache``: it must
load the file and answer exactly as a fresh build does; a file of other data (another data
version, even under the current version's name), or a corrupt one, must never be served;
the files hold no pickles; an import leads to a new file, and old ones are pruned.
"""

from __future__ import annotations

import gzip
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine

from urbansec.config import get_settings
from urbansec.services import dashboard, dashboard_cube
from urbansec.services.access import Principal
from urbansec.services.aggregates import Privacy
from urbansec.services.dashboard_cube import (
    _COLUMNS,
    CUBE_FILE_MAX_AGE_SECONDS,
    CUBE_FILES_KEPT,
    CubeCache,
    CubeFileError,
    EventCube,
    cache_for,
    cube_file,
    data_fingerprint,
    data_version,
    database_key,
    default_cube_directory,
    invalidate,
    load_cube,
)
from urbansec.services.imports import import_incidents
from urbansec.store.engine import make_engine

ANALYST = Privacy.for_principal(Principal("user", 1, 1, "analyst"), 5, 250.0)

VIEWS: list[dict[str, Any]] = [
    {},
    {"category": "05"},
    {"category": "0502,0201", "time": "night"},
    {"start": "2017-03-01", "end": "2017-05-31", "time": "08:00-18:00"},
    {"area": "district:18", "layer": "kde"},
    {"area": "beat:1822", "category": "05", "layer": "gi"},
    {"category": "02", "start": "2017-07-01", "end": "2017-07-31", "area": "district:1",
     "layer": "gi", "cell": 150.0},
]


@pytest.fixture
def cube_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``URBANSEC_CUBE_CACHE_DIR`` set to a fresh directory (as a deployment would), and
    every cube saved however fast it was built (these test databases are small)."""
    directory = tmp_path / "cubes"
    monkeypatch.setenv("URBANSEC_CUBE_CACHE_DIR", str(directory))
    monkeypatch.setattr(dashboard_cube, "CUBE_FILE_MIN_BUILD_SECONDS", 0.0)
    get_settings.cache_clear()
    yield directory
    monkeypatch.undo()
    get_settings.cache_clear()


def _reopen(engine: Engine) -> Engine:
    """A second engine on the same database: what a restarted server opens."""
    return make_engine(engine.url.render_as_string(hide_password=False))


def _answers(engine: Engine) -> list[Any]:
    """Everything the map page asks for, timings left out."""
    out: list[Any] = [dashboard.taxonomy(engine, ANALYST)]
    config = dashboard.dashboard_config(engine, get_settings())
    out.append(config)
    for query in VIEWS:
        view = dashboard.view(engine, dashboard.ViewRequest(**query), ANALYST)
        view.pop("elapsed_ms")
        out.append(view)
    return out


def _assert_same_cube(loaded: EventCube, built: EventCube) -> None:
    assert loaded.version == built.version
    assert (loaded.crs, loaded.timezone) == (built.crs, built.timezone)
    for name in _COLUMNS:
        a, b = getattr(loaded, name), getattr(built, name)
        assert a.dtype == b.dtype, name
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), name
    assert loaded.categories == built.categories
    assert loaded.areas.keys() == built.areas.keys()
    for kind, column in built.areas.items():
        other = loaded.areas[kind]
        assert (other.labels, other.by_codes) == (column.labels, column.by_codes)
        assert np.array_equal(other.codes, column.codes)
    assert loaded.area_geometries.keys() == built.area_geometries.keys()
    for key, geometry in built.area_geometries.items():
        assert loaded.area_geometries[key].equals_exact(geometry, 0.0), key


def _files(directory: Path) -> list[Path]:
    return sorted(directory.glob("cube-*.npz"))


def _saved(cache: CubeCache) -> None:
    assert cache.saving is not None
    cache.saving.join(timeout=60)
    assert not cache.saving.is_alive()


def _current_file(engine: Engine, directory: Path) -> Path:
    database = database_key(engine)
    assert database is not None
    return cube_file(directory, database, data_fingerprint(engine, data_version(engine)))


def _import(engine: Engine, path: Path, header: str, lines: list[str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as handle:
        handle.write("\r\n".join([header, *lines]) + "\r\n")
    import_incidents(engine, [path], "chicago")


def test_restarted_server_loads_the_file_and_answers_as_a_build(sample_db: Engine,
                                                                 cube_dir: Path) -> None:
    first = _reopen(sample_db)
    second = _reopen(sample_db)
    try:
        cache = cache_for(first)
        assert cache.directory == cube_dir
        built_answers = _answers(first)
        assert cache.source == "built"
        _saved(cache)
        assert _files(cube_dir) == [_current_file(first, cube_dir)]

        restarted = cache_for(second)
        loaded_answers = _answers(second)
        assert restarted.source == "loaded"
        assert restarted.saving is None  # a loaded cube is not written again
        built, loaded = cache.peek(), restarted.peek()
        assert built is not None and loaded is not None
        _assert_same_cube(loaded, built)
        assert loaded_answers == built_answers
        assert loaded_answers[2]["total"] == len(built) > 0
    finally:
        first.dispose()
        second.dispose()


def test_files_hold_no_pickles(sample_db: Engine, tmp_path: Path) -> None:
    cache = CubeCache(directory=tmp_path, min_build_seconds=0)
    cache.get(sample_db)
    _saved(cache)
    (path,) = _files(tmp_path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert "categories.npy" in names and "geometry_wkb.npy" in names
        for name in names:
            with archive.open(name) as member:
                version = np.lib.format.read_magic(member)
                header = (np.lib.format.read_array_header_1_0(member) if version == (1, 0)
                          else np.lib.format.read_array_header_2_0(member))
                assert not header[2].hasobject, name
    with np.load(path, allow_pickle=False) as saved:  # every member readable without them
        assert all(saved[name].size >= 0 for name in saved.files)


def test_a_changed_data_version_ignores_the_old_file(
        db: Engine, tmp_path: Path, chicago_header: str, chicago_lines: list[str]) -> None:
    directory = tmp_path / "cubes"
    _import(db, tmp_path / "a.csv.gz", chicago_header, chicago_lines[:80])
    cache = CubeCache(directory=directory, min_build_seconds=0)
    assert len(cache.get(db)) == 80
    _saved(cache)
    (old,) = _files(directory)

    _import(db, tmp_path / "b.csv.gz", chicago_header, chicago_lines[80:140])
    restarted = CubeCache(directory=directory, min_build_seconds=0)
    assert len(restarted.get(db)) == 140
    assert restarted.source == "built"
    _saved(restarted)
    new = _current_file(db, directory)
    assert new != old and _files(directory) == sorted([old, new])

    # the old data under the current version's name (copied, renamed): refused by what the
    # file says it holds, never served
    new.write_bytes(old.read_bytes())
    database = database_key(db)
    assert database is not None
    with pytest.raises(CubeFileError, match="other data"):
        load_cube(new, database, data_fingerprint(db, data_version(db)))
    misnamed = CubeCache(directory=directory, min_build_seconds=0)
    assert len(misnamed.get(db)) == 140
    assert misnamed.source == "built"
    _saved(misnamed)
    assert len(load_cube(new, database, data_fingerprint(db, data_version(db)))) == 140

    # a third version: only the newest CUBE_FILES_KEPT files of this database stay
    _import(db, tmp_path / "c.csv.gz", chicago_header, chicago_lines[140:200])
    third = CubeCache(directory=directory, min_build_seconds=0)
    assert len(third.get(db)) == 200
    _saved(third)
    assert len(_files(directory)) == CUBE_FILES_KEPT
    assert _current_file(db, directory) in _files(directory)
    assert old not in _files(directory)


def test_unused_files_of_any_database_are_deleted(db: Engine, tmp_path: Path,
                                                  chicago_header: str,
                                                  chicago_lines: list[str]) -> None:
    directory = tmp_path / "cubes"
    directory.mkdir()
    gone = directory / "cube-0123456789abcdef-0123456789abcdef.npz"  # a database long gone
    recent = directory / "cube-fedcba9876543210-0123456789abcdef.npz"  # one still in use
    for path in (gone, recent):
        path.write_bytes(b"PK")
    month_ago = time.time() - CUBE_FILE_MAX_AGE_SECONDS - 60
    os.utime(gone, (month_ago, month_ago))
    _import(db, tmp_path / "a.csv.gz", chicago_header, chicago_lines[:30])
    cache = CubeCache(directory=directory, min_build_seconds=0)
    cache.get(db)
    _saved(cache)
    assert not gone.exists() and recent.exists()
    assert _current_file(db, directory).exists()

    # loading a file marks it as used
    current = _current_file(db, directory)
    os.utime(current, (month_ago, month_ago))
    restarted = CubeCache(directory=directory, min_build_seconds=0)
    restarted.get(db)
    assert restarted.source == "loaded"
    assert time.time() - current.stat().st_mtime < 600


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_corrupt_file_falls_back_to_a_build_and_is_replaced(
        db: Engine, tmp_path: Path, chicago_header: str, chicago_lines: list[str],
        damage: str) -> None:
    directory = tmp_path / "cubes"
    _import(db, tmp_path / "a.csv.gz", chicago_header, chicago_lines[:120])
    cache = CubeCache(directory=directory, min_build_seconds=0)
    built = cache.get(db)
    _saved(cache)
    (path,) = _files(directory)
    content = path.read_bytes()
    path.write_bytes({"truncated": content[:len(content) // 2],
                      "garbage": bytes(range(256)) * 64, "empty": b""}[damage])

    restarted = CubeCache(directory=directory, min_build_seconds=0)
    rebuilt = restarted.get(db)
    assert restarted.source == "built"
    _assert_same_cube(rebuilt, built)
    _saved(restarted)
    assert _files(directory) == [path]
    assert path.read_bytes()[:2] == b"PK"  # a whole zip again, loaded below

    again = CubeCache(directory=directory, min_build_seconds=0)
    _assert_same_cube(again.get(db), built)
    assert again.source == "loaded"


def test_invalidate_after_an_import_leads_to_a_new_file(
        db: Engine, tmp_path: Path, cube_dir: Path, chicago_header: str,
        chicago_lines: list[str]) -> None:
    _import(db, tmp_path / "a.csv.gz", chicago_header, chicago_lines[:100])
    cache = cache_for(db)
    assert len(cache.get(db)) == 100
    _saved(cache)
    (first,) = _files(cube_dir)
    first_save = cache.saving

    # import_incidents calls invalidate(engine): the cube is rebuilt in the background
    _import(db, tmp_path / "b.csv.gz", chicago_header, chicago_lines[100:200])
    invalidate(db)  # as a second writer would; the rebuild runs once more at most
    assert cache._warming is not None
    cache._warming.join(timeout=60)
    assert cache.saving is not first_save
    _saved(cache)
    second = _current_file(db, cube_dir)
    assert second != first and second.is_file()

    restarted_engine = _reopen(db)
    try:
        restarted = cache_for(restarted_engine)
        assert len(restarted.get(restarted_engine)) == 200
        assert restarted.source == "loaded"
    finally:
        restarted_engine.dispose()


def test_the_setting_places_or_turns_off_the_files(db: Engine, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("URBANSEC_CUBE_CACHE_DIR", str(tmp_path / "elsewhere"))
    get_settings.cache_clear()
    try:
        assert default_cube_directory() == tmp_path / "elsewhere"
        monkeypatch.setenv("URBANSEC_CUBE_CACHE_DIR", "")
        get_settings.cache_clear()
        assert default_cube_directory() is None
        cache = CubeCache(min_build_seconds=0)
        cache.get(db)
        assert cache.saving is None and cache.source == "built"
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_database_keys_hide_the_password_and_tell_databases_apart(tmp_path: Path) -> None:
    one = make_engine(f"sqlite:///{tmp_path / 'one.db'}")
    two = make_engine(f"sqlite:///{tmp_path / 'two.db'}")
    memory = make_engine("sqlite://")
    try:
        assert database_key(one) != database_key(two)
        assert database_key(memory) is None  # nothing another process could share
    finally:
        for engine in (one, two, memory):
            engine.dispose()
    from sqlalchemy import create_engine

    with_password = create_engine("postgresql+psycopg://u:secret@127.0.0.1/x")
    other_password = create_engine("postgresql+psycopg://u:other@127.0.0.1/x")
    assert database_key(with_password) == database_key(other_password)


def test_quickly_built_cubes_are_not_saved(db: Engine, tmp_path: Path, chicago_header: str,
                                           chicago_lines: list[str]) -> None:
    """A file is only worth writing when building is slow (not the many small databases of
    tests and demos); the default threshold is at least the bundled sample's build."""
    _import(db, tmp_path / "a.csv.gz", chicago_header, chicago_lines[:50])
    directory = tmp_path / "cubes"
    cache = CubeCache(directory=directory)
    assert cache.min_build_seconds == dashboard_cube.CUBE_FILE_MIN_BUILD_SECONDS >= 0.5
    cube = cache.get(db)
    assert cube.build_seconds < cache.min_build_seconds  # 50 incidents: milliseconds
    assert cache.saving is None and not directory.exists()
