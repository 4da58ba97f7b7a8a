"""Identity: organisations, users, sign-in tokens and API keys.

- Passwords are hashed with argon2id (argon2-cffi's defaults) and must be at least
  ``MIN_PASSWORD_LENGTH`` characters; nothing else is imposed (length beats composition rules).
- Bearer tokens are opaque random strings (``secrets.token_urlsafe(32)``); only their SHA-256
  is stored, with an expiry. An access token lives ``settings.access_token_minutes``, a refresh
  token ``settings.refresh_token_days``; refreshing revokes the refresh token used (rotation),
  so a stolen refresh token works at most once.
- API keys look like ``usk_<prefix>_<secret>``: the prefix (stored in clear) lets an admin
  recognise a key in the list; only the SHA-256 of the whole key is stored. Each key carries
  its own role and may expire; revoked or expired keys are refused.
- Unknown, expired and revoked credentials raise ``AuthenticationError`` (401), never fall back
  to anonymous. Every sign-in, success or failure, is audited (the e-mail, never the password);
  an unknown e-mail still costs one argon2 verification so timing does not reveal accounts.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from urbansec.config import Settings, get_settings
from urbansec.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    UsageError,
)
from urbansec.privacy.ratelimit import SlidingWindowLimiter, limiter_for
from urbansec.services import audit
from urbansec.services.access import ROLES, SYSTEM, Principal
from urbansec.store.collaboration import ApiKey, AuthToken, Organisation, User
from urbansec.store.engine import write_transaction

ORGS = Organisation.__table__
USERS = User.__table__
KEYS = ApiKey.__table__
TOKENS = AuthToken.__table__

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 takes any length; this bounds the work a request can cause
ORGANISATION_KINDS = ("city", "police", "partner", "ngo", "school", "business", "other")
API_KEY_PREFIX = "usk"
# an API key's last_used_at is refreshed at most this often: a write per request would
# serialise every machine client on SQLite for a timestamp nobody needs to the second
LAST_USED_RESOLUTION = timedelta(minutes=1)

_KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# no spaces or control characters (the classes are spelt out: Python's, Rust's and
# ECMAScript's \s differ, and the API schema uses the same pattern)
EMAIL_PATTERN = r"^[^@\s\x00-\x20\x7f-\xa0]{1,64}@[^@\s\x00-\x20\x7f-\xa0]{1,255}$"
_EMAIL_RE = re.compile(EMAIL_PATTERN)

_hasher = PasswordHasher()


def _now() -> datetime:
    return datetime.now(UTC)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # verified against when the e-mail is unknown, so both paths cost one argon2 verification
    return _hasher.hash(secrets.token_urlsafe(16))


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def normalise_email(email: str) -> str:
    value = (email or "").strip().lower()
    if not _EMAIL_RE.match(value) or len(value) > 320:
        raise UsageError(f"not an e-mail address: {email!r}")
    return value


def check_password(password: str) -> None:
    """Raise UsageError unless ``password`` meets the policy (length only)."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UsageError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    return role


def _check_name(name: str, what: str, limit: int) -> str:
    value = (name or "").strip()
    if not value:
        raise UsageError(f"give the {what} a name")
    if len(value) > limit:
        raise UsageError(f"the {what}'s name must have at most {limit} characters")
    return value


# --------------------------------------------------------------------------------------------
# organisations
# --------------------------------------------------------------------------------------------


def _organisation_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "key": row.key, "name": row.name, "kind": row.kind,
            "created_at": row.created_at}


