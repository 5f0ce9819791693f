"""readings, revisions and ingest batches

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 17:08:30.970386
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('ingestbatch',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('mode', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('token_id', sa.Integer(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('ingested', sa.Integer(), nullable=False),
    sa.Column('skipped_duplicate', sa.Integer(), nullable=False),
    sa.Column('revised', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('errors_by_code', sa.JSON(), nullable=False),
    sa.Column('errors_by_meter', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organization.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['token_id'], ['integrationtoken.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ingestbatch', schema=None) as batch_op:
        batch_op.create_index('ix_ingestbatch_org_received', ['org_id', 'received_at'], unique=False)

    op.create_table('reading',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('meter_pk', sa.Integer(), nullable=False),
    sa.Column('ts', sa.DateTime(timezone=True), nullable=False),
    sa.Column('value', sa.Float(precision=53), nullable=False),
    sa.Column('idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('ingested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['ingestbatch.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['meter_pk'], ['meter.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organization.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('meter_pk', 'ts', name='uq_reading_meter_ts'),
    sa.UniqueConstraint('org_id', 'idempotency_key', name='uq_reading_org_key')
    )
    with op.batch_alter_table('reading', schema=None) as batch_op:
        batch_op.create_index('ix_reading_meter_ingested', ['meter_pk', 'ingested_at'], unique=False)

    op.create_table('readingrevision',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('reading_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('old_value', sa.Float(precision=53), nullable=False),
    sa.Column('new_value', sa.Float(precision=53), nullable=False),
    sa.Column('old_idempotency_key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('revised_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['ingestbatch.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['org_id'], ['organization.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['reading_id'], ['reading.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('readingrevision', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_readingrevision_reading_id'), ['reading_id'], unique=False)

    with op.batch_alter_table('site', schema=None) as batch_op:
        batch_op.add_column(sa.Column('auto_register_meters', sa.Boolean(), server_default=sa.false(), nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('site', schema=None) as batch_op:
        batch_op.drop_column('auto_register_meters')

    with op.batch_alter_table('readingrevision', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_readingrevision_reading_id'))

    op.drop_table('readingrevision')
    with op.batch_alter_table('reading', schema=None) as batch_op:
        batch_op.drop_index('ix_reading_meter_ingested')

    op.drop_table('reading')
    with op.batch_alter_table('ingestbatch', schema=None) as batch_op:
        batch_op.drop_index('ix_ingestbatch_org_received')

    op.drop_table('ingestbatch')
