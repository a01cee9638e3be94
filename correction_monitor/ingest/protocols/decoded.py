"""The outcome of decoding one phone request: accepted raw fixes and refused ones."""

from __future__ import annotations

from dataclasses import dataclass, field

from correction_monitor.domain.fixes import RawFix, Rejection
from correction_monitor.ingest.batch import FixBatch, normalize


@dataclass(slots=True)
class Decoded:
    """Fixes decoded from one request, with the request index of each.

    ``indexes[i]`` is the position in the request of ``fixes[i]`` (0 for protocols that
    carry one fix a request), so acceptances and ``rejected`` can both be reported against
    the caller's numbering. ``device_ref`` is the device identifier the request names
    itself (OsmAnd ``id``), or None when the protocol identifies the device elsewhere
    (bearer token, HTTP Basic user) or the request names none.
    """

    device_ref: str | None
    fixes: list[RawFix] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    indexes: list[int] = field(default_factory=list)

    def normalized(self) -> FixBatch:
        """The normalize stage over these fixes, the decoder's refusals kept with it."""
        batch = normalize(self.fixes, self.indexes)
        batch.rejected[:0] = self.rejected
        return batch