def create_organisation(engine: Engine, key: str, name: str, kind: str = "partner", *,
                        principal: Principal = SYSTEM) -> int:
    """Add an organisation; ``key`` is a short lower-case handle (``city``, ``police-18``)."""
    key = (key or "").strip()
    if not _KEY_RE.match(key):
        raise UsageError(f"organisation key {key!r}: use 1-64 lower-case letters, digits, "
                         "'-' or '_', starting with a letter or digit")
    name = _check_name(name, "organisation", 300)
    if kind not in ORGANISATION_KINDS:
        raise UsageError(f"unknown organisation kind {kind!r}: use one of "
                         f"{', '.join(ORGANISATION_KINDS)}")
    with write_transaction(engine) as connection:
        if connection.execute(select(ORGS.c.id).where(ORGS.c.key == key)).first():
            raise ConflictError(f"an organisation with key {key!r} already exists")
        try:
            new_id = connection.execute(ORGS.insert().values(
                key=key, name=name, kind=kind, created_at=_now()).returning(ORGS.c.id)
            ).scalar_one()
        except IntegrityError as exc:  # a concurrent create won the race
            raise ConflictError(f"an organisation with key {key!r} already exists") from exc
        audit.record(connection, principal, "organisation.create", target_type="organisation",
                     target_id=new_id, details={"key": key, "name": name, "kind": kind})
    return int(new_id)


def list_organisations(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [_organisation_dict(r) for r in
                connection.execute(select(ORGS).order_by(ORGS.c.key))]


def organisation_by_key(engine: Engine, key: str) -> dict[str, Any]:
    with engine.connect() as connection:
        row = connection.execute(select(ORGS).where(ORGS.c.key == key)).first()
    if row is None:
        raise NotFoundError(f"no organisation with key {key!r} (see `urbansec orgs list`)")
    return _organisation_dict(row)


def _require_organisation(connection: Any, organisation_id: int) -> None:
    if connection.execute(select(ORGS.c.id).where(ORGS.c.id == organisation_id)).first() \
            is None:
        raise NotFoundError(f"no organisation with id {organisation_id}")


# --------------------------------------------------------------------------------------------
# users
# --------------------------------------------------------------------------------------------

_USER_COLUMNS = (USERS.c.id, USERS.c.organisation_id, USERS.c.email, USERS.c.name, USERS.c.role,
                 USERS.c.active, USERS.c.created_at, USERS.c.last_login_at)


def _user_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "organisation_id": row.organisation_id, "email": row.email,
            "name": row.name, "role": row.role, "active": bool(row.active),
            "created_at": row.created_at, "last_login_at": row.last_login_at}


def create_user(engine: Engine, organisation_id: int, email: str, name: str, password: str,
                role: str, *, principal: Principal = SYSTEM) -> int:
    """Add a person who signs in with ``email`` and ``password``; returns the user's id."""
    email = normalise_email(email)
    name = _check_name(name, "user", 300)
    check_role(role)
    check_password(password)
    password_hash = _hasher.hash(password)  # slow on purpose: outside the write lock
    with write_transaction(engine) as connection:
        _require_organisation(connection, organisation_id)
        if connection.execute(select(USERS.c.id).where(USERS.c.email == email)).first():
            raise ConflictError(f"a user with e-mail {email} already exists")
        try:
            new_id = connection.execute(USERS.insert().values(
                organisation_id=organisation_id, email=email, name=name,
                password_hash=password_hash, role=role, active=True, created_at=_now(),
            ).returning(USERS.c.id)).scalar_one()
        except IntegrityError as exc:  # a concurrent create won the race
            raise ConflictError(f"a user with e-mail {email} already exists") from exc
        audit.record(connection, principal, "user.create", target_type="user",
                     target_id=new_id, details={"email": email, "role": role,
                                                "organisation_id": organisation_id})
    return int(new_id)


def list_users(engine: Engine, organisation_id: int | None = None) -> list[dict[str, Any]]:
    query = select(*_USER_COLUMNS).order_by(USERS.c.id)
    if organisation_id is not None:
        query = query.where(USERS.c.organisation_id == organisation_id)
    with engine.connect() as connection:
        return [_user_dict(r) for r in connection.execute(query)]


def get_user(engine: Engine, user_id: int) -> dict[str, Any]:
    with engine.connect() as connection:
        row = connection.execute(select(*_USER_COLUMNS).where(USERS.c.id == user_id)).first()
    if row is None:
        raise NotFoundError(f"no user with id {user_id}")
    return _user_dict(row)


