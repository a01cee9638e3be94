"""Escalation: the alert lifecycle completed (gravity, reopening, incidents, self-resolution),
tasks with SLAs and their steps, proposals of the legal ladder, notification channels and
their deliveries.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from correction_monitor.migrations import execute_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    execute_script("""
    -- Alert lifecycle ----------------------------------------------------------------------
    -- One incident groups the alerts that describe one event (left the area and missed a
    -- check-in on the same trip).
    CREATE TABLE incidents (
        id          bigserial PRIMARY KEY,
        subject_id  integer NOT NULL REFERENCES subjects (id),
        org_unit_id integer NOT NULL REFERENCES org_units (id),
        opened_at   timestamptz NOT NULL,
        closed_at   timestamptz,
        data        jsonb NOT NULL DEFAULT '{}'::jsonb
    );
    CREATE INDEX incidents_subject ON incidents (subject_id, opened_at);

    ALTER TABLE alerts
        ADD COLUMN gravity text CHECK (gravity IN ('minor', 'serious')),
        ADD COLUMN incident_id bigint REFERENCES incidents (id),
        -- Self-resolution: the subject was messaged first and the alert reaches officers
        -- (tasks, notifications) only when it has not ended by this time.
        ADD COLUMN self_resolution_until timestamptz,
        ADD COLUMN self_resolved boolean NOT NULL DEFAULT false,
        -- When the alert reached officers (at once, or when its self-resolution grace ran out).
        ADD COLUMN released_at timestamptz,
        ADD COLUMN reopened_at timestamptz,
        ADD COLUMN reopened_by integer REFERENCES officers (id),
        ADD COLUMN reopen_count integer NOT NULL DEFAULT 0;
    CREATE INDEX alerts_incident ON alerts (incident_id) WHERE incident_id IS NOT NULL;

    -- Tasks (二级包保) ------------------------------------------------------------------------
    CREATE TABLE tasks (
        id                  bigserial PRIMARY KEY,
        kind                text NOT NULL CHECK (kind IN
                                ('verify_alert', 'search', 'review_checkin', 'approve_leave',
                                 'decide_proposal')),
        subject_id          integer NOT NULL REFERENCES subjects (id),
        org_unit_id         integer NOT NULL REFERENCES org_units (id),
        alert_id            bigint REFERENCES alerts (id),
        proposal_id         bigint,
        checkin_id          bigint REFERENCES checkins (id),
        leave_id            bigint REFERENCES leaves (id),
        assignee_id         integer REFERENCES officers (id),
        escalation_level    smallint NOT NULL DEFAULT 0 CHECK (escalation_level BETWEEN 0 AND 2),
        due_at              timestamptz,
        status              text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done')),
        created_at          timestamptz NOT NULL,
        done_at             timestamptz,
        done_by             integer REFERENCES officers (id),
        outcome             text,
        note                text,
        -- When the task missed its last SLA (level 2): recorded once, and the task leaves
        -- the sweep's queue (tasks_due) while it stays open with the county.
        sla_missed_at       timestamptz,
        -- Names what the task is about, so a repeated event can never open it twice
        -- (e.g. 'verify_alert:123').
        dedupe_key          text NOT NULL UNIQUE
    );
    CREATE INDEX tasks_assignee ON tasks (assignee_id, status);
    CREATE INDEX tasks_org_open ON tasks (org_unit_id) WHERE status = 'open';
    CREATE INDEX tasks_subject ON tasks (subject_id, created_at);
    -- The SLA timers: open tasks whose last SLA has not been missed yet.
    CREATE INDEX tasks_due ON tasks (due_at) WHERE status = 'open' AND sla_missed_at IS NULL;

    -- What was done on a task: a search's steps (phone, 信息化核查, visit, notify 公安),
    -- escalations and reassignments, notes.
    CREATE TABLE task_steps (
        id          bigserial PRIMARY KEY,
        task_id     bigint NOT NULL REFERENCES tasks (id),
        kind        text NOT NULL,
        at          timestamptz NOT NULL,
        officer_id  integer REFERENCES officers (id),
        note        text,
        data        jsonb NOT NULL DEFAULT '{}'::jsonb
    );
    CREATE INDEX task_steps_task ON task_steps (task_id, id);

    -- Proposals of the legal ladder ------------------------------------------------------------
    CREATE TABLE proposals (
        id              bigserial PRIMARY KEY,
        subject_id      integer NOT NULL REFERENCES subjects (id),
        org_unit_id     integer NOT NULL REFERENCES org_units (id),
        measure         text NOT NULL CHECK (measure IN
                            ('reprimand', 'warning', 'public_security_penalty', 'revocation',
                             'level_change')),
        article         text NOT NULL,
        grounds         jsonb NOT NULL DEFAULT '[]'::jsonb,
        alert_ids       bigint[] NOT NULL DEFAULT '{}',
        -- What the ladder counted when it proposed (approved responses, clocks, category).
        basis           jsonb NOT NULL DEFAULT '{}'::jsonb,
        -- For level_change: the level proposed.
        proposed_level  text CHECK (proposed_level IN ('strict', 'normal', 'lenient')),
        status          text NOT NULL DEFAULT 'pending' CHECK (status IN
                            ('pending', 'approved', 'rejected')),
        created_at      timestamptz NOT NULL,
        decided_at      timestamptz,
        decided_by      integer REFERENCES officers (id),
        decision_note   text,
        -- Makes the same ground propose once (e.g. 'alert:123', 'lost_contact_10d:term').
        dedupe_key      text NOT NULL UNIQUE
    );
    CREATE INDEX proposals_subject ON proposals (subject_id, created_at);
    CREATE INDEX proposals_pending ON proposals (org_unit_id) WHERE status = 'pending';
    ALTER TABLE tasks ADD CONSTRAINT tasks_proposal FOREIGN KEY (proposal_id)
        REFERENCES proposals (id);

    -- Notifications ----------------------------------------------------------------------------
    CREATE TABLE notification_channels (
        id          serial PRIMARY KEY,
        org_unit_id integer NOT NULL REFERENCES org_units (id),
        kind        text NOT NULL CHECK (kind IN ('webhook', 'wecom', 'dingtalk', 'sms')),
        url         text NOT NULL,
        secret      text,
        -- Provider settings that are not secret (an SMS signature name, template code,
        -- recipients' phone numbers, ...).
        settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
        events      text[] NOT NULL,
        active      boolean NOT NULL DEFAULT true,
        created_by  integer REFERENCES officers (id),
        created_at  timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX notification_channels_org ON notification_channels (org_unit_id) WHERE active;

    -- One row per (channel, event): the outbox consumer writes them in its batch's
    -- transaction; senders claim due ones with SKIP LOCKED, retry with backoff, and fold
    -- what a robot's rate limit cannot take into digests.
    CREATE TABLE notification_deliveries (
        id              bigserial PRIMARY KEY,
        channel_id      integer NOT NULL REFERENCES notification_channels (id),
        event_id        bigint NOT NULL,
        status          text NOT NULL DEFAULT 'pending' CHECK (status IN
                            ('pending', 'delivered', 'digested', 'failed')),
        attempts        integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL,
        last_error      text,
        delivered_at    timestamptz,
        digest_id       bigint REFERENCES notification_deliveries (id),
        created_at      timestamptz NOT NULL DEFAULT now(),
        UNIQUE (channel_id, event_id)
    );
    CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at)
        WHERE status = 'pending';
    CREATE INDEX notification_deliveries_channel ON notification_deliveries (channel_id, id);

    -- Each message sent to a robot (DingTalk, WeCom), so every process counts a robot's
    -- rolling minute against its limit; rows older than the minute are deleted as it moves.
    CREATE TABLE notification_robot_sends (
        channel_id  integer NOT NULL REFERENCES notification_channels (id),
        sent_at     timestamptz NOT NULL
    );
    CREATE INDEX notification_robot_sends_channel ON notification_robot_sends (channel_id, sent_at);
    """)


def downgrade() -> None:
    execute_script("""
    DROP TABLE notification_robot_sends, notification_deliveries, notification_channels;
    ALTER TABLE tasks DROP CONSTRAINT tasks_proposal;
    DROP TABLE proposals, task_steps, tasks;
    DROP INDEX alerts_incident;
    ALTER TABLE alerts
        DROP COLUMN gravity, DROP COLUMN incident_id, DROP COLUMN self_resolution_until,
        DROP COLUMN self_resolved, DROP COLUMN released_at, DROP COLUMN reopened_at,
        DROP COLUMN reopened_by, DROP COLUMN reopen_count;
    DROP TABLE incidents;
    """)
