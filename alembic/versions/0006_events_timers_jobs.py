"""Domain events in commit order (the outbox), consumer cursors, durable timers, job slots.

``events`` replaces ``alert_events``: every state change worth telling (an alert opened, a
task created, a notification due) is one row, written in the transaction that made the
change. Ids are drawn under a transaction-scoped advisory lock taken as the transaction's
last act and held until it commits, so id order is commit order and a reader that has seen
id N never meets a smaller id later (see adapters/outbox.py). Alert events keep their ids.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from correction_monitor.migrations import execute_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    CREATE TABLE events (
        id          bigint PRIMARY KEY,
        name        text NOT NULL,
        occurred_at timestamptz NOT NULL DEFAULT now(),
        org_unit_id integer REFERENCES org_units (id),
        subject_id  integer,
        alert_id    bigint REFERENCES alerts (id),
        data        jsonb NOT NULL DEFAULT '{}'::jsonb
    );
    CREATE SEQUENCE events_id_seq OWNED BY events.id;
    CREATE INDEX events_org ON events (org_unit_id, id);
    CREATE INDEX events_alert_feed ON events (id) WHERE alert_id IS NOT NULL;

    INSERT INTO events (id, name, occurred_at, org_unit_id, subject_id, alert_id)
    SELECT e.id, 'alert.' || e.kind, e.at, e.org_unit_id, a.subject_id, e.alert_id
    FROM alert_events e JOIN alerts a ON a.id = e.alert_id;
    SELECT setval('events_id_seq', GREATEST((SELECT max(id) FROM events), 1),
                  (SELECT max(id) FROM events) IS NOT NULL);
    DROP TABLE alert_events;

    -- Where each consumer of the event log has got to; advanced in the transaction that
    -- applied the events, so a consumer's effects and its position commit together.
    CREATE TABLE event_cursors (
        consumer    text PRIMARY KEY,
        position    bigint NOT NULL DEFAULT 0,
        updated_at  timestamptz NOT NULL DEFAULT now()
    );

    -- Durable deadlines: set in the transaction of the change that needs them, fired once
    -- (the handler's effects and fired_at commit together), retried with backoff on failure.
    CREATE TABLE timers (
        id          bigserial PRIMARY KEY,
        kind        text NOT NULL,
        key         text NOT NULL,
        due_at      timestamptz NOT NULL,
        payload     jsonb NOT NULL DEFAULT '{}'::jsonb,
        attempts    integer NOT NULL DEFAULT 0,
        last_error  text,
        created_at  timestamptz NOT NULL DEFAULT now(),
        fired_at    timestamptz,
        UNIQUE (kind, key)
    );
    CREATE INDEX timers_due ON timers (due_at) WHERE fired_at IS NULL;

    -- The last time slot each cluster-wide job was claimed in: a slot runs once, whichever
    -- process reaches it first, and a restart does not run a claimed slot again.
    CREATE TABLE job_runs (
        name            text PRIMARY KEY,
        slot            timestamptz NOT NULL,
        started_at      timestamptz NOT NULL,
        finished_at     timestamptz,
        outcome         text,
        runs            bigint NOT NULL DEFAULT 1
    );
    """)


def downgrade() -> None:
    execute_script("""
    CREATE TABLE alert_events (
        id          bigserial PRIMARY KEY,
        alert_id    bigint NOT NULL REFERENCES alerts (id),
        org_unit_id integer NOT NULL,
        kind        text NOT NULL,
        at          timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX alert_events_org ON alert_events (org_unit_id, id);
    INSERT INTO alert_events (id, alert_id, org_unit_id, kind, at)
    SELECT id, alert_id, org_unit_id, substr(name, 7), occurred_at FROM events
    WHERE alert_id IS NOT NULL;
    SELECT setval('alert_events_id_seq', GREATEST((SELECT max(id) FROM alert_events), 1));
    DROP TABLE job_runs, timers, event_cursors, events;
    """)