def update_user(engine: Engine, user_id: int, *, role: str | None = None,
                active: bool | None = None, name: str | None = None,
                password: str | None = None, principal: Principal = SYSTEM) -> dict[str, Any]:
    """Change a user's role, active flag, name or password. Deactivating a user, changing the
    role or the password revokes the user's tokens (the next request signs in afresh)."""
    changes: dict[str, Any] = {}
    if role is not None:
        changes["role"] = check_role(role)
    if active is not None:
        changes["active"] = bool(active)
    if name is not None:
        changes["name"] = _check_name(name, "user", 300)
    if password is not None:
        check_password(password)
        changes["password_hash"] = _hasher.hash(password)
    with write_transaction(engine) as connection:
        row = connection.execute(select(*_USER_COLUMNS).where(USERS.c.id == user_id)).first()
        if row is None:
            raise NotFoundError(f"no user with id {user_id}")
        if (principal.kind == "user" and principal.id == user_id
                and (changes.get("active") is False or changes.get("role", "admin") != "admin")):
            # an admin locking themselves out would leave the platform without an admin
            raise ConflictError("you cannot deactivate yourself or drop your own admin role")
        if changes:
            connection.execute(update(USERS).where(USERS.c.id == user_id).values(**changes))
            if {"role", "password_hash"} & changes.keys() or changes.get("active") is False:
                _revoke_user_tokens(connection, user_id)
            logged = {k: v for k, v in changes.items() if k != "password_hash"}
            if "password_hash" in changes:
                logged["password"] = "changed"
            audit.record(connection, principal, "user.update", target_type="user",
                         target_id=user_id, details={
                             "changes": logged,
                             "before": {k: getattr(row, k) for k in ("role", "active", "name")
                                        if k in changes}})
    return get_user(engine, user_id)


def _revoke_user_tokens(connection: Any, user_id: int) -> None:
    connection.execute(update(TOKENS).where(TOKENS.c.user_id == user_id,
                                            TOKENS.c.revoked_at.is_(None))
                       .values(revoked_at=_now()))


# --------------------------------------------------------------------------------------------
# tokens
# --------------------------------------------------------------------------------------------


def purge_expired_tokens(engine: Engine, *, older_than_days: int = 1) -> int:
    """Delete tokens that expired or were revoked more than ``older_than_days`` ago (a
    sign-in history is personal data, kept no longer than it serves); returns how many.
    A deleted token is refused like an unknown one, so nothing that worked stops working."""
    if older_than_days < 0:
        raise UsageError("older_than_days must be >= 0")
    cutoff = _now() - timedelta(days=older_than_days)
    with write_transaction(engine) as connection:
        deleted = connection.execute(TOKENS.delete().where(
            (TOKENS.c.expires_at < cutoff) | (TOKENS.c.revoked_at < cutoff))).rowcount
        if deleted:
            audit.record(connection, SYSTEM, "auth.tokens_purged",
                         details={"tokens": deleted, "older_than_days": older_than_days})
    return int(deleted)


def _insert_tokens(connection: Any, user_id: int, settings: Settings) -> dict[str, Any]:
    now = _now()
    access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    lifetime = timedelta(minutes=settings.access_token_minutes)
    connection.execute(TOKENS.insert(), [
        {"user_id": user_id, "kind": "access", "token_hash": _sha256(access),
         "created_at": now, "expires_at": now + lifetime, "revoked_at": None},
        {"user_id": user_id, "kind": "refresh", "token_hash": _sha256(refresh),
         "created_at": now, "expires_at": now + timedelta(days=settings.refresh_token_days),
         "revoked_at": None},
    ])
    return {"access_token": access, "refresh_token": refresh, "token_type": "bearer",
            "expires_in": int(lifetime.total_seconds())}


def _login_limiters(engine: Engine, settings: Settings
                    ) -> tuple[SlidingWindowLimiter, SlidingWindowLimiter]:
    scope = "login:" + engine.url.render_as_string(hide_password=True)
    window = settings.login_failure_window_seconds
    return (limiter_for(scope + ":account", settings.login_failure_limit, window),
            limiter_for(scope + ":address", settings.login_failure_address_limit, window))


