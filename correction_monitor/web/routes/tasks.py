"""Task endpoints (二级包保): officers' queues, a task with its steps, a search's steps and
its closing (docs/tasks.md).

Each reads the request, runs one command of ``service/tasks.py`` and renders its result. A
task's ``overdue`` flag is computed at the service's clock.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from correction_monitor.domain.tasks import Task, TaskKind, TaskStatus
from correction_monitor.service.tasks import (
    CompleteTask,
    GetTask,
    ListTasks,
    RecordTaskStep,
)
from correction_monitor.web.auth import officer
from correction_monitor.web.dispatch import handle
from correction_monitor.web.jsonio import json_response, parse_json, parse_model, refuse_nul
from correction_monitor.web.keys import CLOCK, REQUEST_ID
from correction_monitor.web.params import choice_query, id_query, int_param

routes = web.RouteTableDef()

STATUSES = frozenset(s.value for s in TaskStatus)
KINDS = frozenset(k.value for k in TaskKind)


def _json(request: web.Request, task: Task) -> dict[str, Any]:
    return task.to_json(request.app[CLOCK].now())


@routes.get("/api/v1/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    who = await officer(request)
    status = choice_query(request, "status", STATUSES)
    kind = choice_query(request, "kind", KINDS)
    me = request.query.get("assignee") == "me"
    assignee = None if me else id_query(request, "assignee", also="me")
    subject = id_query(request, "subject_id")
    if assignee == 0 or subject == 0:
        return json_response({"tasks": []})
    command = ListTasks(
        actor=who,
        status=TaskStatus(status) if status else None,
        assignee_id=assignee,
        assignee_me=me,
        subject_id=subject,
        kind=TaskKind(kind) if kind else None,
    )
    tasks = await handle(request, command)
    return json_response({"tasks": [_json(request, t) for t in tasks]})


@routes.get("/api/v1/tasks/{id}")
async def get_task(request: web.Request) -> web.Response:
    who = await officer(request)
    found = await handle(request, GetTask(actor=who, task_id=int_param(request, "id")))
    return json_response(_json(request, found.task) | {"steps": [s.to_json() for s in found.steps]})


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    return parse_json(raw) if raw.strip() else {}


class StepIn(BaseModel):
    kind: str = Field(max_length=40)
    note: str | None = Field(default=None, max_length=4000)
    at: str | int | float | None = None


@routes.post("/api/v1/tasks/{id}/steps")
async def record_step(request: web.Request) -> web.Response:
    who = await officer(request)
    task_id = int_param(request, "id")
    body = parse_model(StepIn, await _body(request))
    refuse_nul(body.note)
    command = RecordTaskStep(
        actor=who,
        task_id=task_id,
        kind=body.kind,
        note=body.note,
        at=body.at,
        request_id=request.get(REQUEST_ID),
    )
    step = await handle(request, command)
    return json_response(step.to_json(), status=201)


class DoneIn(BaseModel):
    outcome: str | None = Field(default=None, max_length=40)
    note: str | None = Field(default=None, max_length=4000)


@routes.post("/api/v1/tasks/{id}/done")
async def done(request: web.Request) -> web.Response:
    who = await officer(request)
    task_id = int_param(request, "id")
    body = parse_model(DoneIn, await _body(request))
    refuse_nul(body.note)
    command = CompleteTask(
        actor=who,
        task_id=task_id,
        outcome=body.outcome,
        note=body.note,
        request_id=request.get(REQUEST_ID),
    )
    return json_response(_json(request, await handle(request, command)))
