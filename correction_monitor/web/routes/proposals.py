"""Proposal endpoints: list and read the legal ladder's proposals in the caller's
jurisdiction, and decide one (county administrators and admins). Each reads the request,
runs one command of ``service/proposals.py`` and renders the contract's Proposal.

An approved level change takes effect at once: this process drops the subject's compiled
profile, so its next fix is evaluated at the new level (others within the cache's minute).
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from correction_monitor.domain.ladder import Measure, ProposalStatus
from correction_monitor.service.proposals import (
    DECIDERS,
    DecideProposal,
    GetProposal,
    ListProposals,
)
from correction_monitor.web.auth import officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.jsonio import json_response, parse_model, read_json
from correction_monitor.web.keys import PROFILES, REQUEST_ID
from correction_monitor.web.params import choice_query, id_query, int_param

routes = web.RouteTableDef()

STATUSES = frozenset(s.value for s in ProposalStatus)


@routes.get("/api/v1/proposals")
async def list_proposals(request: web.Request) -> web.Response:
    who = await officer(request)
    status = choice_query(request, "status", STATUSES)
    subject_id = id_query(request, "subject_id")
    if subject_id == 0:
        return json_response({"proposals": []})
    command = ListProposals(
        actor=who,
        subject_id=subject_id,
        status=ProposalStatus(status) if status is not None else None,
    )
    found = await handle(request, command)
    return json_response({"proposals": [p.to_json() for p in found]})


@routes.get("/api/v1/proposals/{id}")
async def get_proposal(request: web.Request) -> web.Response:
    who = await officer(request)
    command = GetProposal(actor=who, proposal_id=int_param(request, "id"))
    return json_response((await handle(request, command)).to_json())


class DecideIn(BaseModel):
    decision: Literal["approved", "rejected"]
    note: str | None = Field(default=None, max_length=4000)


@routes.post("/api/v1/proposals/{id}/decide")
async def decide(request: web.Request) -> web.Response:
    who = await officer(request, DECIDERS)
    proposal_id = int_param(request, "id")
    body = parse_model(DecideIn, await read_json(request))
    command = DecideProposal(
        actor=who,
        proposal_id=proposal_id,
        decision=ProposalStatus(body.decision),
        note=body.note,
        request_id=request.get(REQUEST_ID),
    )
    decided = await handle(request, command)
    if decided.measure is Measure.LEVEL_CHANGE and decided.status is ProposalStatus.APPROVED:
        request.app[PROFILES].forget(decided.subject_id)
    return json_response(decided.to_json())
