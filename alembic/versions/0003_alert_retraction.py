"""Alerts can be retracted: fixes that arrive late may show an episode never happened.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from correction_monitor.migrations import execute_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    ALTER TABLE alerts ADD COLUMN retracted_at timestamptz;
    """)


def downgrade() -> None:
    execute_script("""
    ALTER TABLE alerts DROP COLUMN retracted_at;
    """)
