"""dedupe by Message-ID and content; inbound.message_id and claims; message.reply_to

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 20:30:00

A stored message's dedupe key becomes the one `maild.dedupe.identify` makes (Message-ID and
content, SPEC §5 as revised 2026-12-01), recomputed from the stored bytes, so a message stored
before the upgrade is still recognised when it arrives again.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate writes sqlmodel types)
from alembic import op

import maild.models  # noqa: F401
from maild.dedupe import identify


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 500


def upgrade() -> None:
    with op.batch_alter_table('inbound', schema=None) as batch_op:
        batch_op.add_column(sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=False, server_default=''))
        batch_op.create_index(batch_op.f('ix_inbound_message_id'), ['message_id'], unique=False)
        batch_op.add_column(sa.Column('claimed_at', maild.models.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=False, server_default=''))
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reply_to', sqlmodel.sql.sqltypes.AutoString(),
                                      nullable=False, server_default=''))
    _rekey_inbound()


def _rekey_inbound() -> None:
    connection = op.get_bind()
    inbound = sa.table('inbound', sa.column('id', sa.Integer), sa.column('raw', sa.LargeBinary),
                       sa.column('dedupe_key', sa.String), sa.column('message_id', sa.String))
    last = 0
    while True:
        rows = connection.execute(sa.select(inbound.c.id, inbound.c.raw)
                                  .where(inbound.c.id > last).order_by(inbound.c.id)
                                  .limit(_BATCH)).all()
        if not rows:
            return
        for row_id, raw in rows:
            identity = identify(bytes(raw))
            connection.execute(inbound.update().where(inbound.c.id == row_id).values(
                dedupe_key=identity.key, message_id=identity.message_id))
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_column('reply_to')
    with op.batch_alter_table('inbound', schema=None) as batch_op:
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('claimed_at')
        batch_op.drop_index(batch_op.f('ix_inbound_message_id'))
        batch_op.drop_column('message_id')
