"""Creating a day's fix partition is safe when processes race to create it.

Two processes starting together both found the partition missing; the second, woken by the
advisory lock, still looked at the catalogue as of its statement's start and failed with
duplicate_table. The function now treats that as "already there".

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from correction_monitor.migrations import execute_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    CREATE OR REPLACE FUNCTION cm_ensure_fix_partition(day date) RETURNS boolean
    LANGUAGE plpgsql AS $fn$
    DECLARE
        part text := 'fixes_' || to_char(day, 'YYYYMMDD');
    BEGIN
        IF to_regclass(part) IS NOT NULL THEN
            RETURN false;
        END IF;
        PERFORM pg_advisory_xact_lock(7402114, (day - date '2000-01-01'));
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF fixes FOR VALUES FROM (%L) TO (%L)',
            part, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
        RETURN true;
    EXCEPTION WHEN duplicate_table THEN
        RETURN false;
    END
    $fn$;
    """)


def downgrade() -> None:
    execute_script("""
    CREATE OR REPLACE FUNCTION cm_ensure_fix_partition(day date) RETURNS boolean
    LANGUAGE plpgsql AS $fn$
    DECLARE
        part text := 'fixes_' || to_char(day, 'YYYYMMDD');
    BEGIN
        IF to_regclass(part) IS NOT NULL THEN
            RETURN false;
        END IF;
        PERFORM pg_advisory_xact_lock(7402114, (day - date '2000-01-01'));
        IF to_regclass(part) IS NOT NULL THEN
            RETURN false;
        END IF;
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF fixes FOR VALUES FROM (%L) TO (%L)',
            part, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
        RETURN true;
    END
    $fn$;
    """)
