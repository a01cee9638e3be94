"""Phone protocol decoders: request parts in, raw fixes and per-fix rejections out.

Pure functions, no I/O: the HTTP layer hands them a body or query parameters and maps a
:class:`DecodeError` to a 4xx answer. One module a protocol: :mod:`.native` (our own
``POST /api/v1/fixes``), :mod:`.osmand` (Traccar Client / OsmAnd), :mod:`.owntracks`
(OwnTracks HTTP mode).
"""

from correction_monitor.ingest.protocols.decoded import Decoded
from correction_monitor.ingest.protocols.errors import (
    DECODE_ERROR_CODES,
    REJECTION_REASONS,
    DecodeError,
)
from correction_monitor.ingest.protocols.native import decode_native
from correction_monitor.ingest.protocols.osmand import decode_osmand_json, decode_osmand_query
from correction_monitor.ingest.protocols.owntracks import decode_owntracks

__all__ = [
    "DECODE_ERROR_CODES",
    "REJECTION_REASONS",
    "DecodeError",
    "Decoded",
    "decode_native",
    "decode_osmand_json",
    "decode_osmand_query",
    "decode_owntracks",
]
