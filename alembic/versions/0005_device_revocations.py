"""Revoked devices are found by time: every process watches for new revocations.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from correction_monitor.migrations import execute_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    CREATE INDEX devices_revoked_at ON devices (revoked_at) WHERE revoked_at IS NOT NULL;
    """)


def downgrade() -> None:
    execute_script("DROP INDEX devices_revoked_at;")
