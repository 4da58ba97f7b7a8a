"""What text the store can hold: one rule for every face and service that accepts text."""

from __future__ import annotations


def unstorable_reason(value: str) -> str | None:
    """Why ``value`` cannot be stored, or None when it can.

    Neither database stores a NUL character, and a lone surrogate (which JSON can carry)
    cannot be encoded as UTF-8: both are refused up front rather than failing at the insert.
    """
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text"
    return None


def storable(value: str) -> str:
    """A pydantic ``AfterValidator``: ``value`` unchanged, or ValueError with the reason."""
    reason = unstorable_reason(value)
    if reason:
        raise ValueError(reason)
    return value
