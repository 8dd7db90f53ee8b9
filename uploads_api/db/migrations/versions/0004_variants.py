"""Image variants kept in storage, for the cap on their bytes per owner.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "variants",
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("file_id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("used_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_variants_file_id", "variants", ["file_id"])
    op.create_index("ix_variants_owner_used_at", "variants", ["owner", "used_at"])


def downgrade() -> None:
    op.drop_table("variants")
