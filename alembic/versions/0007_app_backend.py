"""The subject's app backend: officers' details and login throttling, check-ins and their
schedules and draws, messages to the subject, and leave (外出).

Check-ins are stored once per window: ``status`` is ``pending`` until answered, reviewed or
missed ("open" is ``pending`` between ``opens_at`` and ``closes_at``, derived when read). The
partial index on ``closes_at`` of pending rows is the durable deadline that closing missed
windows sweeps.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from correction_monitor.migrations import execute_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    -- Officers ------------------------------------------------------------------------
    ALTER TABLE officers ADD COLUMN phone text;

    -- Failed logins per username, for the throttle (10 in 15 minutes answer 429 until the
    -- window passes). Kept in PostgreSQL so every process counts the same failures.
    CREATE TABLE login_failures (
        username    text NOT NULL,
        at          timestamptz NOT NULL
    );
    CREATE INDEX login_failures_username ON login_failures (username, at);

    -- Check-ins ---------------------------------------------------------------------------
    -- A subject's own windows (一人一策), replacing its level's from set_at on.
    CREATE TABLE checkin_schedules (
        subject_id  integer PRIMARY KEY REFERENCES subjects (id),
        windows     jsonb NOT NULL,
        set_by      integer REFERENCES officers (id),
        set_at      timestamptz NOT NULL DEFAULT now()
    );

    -- How far each subject's windows and challenges have been laid out.
    CREATE TABLE checkin_layouts (
        subject_id  integer PRIMARY KEY REFERENCES subjects (id),
        laid_until  timestamptz NOT NULL,
        updated_at  timestamptz NOT NULL DEFAULT now()
    );

    -- Each draw of random challenges, with the seed that re-derives it.
    CREATE TABLE checkin_draws (
        id              bigserial PRIMARY KEY,
        subject_id      integer NOT NULL REFERENCES subjects (id),
        period          text NOT NULL,
        period_start    timestamptz NOT NULL,
        period_end      timestamptz NOT NULL,
        seed            text NOT NULL,
        algorithm       text NOT NULL,
        inputs          jsonb NOT NULL DEFAULT '{}'::jsonb,
        times           jsonb NOT NULL DEFAULT '[]'::jsonb,
        drawn_at        timestamptz NOT NULL DEFAULT now(),
        UNIQUE (subject_id, period, period_start)
    );

    CREATE TABLE checkins (
        id              bigserial PRIMARY KEY,
        subject_id      integer NOT NULL REFERENCES subjects (id),
        org_unit_id     integer NOT NULL REFERENCES org_units (id),
        kind            text NOT NULL CHECK (kind IN ('scheduled', 'challenge')),
        opens_at        timestamptz NOT NULL,
        closes_at       timestamptz NOT NULL,
        status          text NOT NULL DEFAULT 'pending' CHECK (status IN
                            ('pending', 'passed', 'needs_review', 'failed', 'missed',
                             'cancelled')),
        answered_at     timestamptz,
        reasons         text[] NOT NULL DEFAULT '{}',
        -- The answer as received (position in WGS-84, face result, device), kept whole.
        answer          jsonb,
        photo_sha256    text,
        device_id       integer REFERENCES devices (id),
        draw_id         bigint REFERENCES checkin_draws (id),
        issued_by       integer REFERENCES officers (id),
        reviewed_by     integer REFERENCES officers (id),
        reviewed_at     timestamptz,
        review_note     text,
        reminded_at     timestamptz,
        created_at      timestamptz NOT NULL DEFAULT now(),
        CHECK (closes_at > opens_at),
        UNIQUE (subject_id, kind, opens_at)
    );
    CREATE INDEX checkins_subject ON checkins (subject_id, opens_at);
    CREATE INDEX checkins_closing ON checkins (closes_at) WHERE status = 'pending';
    -- Pending windows not reminded yet: the reminder sweep's queue, which a window leaves
    -- when reminded (so a sweep never rescans the windows it has reminded).
    CREATE INDEX checkins_reminding ON checkins (closes_at)
        WHERE status = 'pending' AND reminded_at IS NULL;
    CREATE INDEX checkins_photo ON checkins (subject_id, photo_sha256)
        WHERE photo_sha256 IS NOT NULL;
    CREATE INDEX checkins_review ON checkins (org_unit_id, status)
        WHERE status = 'needs_review';

    -- Messages to the subject's app, with read receipts ------------------------------------
    CREATE TABLE subject_messages (
        id          bigserial PRIMARY KEY,
        subject_id  integer NOT NULL REFERENCES subjects (id),
        kind        text NOT NULL,
        text        text NOT NULL,
        data        jsonb NOT NULL DEFAULT '{}'::jsonb,
        -- Makes a message sent by a retried or repeated job land once.
        dedupe_key  text,
        sent_by     integer REFERENCES officers (id),
        created_at  timestamptz NOT NULL DEFAULT now(),
        read_at     timestamptz,
        UNIQUE (subject_id, dedupe_key)
    );
    CREATE INDEX subject_messages_subject ON subject_messages (subject_id, id);

    -- Leave (外出) ----------------------------------------------------------------------
    CREATE TABLE leaves (
        id                  bigserial PRIMARY KEY,
        subject_id          integer NOT NULL REFERENCES subjects (id),
        org_unit_id         integer NOT NULL REFERENCES org_units (id),
        -- As the app gave it ({"adcodes": [...]} or {"geometry": ..., "crs": ...}) and as
        -- evaluation uses it (a fence of kind leave_destination).
        destination         jsonb NOT NULL,
        destination_fence_id integer REFERENCES geofences (id),
        reason              text NOT NULL CHECK (reason IN
                                ('medical', 'schooling', 'litigation', 'family', 'work',
                                 'other')),
        note                text,
        starts_at           timestamptz NOT NULL,
        ends_at             timestamptz NOT NULL,
        start_text          text NOT NULL,
        end_text            text NOT NULL,
        days                integer NOT NULL,
        approval_level      text NOT NULL CHECK (approval_level IN
                                ('station', 'county', 'upper')),
        commuting           boolean NOT NULL DEFAULT false,
        status              text NOT NULL DEFAULT 'pending' CHECK (status IN
                                ('pending', 'approved', 'rejected', 'cancelled')),
        applied_at          timestamptz NOT NULL DEFAULT now(),
        decided_by          integer REFERENCES officers (id),
        decided_at          timestamptz,
        decision_note       text,
        CHECK (ends_at > starts_at)
    );
    CREATE INDEX leaves_subject ON leaves (subject_id, starts_at);
    CREATE INDEX leaves_pending ON leaves (org_unit_id) WHERE status = 'pending';

    CREATE TABLE leave_reports (
        id          bigserial PRIMARY KEY,
        leave_id    bigint NOT NULL REFERENCES leaves (id),
        subject_id  integer NOT NULL REFERENCES subjects (id),
        kind        text NOT NULL CHECK (kind IN ('arrival', 'departure', 'return')),
        ts          timestamptz NOT NULL,
        lon         double precision NOT NULL,
        lat         double precision NOT NULL,
        accuracy_m  double precision,
        inside      boolean,
        device_id   integer REFERENCES devices (id),
        received_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX leave_reports_leave ON leave_reports (leave_id, ts);
    """)


def downgrade() -> None:
    execute_script("""
    DROP TABLE leave_reports, leaves, subject_messages, checkins, checkin_draws,
        checkin_layouts, checkin_schedules, login_failures;
    ALTER TABLE officers DROP COLUMN phone;
    """)