def _check_login_throttle(engine: Engine, settings: Settings, address: str,
                          client_address: str | None) -> None:
    account, by_address = _login_limiters(engine, settings)
    wait = max(account.check(address),
               by_address.check(client_address) if client_address else 0.0)
    if wait > 0:
        retry = max(1, math.ceil(wait))
        # the same answer whether the account exists or not
        raise RateLimitedError(
            f"too many failed sign-ins for this account or from this address; try again in "
            f"{retry} s", details={"retry_after": retry})


def _count_login_failure(engine: Engine, settings: Settings, address: str,
                         client_address: str | None) -> None:
    account, by_address = _login_limiters(engine, settings)
    account.record(address)
    if client_address:
        by_address.record(client_address)


def issue_tokens(engine: Engine, email: str, password: str, *,
                 settings: Settings | None = None,
                 client_address: str | None = None) -> dict[str, Any]:
    """Sign in: ``{"access_token", "refresh_token", "token_type": "bearer", "expires_in"}``.

    Raises AuthenticationError with the same message for an unknown e-mail, a wrong password
    and an inactive account (an attacker learns nothing about which). Failed sign-ins are
    counted per account and per client address: beyond ``login_failure_limit`` (or the
    address limit) in the window, sign-in answers RateLimitedError, even with the right
    password, until the window has slid (audited as ``auth.login_throttled``)."""
    settings = settings or get_settings()
    address = (email or "").strip().lower()[:320]
    password = password if isinstance(password, str) else ""
    try:
        _check_login_throttle(engine, settings, address, client_address)
    except RateLimitedError:
        with write_transaction(engine) as connection:
            audit.record(connection, "anonymous", "auth.login_throttled", target_type="user",
                         details={"email": address, "client": client_address})
        raise
    with engine.connect() as connection:
        row = connection.execute(
            select(USERS.c.id, USERS.c.organisation_id, USERS.c.password_hash,
                   USERS.c.active, USERS.c.role, USERS.c.name)
            .where(USERS.c.email == address)).first()
    reason = None
    if len(password) > MAX_PASSWORD_LENGTH:
        reason = "password too long"
    elif row is None:
        _verify(_dummy_hash(), password)
        reason = "unknown e-mail"
    elif not _verify(row.password_hash, password):
        reason = "wrong password"
    elif not row.active:
        reason = "inactive user"
    with write_transaction(engine) as connection:
        if reason is not None:
            audit.record(connection, "anonymous", "auth.login_failed", target_type="user",
                         target_id=row.id if row is not None else None,
                         details={"email": address, "reason": reason})
            tokens = None
        else:
            assert row is not None
            connection.execute(update(USERS).where(USERS.c.id == row.id)
                               .values(last_login_at=_now()))
            tokens = _insert_tokens(connection, row.id, settings)
            audit.record(connection, _user_principal(row), "auth.login", target_type="user",
                         target_id=row.id, details={"email": address})
    if tokens is None:
        _count_login_failure(engine, settings, address, client_address)
        raise AuthenticationError("wrong e-mail or password, or the account is inactive")
    if row is not None and _hasher.check_needs_rehash(row.password_hash):
        _rehash(engine, row.id, password)
    return tokens


def _user_principal(row: Any) -> Principal:
    return Principal(kind="user", id=row.id, organisation_id=row.organisation_id,
                     role=row.role, name=row.name)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _rehash(engine: Engine, user_id: int, password: str) -> None:
    # parameters were raised since this hash was made: upgrade it while the password is known
    with write_transaction(engine) as connection:
        connection.execute(update(USERS).where(USERS.c.id == user_id)
                           .values(password_hash=_hasher.hash(password)))


def refresh_tokens(engine: Engine, refresh_token: str, *,
                   settings: Settings | None = None) -> dict[str, Any]:
    """A new access and refresh token for a valid refresh token, which is revoked (rotation)."""
    settings = settings or get_settings()
    digest = _sha256(refresh_token or "")
    now = _now()
    with write_transaction(engine) as connection:
        row = connection.execute(
            select(TOKENS.c.id, TOKENS.c.expires_at, TOKENS.c.revoked_at, TOKENS.c.user_id,
                   USERS.c.active, USERS.c.organisation_id, USERS.c.role, USERS.c.name)
            .join(USERS, USERS.c.id == TOKENS.c.user_id)
            .where(TOKENS.c.token_hash == digest, TOKENS.c.kind == "refresh")).first()
        if (row is None or row.revoked_at is not None or _aware(row.expires_at) <= now
                or not row.active):
            tokens = None
        else:
            connection.execute(update(TOKENS).where(TOKENS.c.id == row.id)
                               .values(revoked_at=now))
            tokens = _insert_tokens(connection, row.user_id, settings)
            audit.record(connection, Principal("user", row.user_id, row.organisation_id,
                                               row.role, row.name), "auth.refresh",
                         target_type="user", target_id=row.user_id)
    if tokens is None:
        raise AuthenticationError("the refresh token is unknown, expired or revoked: sign in "
                                  "again")
    return tokens


