"""Heavy analyses (hot spots, near-repeat, change, forecasts) run in worker processes.

Why not in the API process's thread pool: a Gi* with permutations is a second or more of CPU,
most of it holding the GIL. A few of them in a serving process starve every other request of
that process, and the cheap writes suffer most: a report submission waits for the GIL at each
of its database round trips, holding its connection (and, before the audit chain was appended
at commit, the chain's lock: measured with ``benchmarks/load.py``, 27 connections waiting on
it while its holder sat "idle in transaction"). In worker processes the analyses share the
CPUs with the requests but not their interpreter, at a lower CPU priority (``nice``), so that
a submission is scheduled as soon as its database answers. Their number is bounded: one
analysis process per API process by default, so ``urbansec serve --workers N`` scales both
together and the memory stays bounded; more analyses wait in the pool's queue, holding no
thread and no connection.

The function run must be importable by name (a module-level function) and takes the database
as its first argument: the engine's URL in a worker process (each worker keeps one engine per
URL), or the engine itself when another process could not open it (SQLite in memory), in which
case it runs in a thread, at most ``processes`` at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from urbansec.errors import UrbansecError

T = TypeVar("T")

#: added to the analysis processes' nice value: requests win the CPU when both want it
ANALYSIS_NICENESS = 10


class AnalysisUnavailableError(UrbansecError):
    """The worker process running an analysis died (killed, out of memory)."""

    http_status = 503
    code = "analysis_unavailable"


def shareable_url(engine: Engine) -> str | None:
    """The URL another process can open to reach the same database, or None (in memory)."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or url.query.get("mode") == "memory":
            return None
    return url.render_as_string(hide_password=False)


def engine_of(database: Engine | str) -> Engine:
    """The engine for an analysis' first argument (an engine, or a URL in a worker)."""
    if isinstance(database, Engine):
        return database
    from urbansec.store.engine import engine_for

    return engine_for(database)


def _start_analysis_process() -> None:
    with contextlib.suppress(OSError):  # not permitted: still correct, just less polite
        os.nice(ANALYSIS_NICENESS)
    # Ctrl+C reaches the whole process group: the API process shuts its pool down itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class AnalysisPool:
    """At most ``processes`` analyses at a time, in worker processes started on first use."""

    def __init__(self, processes: int = 1) -> None:
        if processes < 1:
            raise ValueError(f"an analysis pool needs at least one process, not {processes}")
        self.processes = processes
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._in_thread = threading.BoundedSemaphore(self.processes)

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                # spawn: the API process runs threads, and fork would copy their locks
                self._executor = ProcessPoolExecutor(
                    self.processes, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start_analysis_process)
            return self._executor

    def _discard(self, executor: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is executor:
                self._executor = None
        executor.shutdown(wait=False, cancel_futures=True)

    def shutdown(self, *, terminate: bool = False) -> None:
        """Stop the workers (the pool starts new ones on its next use). ``terminate``: end
        the analyses still running instead of waiting for them: the server is stopping and
        nobody will read their answers (waiting could outlast the stop's grace period; the
        server would then be killed and leave its workers computing, orphaned)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is None:
            return
        if terminate:
            # ProcessPoolExecutor has no public way to end its workers before Python 3.14
            for process in list(getattr(executor, "_processes", {}).values()):
                with contextlib.suppress(Exception):
                    process.terminate()
        executor.shutdown(wait=True, cancel_futures=True)

    def _bounded(self, function: Callable[..., T], engine: Engine, kwargs: dict[str, Any]
                 ) -> T:
        with self._in_thread:
            return function(engine, **kwargs)

    async def run(self, engine: Engine, function: Callable[..., T], /, **kwargs: Any) -> T:
        """``function(database, **kwargs)`` in a worker process; its exceptions (domain
        errors included) are raised here."""
        url = shareable_url(engine)
        if url is None:
            return await run_in_threadpool(self._bounded, function, engine, kwargs)
        executor = self._pool()
        try:
            future = executor.submit(functools.partial(function, url, **kwargs))
        except BrokenProcessPool:
            # a worker died since the last analysis: start afresh once
            self._discard(executor)
            executor = self._pool()
            future = executor.submit(functools.partial(function, url, **kwargs))
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool as exc:
            self._discard(executor)
            raise AnalysisUnavailableError(
                "the process running this analysis stopped (it may have run out of memory); "
                "try again, or ask for less (larger cells, fewer permutations, a smaller "
                "area)") from exc


#: the API process's pool (each uvicorn worker process has its own)
ANALYSES = AnalysisPool()
