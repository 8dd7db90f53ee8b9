"""Resumable (tus) uploads in progress.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tus_uploads",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=True),
        sa.Column("key_id", sa.Integer, nullable=True),
        sa.Column("length", sa.BigInteger, nullable=True),
        sa.Column("offset", sa.BigInteger, nullable=False),
        sa.Column("metadata_header", sa.String(4096), nullable=True),
        sa.Column("concat", sa.String(4096), nullable=True),
        sa.Column("metadata", sa.JSON, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("file_id", sa.String(32), nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.DateTime, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_tus_uploads_expires_at", "tus_uploads", ["expires_at"])
    op.create_index("ix_tus_uploads_owner_state", "tus_uploads", ["owner", "state"])


def downgrade() -> None:
    op.drop_table("tus_uploads")
