"""Leave (外出, RULES.md §2): a subject's permission to be away, pure rules.

An approved leave makes its destination count as inside the subject's activity area while it
runs, for fix evaluation and for check-ins alike (docs/leave.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ApprovedLeave:
    """An approved leave as the rest of the service uses it: its closed span
    ``[starts_at, ends_at]`` (aware UTC instants; an end given as a date is the last
    microsecond of that day in the station's time zone) and the fence of its destination."""

    leave_id: int
    starts_at: datetime
    ends_at: datetime
    destination_fence_id: int
