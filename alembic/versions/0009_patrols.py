"""Night patrols (夜间巡查): teams, plans per unit and night, their stops and outcomes.

A plan's stops hold who is visited, by which team, in which order and when, with the reasons
for choosing them; an outcome recorded on a stop is a visit (the next due date counts from it,
unless nobody answered).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from correction_monitor.migrations import execute_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    CREATE TABLE patrol_teams (
        id              serial PRIMARY KEY,
        org_unit_id     integer NOT NULL REFERENCES org_units (id),
        name            text NOT NULL,
        -- The team's start (and end) point, WGS-84, and the system it was given in.
        start_lon       double precision NOT NULL,
        start_lat       double precision NOT NULL,
        start_crs       text NOT NULL DEFAULT 'wgs84',
        capacity        integer NOT NULL CHECK (capacity > 0),
        -- The working window in the unit's time zone; an end not after the start is the
        -- next day (20:00-02:00).
        window_start    time NOT NULL,
        window_end      time NOT NULL,
        speed_kmh       double precision NOT NULL CHECK (speed_kmh > 0),
        stop_minutes    double precision NOT NULL CHECK (stop_minutes >= 0),
        active          boolean NOT NULL DEFAULT true,
        created_by      integer REFERENCES officers (id),
        created_at      timestamptz NOT NULL DEFAULT now(),
        UNIQUE (org_unit_id, name)
    );

    CREATE TABLE patrol_plans (
        id              bigserial PRIMARY KEY,
        org_unit_id     integer NOT NULL REFERENCES org_units (id),
        night           date NOT NULL,
        seed            bigint NOT NULL,
        status          text NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'published')),
        -- Per route: team, distance and duration; who was left out and why; the solver's
        -- figures (objective, runtime) and the inputs' summary, for audit.
        routes          jsonb NOT NULL DEFAULT '[]'::jsonb,
        unassigned      jsonb NOT NULL DEFAULT '[]'::jsonb,
        solver          jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at      timestamptz NOT NULL,
        created_by      integer REFERENCES officers (id),
        published_at    timestamptz,
        published_by    integer REFERENCES officers (id),
        UNIQUE (org_unit_id, night)
    );

    CREATE TABLE patrol_stops (
        id              bigserial PRIMARY KEY,
        plan_id         bigint NOT NULL REFERENCES patrol_plans (id) ON DELETE CASCADE,
        team_id         integer NOT NULL REFERENCES patrol_teams (id),
        subject_id      integer NOT NULL REFERENCES subjects (id),
        seq             integer NOT NULL,
        eta             timestamptz NOT NULL,
        reasons         jsonb NOT NULL DEFAULT '[]'::jsonb,
        -- What the visit found, recorded by an officer.
        outcome         text CHECK (outcome IN
                            ('present', 'absent', 'no_answer', 'refused', 'other')),
        outcome_at      timestamptz,
        outcome_note    text,
        outcome_fix     jsonb,
        recorded_by     integer REFERENCES officers (id),
        recorded_at     timestamptz,
        alert_id        bigint REFERENCES alerts (id),
        UNIQUE (plan_id, subject_id)
    );
    CREATE INDEX patrol_stops_subject ON patrol_stops (subject_id, outcome_at);
    """)


def downgrade() -> None:
    execute_script("DROP TABLE patrol_stops, patrol_plans, patrol_teams;")
