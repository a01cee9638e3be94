"""Lost-contact clock: accumulated lost-contact time per subject, and the feed's notify hook.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from correction_monitor.migrations import execute_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    ALTER TABLE subject_eval_state
        ADD COLUMN lost_contact_total_s double precision NOT NULL DEFAULT 0,
        ADD COLUMN lost_contact_since timestamptz;
    ALTER TABLE devices ADD COLUMN last_seen_at timestamptz;
    CREATE INDEX alerts_open_type ON alerts (type) WHERE ended_at IS NULL;
    """)


def downgrade() -> None:
    execute_script("""
    DROP INDEX alerts_open_type;
    ALTER TABLE devices DROP COLUMN last_seen_at;
    ALTER TABLE subject_eval_state
        DROP COLUMN lost_contact_total_s,
        DROP COLUMN lost_contact_since;
    """)
