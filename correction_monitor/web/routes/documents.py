"""A proposal's evidence document as a PDF (``service/evidence.py`` reads, audits and draws
it); this route reads the request and sends the file to be shown in the browser, ready to
print."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from correction_monitor.service.evidence import DOCUMENT_READERS, RenderEvidence
from correction_monitor.web.auth import officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.jsonio import refuse_nul
from correction_monitor.web.keys import REQUEST_ID
from correction_monitor.web.params import int_param

routes = web.RouteTableDef()


@routes.get("/api/v1/proposals/{id}/document")
async def proposal_document(request: web.Request) -> web.Response:
    """The evidence bundle of a proposal, zh-CN, A4 (``?purpose=`` is recorded with the
    export; "proposal evidence" when absent)."""
    who = await officer(request, DOCUMENT_READERS)
    proposal_id = int_param(request, "id")
    purpose = request.query.get("purpose") or None
    refuse_nul(purpose)
    command = RenderEvidence(
        actor=who,
        proposal_id=proposal_id,
        purpose=purpose,
        request_id=request.get(REQUEST_ID),
    )
    pdf = await handle(request, command)
    return web.Response(
        body=pdf.content,
        content_type="application/pdf",
        headers={
            "Content-Disposition": (
                f"inline; filename=\"{pdf.file_name}\"; filename*=UTF-8''{quote(pdf.file_name)}"
            ),
            # Evidence about a person: never kept by a shared cache.
            "Cache-Control": "private, no-store",
        },
    )
