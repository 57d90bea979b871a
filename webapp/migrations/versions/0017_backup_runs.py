"""backup runs: one row per backup (nightly or 立即备份), unique per night

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 20:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'backup_run',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('trigger', sa.String(length=10), nullable=False),
        sa.Column('night', sa.Date(), nullable=True),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('requested_by', sa.String(length=64), nullable=False),
        sa.Column('requested_at', sa.DateTime(), nullable=False),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.Column('file_name', sa.String(length=255), nullable=True),
        sa.Column('size', sa.BigInteger(), nullable=True),
        sa.Column('invoices', sa.Integer(), nullable=True),
        sa.Column('failure', sa.String(length=16), nullable=True),
        sa.Column('failure_detail', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('night'),
    )
    op.create_index('ix_backup_run_requested_at', 'backup_run', ['requested_at'], unique=False)


def downgrade():
    op.drop_index('ix_backup_run_requested_at', table_name='backup_run')
    op.drop_table('backup_run')
