"""Initial schema: org units, officers, subjects, devices, shared geometries, fixes, alerts, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from correction_monitor.migrations import execute_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    CREATE TABLE org_units (
        id          serial PRIMARY KEY,
        code        text NOT NULL UNIQUE,
        name        text NOT NULL,
        parent_id   integer REFERENCES org_units (id),
        timezone    text NOT NULL DEFAULT 'Asia/Shanghai',
        created_at  timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE officers (
        id              serial PRIMARY KEY,
        username        text NOT NULL UNIQUE,
        password_hash   text NOT NULL,
        role            text NOT NULL CHECK (role IN
                            ('officer', 'supervisor', 'county_admin', 'auditor', 'admin')),
        org_unit_id     integer NOT NULL REFERENCES org_units (id),
        display_name    text,
        active          boolean NOT NULL DEFAULT true,
        created_at      timestamptz NOT NULL DEFAULT now()
    );

    -- Officer bearer tokens: only a SHA-256 of the token is kept.
    CREATE TABLE officer_tokens (
        token_hash  bytea PRIMARY KEY,
        officer_id  integer NOT NULL REFERENCES officers (id) ON DELETE CASCADE,
        expires_at  timestamptz NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX officer_tokens_expires_at ON officer_tokens (expires_at);

    -- Every polygon is stored once (keyed by the hash of its WKB, WGS-84) and shared by all
    -- administrative areas and geofences that use it.
    CREATE TABLE geometries (
        id          serial PRIMARY KEY,
        sha256      bytea NOT NULL UNIQUE,
        wkb         bytea NOT NULL,
        vertices    integer NOT NULL,
        min_lon     double precision NOT NULL,
        min_lat     double precision NOT NULL,
        max_lon     double precision NOT NULL,
        max_lat     double precision NOT NULL,
        created_at  timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE admin_areas (
        adcode          text PRIMARY KEY,
        name            text,
        parent_adcode   text,
        level           text,
        geometry_id     integer NOT NULL REFERENCES geometries (id),
        source_crs      text NOT NULL,
        imported_at     timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX admin_areas_parent ON admin_areas (parent_adcode);

    CREATE TABLE geofences (
        id              serial PRIMARY KEY,
        name            text NOT NULL,
        kind            text NOT NULL CHECK (kind IN
                            ('activity_area', 'exclusion', 'home', 'leave_destination')),
        org_unit_id     integer NOT NULL REFERENCES org_units (id),
        geometry_id     integer REFERENCES geometries (id),
        center_lon      double precision,
        center_lat      double precision,
        radius_m        double precision,
        adcodes         text[],
        source_crs      text NOT NULL DEFAULT 'wgs84',
        schedule        jsonb,
        created_by      integer REFERENCES officers (id),
        created_at      timestamptz NOT NULL DEFAULT now(),
        CHECK ((geometry_id IS NOT NULL) <> (radius_m IS NOT NULL))
    );

    CREATE TABLE subjects (
        id                          serial PRIMARY KEY,
        name                        text NOT NULL,
        org_unit_id                 integer NOT NULL REFERENCES org_units (id),
        supervision_level           text NOT NULL CHECK (supervision_level IN
                                        ('strict', 'normal', 'lenient')),
        category                    text NOT NULL CHECK (category IN
                                        ('probation', 'parole', 'control', 'medical_parole')),
        term_start                  date NOT NULL,
        term_end                    date NOT NULL,
        responsible_officer_id      integer REFERENCES officers (id),
        responsible_supervisor_id   integer REFERENCES officers (id),
        activity_area_id            integer REFERENCES geofences (id),
        home_lon                    double precision,
        home_lat                    double precision,
        home_radius_m               double precision,
        home_crs                    text,
        curfew_start                time,
        curfew_end                  time,
        status                      text NOT NULL DEFAULT 'active',
        created_at                  timestamptz NOT NULL DEFAULT now(),
        CHECK (term_end >= term_start)
    );
    CREATE INDEX subjects_org_unit ON subjects (org_unit_id);

    CREATE TABLE subject_exclusion_zones (
        subject_id  integer NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
        geofence_id integer NOT NULL REFERENCES geofences (id),
        PRIMARY KEY (subject_id, geofence_id)
    );

    CREATE TABLE devices (
        id          serial PRIMARY KEY,
        subject_id  integer NOT NULL REFERENCES subjects (id),
        token_hash  bytea NOT NULL UNIQUE,
        osmand_id   text NOT NULL UNIQUE,
        platform    text,
        created_at  timestamptz NOT NULL DEFAULT now(),
        revoked_at  timestamptz
    );
    CREATE INDEX devices_subject ON devices (subject_id);

    -- Accepted fixes. Compact on purpose (see docs/storage.md): coordinates are WGS-84 in
    -- 1e-7 degree integers, accuracy in whole metres, `client_key` a 32-bit hash of the
    -- phone's own fix id (0 when none), `flags` the quality bits. Daily range partitions, so
    -- retention drops partitions. The only index is a deduplicated btree on subject_id.
    CREATE TABLE fixes (
        ts          timestamptz NOT NULL,
        subject_id  integer NOT NULL,
        device_id   integer NOT NULL,
        lon_e7      integer NOT NULL,
        lat_e7      integer NOT NULL,
        client_key  integer NOT NULL,
        accuracy_m  smallint NOT NULL,
        flags       smallint NOT NULL
    ) PARTITION BY RANGE (ts);
    CREATE INDEX fixes_subject ON fixes (subject_id) WITH (deduplicate_items = on);

    CREATE FUNCTION cm_ensure_fix_partition(day date) RETURNS boolean
    LANGUAGE plpgsql AS $fn$
    DECLARE
        part text := 'fixes_' || to_char(day, 'YYYYMMDD');
    BEGIN
        IF to_regclass(part) IS NOT NULL THEN
            RETURN false;
        END IF;
        -- Two sessions may race to create the same day; serialise on the day number.
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

    -- Per-subject evaluation state: episode machines and watermarks, updated in the same
    -- transaction as the fixes they consumed, so a restart resumes exactly where it stopped.
    CREATE TABLE subject_eval_state (
        subject_id      integer PRIMARY KEY REFERENCES subjects (id) ON DELETE CASCADE,
        state           jsonb NOT NULL DEFAULT '{}'::jsonb,
        max_fix_ts      timestamptz,
        last_contact_at timestamptz,
        updated_at      timestamptz NOT NULL DEFAULT now()
    );

    CREATE TABLE alerts (
        id              bigserial PRIMARY KEY,
        subject_id      integer NOT NULL REFERENCES subjects (id),
        org_unit_id     integer NOT NULL REFERENCES org_units (id),
        type            text NOT NULL,
        severity        text NOT NULL,
        status          text NOT NULL DEFAULT 'open' CHECK (status IN
                            ('open', 'acknowledged', 'resolved')),
        fence_id        integer,
        -- Identifies the episode, so re-evaluating the same fixes can never raise it twice.
        episode_key     text NOT NULL,
        started_at      timestamptz NOT NULL,
        detected_at     timestamptz NOT NULL DEFAULT now(),
        ended_at        timestamptz,
        evidence        jsonb NOT NULL DEFAULT '{}'::jsonb,
        acknowledged_at timestamptz,
        acknowledged_by integer REFERENCES officers (id),
        resolved_at     timestamptz,
        resolved_by     integer REFERENCES officers (id),
        disposition     text CHECK (disposition IN ('confirmed', 'justified', 'false_alarm')),
        note            text,
        UNIQUE (subject_id, type, episode_key)
    );
    CREATE INDEX alerts_org_status ON alerts (org_unit_id, status);
    CREATE INDEX alerts_subject ON alerts (subject_id, started_at);

    -- Every change of an alert, in commit order: the SSE feed replays from here
    -- (Last-Event-ID = id), so a reconnecting console misses nothing.
    CREATE TABLE alert_events (
        id          bigserial PRIMARY KEY,
        alert_id    bigint NOT NULL REFERENCES alerts (id),
        org_unit_id integer NOT NULL,
        kind        text NOT NULL,
        at          timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX alert_events_org ON alert_events (org_unit_id, id);

    -- Append-only audit log: who read or changed what, when, and for which purpose.
    CREATE TABLE audit_log (
        id          bigserial PRIMARY KEY,
        at          timestamptz NOT NULL DEFAULT now(),
        officer_id  integer REFERENCES officers (id),
        action      text NOT NULL,
        subject_id  integer,
        purpose     text,
        request_id  text,
        detail      jsonb NOT NULL DEFAULT '{}'::jsonb
    );
    CREATE INDEX audit_log_subject ON audit_log (subject_id, at);

    CREATE FUNCTION cm_audit_log_is_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $fn$
    BEGIN
        RAISE EXCEPTION 'audit_log is append-only';
    END
    $fn$;
    CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION cm_audit_log_is_append_only();
    """)


def downgrade() -> None:
    execute_script("""
    DROP TABLE audit_log, alert_events, alerts, subject_eval_state, fixes, devices,
        subject_exclusion_zones, subjects, geofences, admin_areas, geometries, officer_tokens,
        officers, org_units CASCADE;
    DROP FUNCTION cm_ensure_fix_partition(date);
    DROP FUNCTION cm_audit_log_is_append_only();
    """)
