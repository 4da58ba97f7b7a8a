"""audit entries chained at commit: the ``audit_pending`` staging table and, on PostgreSQL,
the deferred trigger that chains its rows into ``audit_log``

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

Until now each audited write took the chain lock, read the head and appended in its own
statements, so the lock was held across the round trips to the application and its commit:
every audited write of every process queued behind the slowest. Now a write inserts its entry
into ``audit_pending``; a constraint trigger deferred to commit takes the lock, reads the head,
appends to ``audit_log`` (whose ids, drawn under the lock, keep the chain's order) and deletes
the staging row. The lock is held only while the database commits. The hash is the same
``sha256(prev_hash || canonical)`` as before, so existing chains verify unchanged.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import urbansec.store.types

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_TIME = urbansec.store.types.UTCDateTime(timezone=True)

#: the advisory lock that serialises appends to the chain (the same key as before)
CHAIN_LOCK = 7715001

# ``SET search_path FROM CURRENT`` pins the function to the schema it was created in, so the
# trigger finds its tables whatever the committing session's search_path is.
CHAIN_FUNCTION = f"""
CREATE FUNCTION audit_chain_pending() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    head text;
BEGIN
    PERFORM pg_advisory_xact_lock({CHAIN_LOCK});
    SELECT hash INTO head FROM audit_log ORDER BY id DESC LIMIT 1;
    head := coalesce(head, repeat('0', 64));
    INSERT INTO audit_log (at, actor, organisation_id, action, target_type, target_id,
                           details, prev_hash, hash)
    VALUES (NEW.at, NEW.actor, NEW.organisation_id, NEW.action, NEW.target_type,
            NEW.target_id, NEW.details, head,
            encode(sha256(convert_to(head || NEW.canonical, 'UTF8')), 'hex'));
    DELETE FROM audit_pending WHERE id = NEW.id;
    RETURN NULL;
END
$$
"""

CHAIN_TRIGGER = """
CREATE CONSTRAINT TRIGGER audit_pending_chain AFTER INSERT ON audit_pending
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_chain_pending()
"""


def upgrade() -> None:
    op.create_table('audit_pending',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('at', UTC_TIME, nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('organisation_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=100), nullable=False),
    sa.Column('target_type', sa.String(length=50), nullable=True),
    sa.Column('target_id', sa.String(length=100), nullable=True),
    sa.Column('details', JSON, nullable=False),
    sa.Column('canonical', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_pending'))
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(CHAIN_FUNCTION)
        op.execute(CHAIN_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_pending_chain ON audit_pending")
        op.execute("DROP FUNCTION audit_chain_pending()")
    op.drop_table('audit_pending')
