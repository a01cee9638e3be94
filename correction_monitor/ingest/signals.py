"""Integrity signals of the ingest commit: mock locations and two live phones.

Both are raised in the commit transaction (``ingest/commit.py``), so they hold exactly once
like everything else the commit does: a crash keeps the fixes and their signals, or
neither, and a fix sent again is dropped as a repeat before it could signal twice.

* ``mock_location``: the commit's stored fixes the phone marked as simulated
  (``FixFlag.MOCK``: the native protocol's ``"mock": true``, Traccar Client's ``mock`` /
  ``is_mock``). They are stored and shown like any fix, and evaluation never lets one decide
  a breach (``FixFlag.NOT_DECIDING``). The commit looks for them with one test over the
  whole group's flags, so a group without mock fixes does no work for this rule.
* ``new_device``: a device reported while another unrevoked device of its subject was heard
  from within the policy's overlap. The check rides on the statement that records devices'
  last-seen times (``eval_state.LastSeen.touch``, at most once a minute per device), so it
  costs no query of its own. A pair of devices already signalled by this process is not
  signalled again for :data:`REPEAT_PAIR_S`: two phones kept live side by side add to the
  alert once an hour, not on every upload.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from correction_monitor.adapters.integrity import PostgresIntegrity
from correction_monitor.domain.alerts import AlertOp
from correction_monitor.domain.fix_arrays import SubjectFixes, to_datetime
from correction_monitor.domain.fixes import FixFlag
from correction_monitor.domain.integrity import Rule, device_fact, mock_fix_item, new_device_item
from correction_monitor.policy import IntegrityPolicy
from correction_monitor.service.integrity import signal_ops

REPEAT_PAIR_S = 3600.0
"""A pair of one subject's devices is signalled at most this often by one process."""
_PAIRS_REMEMBERED = 100_000

Pair = tuple[int, int, int]
"""(subject id, lower device id, higher device id)."""


def has_mock(parts: Sequence[SubjectFixes]) -> bool:
    """Whether any of the fixes is flagged mock: one test over the group."""
    if not parts:
        return False
    flags = np.concatenate([p.flags for p in parts])
    return bool(np.any(flags & FixFlag.MOCK))


def mock_items(fixes: SubjectFixes) -> list[dict[str, Any]]:
    """The mock fixes among ``fixes`` as ``mock_location`` items."""
    rows = np.flatnonzero(fixes.flags & FixFlag.MOCK).tolist()
    return [
        mock_fix_item(
            to_datetime(int(fixes.ts_us[i])),
            float(fixes.lon[i]),
            float(fixes.lat[i]),
            float(fixes.accuracy_m[i]),
            int(fixes.device[i]),
        )
        for i in rows
    ]


class LiveDevices:
    """The pairs of devices this process signalled as live together, and when."""

    def __init__(self) -> None:
        self._told: dict[Pair, datetime] = {}

    def items(
        self, rows: Sequence[Mapping[str, Any]], now: datetime
    ) -> tuple[dict[int, list[dict[str, Any]]], list[Pair]]:
        """``new_device`` items per subject from ``LastSeen.touch``'s rows (a device that
        reported at ``now`` and another of its subject heard from within the overlap), one
        per pair not signalled within :data:`REPEAT_PAIR_S`; and those pairs, to
        :meth:`remember` once the commit has succeeded."""
        out: dict[int, list[dict[str, Any]]] = defaultdict(list)
        pairs: list[Pair] = []
        for row in rows:
            sid, device, other = row["subject_id"], row["device_id"], row["other_id"]
            pair = (sid, min(device, other), max(device, other))
            told = self._told.get(pair)
            if pair in pairs or (told is not None and (now - told).total_seconds() < REPEAT_PAIR_S):
                continue
            pairs.append(pair)
            out[sid].append(
                new_device_item(
                    now,
                    "report",
                    device_fact(device, row["platform"], now),
                    [device_fact(other, row["other_platform"], row["other_seen_at"])],
                )
            )
        return dict(out), pairs

    def remember(self, pairs: Sequence[Pair], now: datetime) -> None:
        if len(self._told) > _PAIRS_REMEMBERED:
            self._told.clear()
        for pair in pairs:
            self._told[pair] = now


async def signal_alerts(
    conn: asyncpg.Connection,
    org_units: dict[int, int],
    items: dict[int, dict[Rule, list[dict[str, Any]]]],
    policy: IntegrityPolicy,
) -> list[AlertOp]:
    """Raise each subject's signals (``items``: subject → rule → items) in subject order:
    unresolved alerts are extended at once, new ones returned as openings for the commit
    to apply with its other alert changes. ``org_units``: each subject's org unit."""
    repository = PostgresIntegrity(conn)
    ops: list[AlertOp] = []
    for sid in sorted(items):
        for rule, found in items[sid].items():
            ops.extend(
                await signal_ops(
                    repository,
                    subject_id=sid,
                    org_unit_id=org_units[sid],
                    rule=rule,
                    items=found,
                    policy=policy,
                )
            )
    return ops


def since(now: datetime, policy: IntegrityPolicy) -> datetime | None:
    """From when another device counts as live (None: the ``new_device`` rule is off)."""
    if not policy.enabled(Rule.NEW_DEVICE):
        return None
    return now - timedelta(seconds=policy.new_device_overlap_s)
