"""The hash of the bytes as received, where stripping metadata changed the stored ones.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.add_column(sa.Column("received_sha256", sa.String(64), nullable=True))
        batch.create_index("ix_files_received_sha256", ["received_sha256"])


def downgrade() -> None:
    with op.batch_alter_table("files") as batch:
        batch.drop_index("ix_files_received_sha256")
        batch.drop_column("received_sha256")
