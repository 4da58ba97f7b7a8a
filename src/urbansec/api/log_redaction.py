"""Secrets that travel in URLs never reach the access log.

A reporter's tracking token is part of its URL (``/api/v1/reports/track/{token}``, Open311's
``/tokens/{token}``), and a browser's EventSource can only authenticate with
``?access_token=``; Open311 clients may send ``?api_key=``. Whoever reads uvicorn's access log
could otherwise follow or erase a report, or act as a signed-in user until the token expires.
The filter rewrites the logged path before any handler formats it.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
#: path segments that are secrets: the tracking token (ours and Open311's view of it)
_PATH_SECRET = re.compile(r"(/reports/track/|/open311/v2/tokens/)[^/?.#\s]+")
#: query parameters that are secrets
_QUERY_SECRET = re.compile(r"([?&](?:access_token|api_key|token)=)[^&#\s]*", re.IGNORECASE)


def redact_url(target: str) -> str:
    """``target`` (a path with its query) with the secrets in it replaced."""
    return _QUERY_SECRET.sub(r"\1" + REDACTED, _PATH_SECRET.sub(r"\1" + REDACTED, target))


class RedactSecretsInURLs(logging.Filter):
    """For uvicorn's access logger: its records carry the path as one of their ``args``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact_url(a) if isinstance(a, str) else a
                                for a in record.args)
        return True


def redact_access_log(logger_name: str = "uvicorn.access") -> None:
    """Install the filter once on ``logger_name`` (uvicorn's logging set-up keeps a logger's
    filters, so it holds whether the app is built before or after uvicorn configures it)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactSecretsInURLs) for f in logger.filters):
        logger.addFilter(RedactSecretsInURLs())