def logout(engine: Engine, principal: Principal, access_token: str | None, *,
           refresh_token: str | None = None, everywhere: bool = False) -> dict[str, int]:
    """Revoke the access token used (and the refresh token given, if it is the user's);
    ``everywhere`` revokes every token of the user. Returns how many were revoked."""
    if principal.kind != "user" or principal.id is None:
        raise UsageError("only a signed-in user can log out (API keys are revoked by an admin)")
    now = _now()
    with write_transaction(engine) as connection:
        live = (TOKENS.c.user_id == principal.id) & TOKENS.c.revoked_at.is_(None)
        if everywhere:
            condition = live
        else:
            hashes = [_sha256(t) for t in (access_token, refresh_token) if t]
            condition = live & TOKENS.c.token_hash.in_(hashes)
        revoked = connection.execute(update(TOKENS).where(condition)
                                     .values(revoked_at=now)).rowcount
        audit.record(connection, principal, "auth.logout", target_type="user",
                     target_id=principal.id, details={"revoked": revoked,
                                                      "everywhere": everywhere})
    return {"revoked": int(revoked or 0)}


def principal_from_token(engine: Engine, token: str) -> Principal:
    """The signed-in user of an access token; AuthenticationError when it is unknown,
    expired, revoked or its user is inactive."""
    digest = _sha256(token or "")
    with engine.connect() as connection:
        row = connection.execute(
            select(TOKENS.c.expires_at, TOKENS.c.revoked_at, USERS.c.id,
                   USERS.c.organisation_id, USERS.c.role, USERS.c.name, USERS.c.active)
            .join(USERS, USERS.c.id == TOKENS.c.user_id)
            .where(TOKENS.c.token_hash == digest, TOKENS.c.kind == "access")).first()
    if row is None:
        raise AuthenticationError("unknown access token: sign in again")
    if row.revoked_at is not None:
        raise AuthenticationError("the access token was revoked: sign in again")
    if _aware(row.expires_at) <= _now():
        raise AuthenticationError("the access token has expired: refresh it or sign in again")
    if not row.active:
        raise AuthenticationError("the account is inactive")
    return Principal(kind="user", id=row.id, organisation_id=row.organisation_id,
                     role=row.role, name=row.name)


# --------------------------------------------------------------------------------------------
# API keys
# --------------------------------------------------------------------------------------------


def _key_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "organisation_id": row.organisation_id, "name": row.name,
            "prefix": row.prefix, "role": row.role, "created_at": row.created_at,
            "expires_at": row.expires_at, "revoked_at": row.revoked_at,
            "last_used_at": row.last_used_at}


def create_api_key(engine: Engine, organisation_id: int, name: str, role: str, *,
                   expires_at: datetime | None = None,
                   principal: Principal = SYSTEM) -> tuple[int, str]:
    """A new key for a machine client of ``organisation_id``: ``(key_id, plaintext)``.

    The plaintext is returned this once and never stored."""
    name = _check_name(name, "API key", 200)
    check_role(role)
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise UsageError("give the key's expiry with a time zone (e.g. ...Z)")
        if expires_at <= _now():
            raise UsageError("the key's expiry is in the past")
    prefix = secrets.token_hex(4)
    plaintext = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with write_transaction(engine) as connection:
        _require_organisation(connection, organisation_id)
        new_id = connection.execute(KEYS.insert().values(
            organisation_id=organisation_id, name=name, prefix=prefix,
            key_hash=_sha256(plaintext), role=role, created_at=_now(), expires_at=expires_at,
        ).returning(KEYS.c.id)).scalar_one()
        audit.record(connection, principal, "apikey.create", target_type="apikey",
                     target_id=new_id, details={"organisation_id": organisation_id,
                                                "name": name, "role": role, "prefix": prefix})
    return int(new_id), plaintext


def list_api_keys(engine: Engine, organisation_id: int | None = None) -> list[dict[str, Any]]:
    query = select(KEYS).order_by(KEYS.c.id)
    if organisation_id is not None:
        query = query.where(KEYS.c.organisation_id == organisation_id)
    with engine.connect() as connection:
        return [_key_dict(r) for r in connection.execute(query)]


def revoke_api_key(engine: Engine, key_id: int, *,
                   principal: Principal = SYSTEM) -> dict[str, Any]:
    """Revoke a key (idempotent: revoking a revoked key keeps the first revocation time)."""
    with write_transaction(engine) as connection:
        row = connection.execute(select(KEYS).where(KEYS.c.id == key_id)).first()
        if row is None:
            raise NotFoundError(f"no API key with id {key_id}")
        if row.revoked_at is None:
            connection.execute(update(KEYS).where(KEYS.c.id == key_id)
                               .values(revoked_at=_now()))
            audit.record(connection, principal, "apikey.revoke", target_type="apikey",
                         target_id=key_id, details={"prefix": row.prefix})
        row = connection.execute(select(KEYS).where(KEYS.c.id == key_id)).one()
    return _key_dict(row)


def principal_from_api_key(engine: Engine, key: str) -> Principal:
    """The organisation's machine client behind ``key``; AuthenticationError when it is
    malformed, unknown, revoked or expired."""
    parts = (key or "").strip().split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or not parts[1] or not parts[2]:
        raise AuthenticationError("malformed API key (expected usk_<prefix>_<secret>)")
    digest = _sha256(key.strip())
    now = _now()
    with engine.connect() as connection:
        row = connection.execute(select(KEYS).where(KEYS.c.key_hash == digest)).first()
    if row is None or not secrets.compare_digest(row.prefix, parts[1]):
        raise AuthenticationError("unknown API key")
    if row.revoked_at is not None:
        raise AuthenticationError("the API key was revoked")
    if row.expires_at is not None and _aware(row.expires_at) <= now:
        raise AuthenticationError("the API key has expired")
    last = _aware(row.last_used_at)
    if last is None or now - last >= LAST_USED_RESOLUTION:
        # no audit entry: using a key is not a change; the requests it makes are audited
        with engine.begin() as connection:
            connection.execute(update(KEYS).where(KEYS.c.id == row.id)
                               .values(last_used_at=now))
    return Principal(kind="apikey", id=row.id, organisation_id=row.organisation_id,
                     role=row.role, name=row.name)


def describe(engine: Engine, principal: Principal) -> dict[str, Any]:
    """Who the caller is, for ``GET /me``."""
    info: dict[str, Any] = {"kind": principal.kind, "id": principal.id,
                            "organisation_id": principal.organisation_id,
                            "role": principal.role, "name": principal.name, "email": None,
                            "organisation": None}
    with engine.connect() as connection:
        if principal.organisation_id is not None:
            org = connection.execute(select(ORGS).where(
                ORGS.c.id == principal.organisation_id)).first()
            info["organisation"] = _organisation_dict(org) if org is not None else None
        if principal.kind == "user":
            info["email"] = connection.execute(select(USERS.c.email).where(
                USERS.c.id == principal.id)).scalar()
    return info


def count_admins(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(USERS).where(
            USERS.c.role == "admin", USERS.c.active.is_(True))).scalar_one())


__all__ = [
    "MIN_PASSWORD_LENGTH", "ORGANISATION_KINDS", "check_password",
    "count_admins", "create_api_key", "create_organisation", "create_user", "describe",
    "get_user", "issue_tokens", "list_api_keys", "list_organisations", "list_users", "logout",
    "organisation_by_key", "principal_from_api_key", "principal_from_token",
    "purge_expired_tokens", "refresh_tokens", "revoke_api_key", "update_user",
]
