"""Night patrols (夜间巡查): teams, plans per unit and night, supervisors' edits, publishing,
the forecast and the nightly job (docs/patrols.md).

A plan for unit U covers the subjects of U and every unit below it, visited by U's active
teams. Who goes on a night follows ``domain/patrol.py``; where and in which order, the
routing module (``domain/routing.py``), run off the event loop. Every creation, edit and
publication is audited (who, when, why) and becomes an event; a read of a plan is audited as
patrol preparation, since the plan tells whom officers will visit at home tonight.
"""

from __future__ import annotations

import asyncio
import secrets
import time as clocktime
from collections import deque
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from correction_monitor.adapters import errors as stored
from correction_monitor.domain import patrol
from correction_monitor.domain.access import Principal
from correction_monitor.domain.clock import Clock
from correction_monitor.domain.events import DomainEvent, EventName
from correction_monitor.domain.models import OrgUnit, SupervisionLevel
from correction_monitor.domain.patrol import (
    NewPatrolTeam,
    PatrolSubject,
    PatrolTeam,
    Plan,
    PlanRoute,
)
from correction_monitor.domain.routing import RoutingProblem, RoutingResult, solve
from correction_monitor.policy import Policy
from correction_monitor.service.command import Command
from correction_monitor.service.errors import Conflict, InvalidInput, NotFound
from correction_monitor.service.fences import FenceInputError, circle_centre
from correction_monitor.service.jurisdiction import visible_unit
from correction_monitor.service.unit_of_work import UnitOfWork
from geofences.crs import CRS

log = structlog.get_logger("correction_monitor.patrols")

PAST_DAYS = 7
"""Plans may be made for nights this many days back (patrols made without a plan)."""
AHEAD_DAYS = 30
"""... and this many days ahead."""
MAX_FORECAST_NIGHTS = 120
LOAD_DAYS = 30
"""Team loads are levelled over this many nights."""
FORECAST_BUDGET_S = 15.0
"""A forecast's total solver time: each night gets ``min(solver_seconds, budget / nights)``."""
EDIT_SOLVER_S = 1.0
PREPARATION = "patrol preparation"


@dataclass(frozen=True, slots=True)
class PlacedPlan:
    """A plan with its unit's code, as the API shows it."""

    plan: Plan
    org_unit: str


@dataclass(frozen=True, slots=True)
class PlacedTeam:
    team: PatrolTeam
    org_unit: str


@dataclass(frozen=True, slots=True)
class ForecastResult:
    nights: tuple[PlacedPlan, ...]
    overdue: tuple[tuple[int, date], ...]
    runtime_s: float


# -- teams -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateTeam(Command[PlacedTeam]):
    who: Principal
    org_unit: str
    name: str
    lon: float
    lat: float
    crs: str
    capacity: int
    window_start: time
    window_end: time
    speed_kmh: float | None
    stop_minutes: float | None
    request_id: str | None = None


async def create_team(command: CreateTeam, uow: UnitOfWork, *, policy: Policy) -> PlacedTeam:
    """A new patrol team of a unit in the caller's jurisdiction; its start point is stored
    in WGS-84 (converted from ``crs``), speed and stop minutes default from the policy."""
    try:
        crs = CRS(command.crs)
        lon, lat = circle_centre({"coordinates": [command.lon, command.lat]}, crs)
    except ValueError:
        raise InvalidInput(
            "invalid_request", "'start.crs' must be wgs84, gcj02 or bd09", field="start"
        ) from None
    except FenceInputError as exc:
        raise InvalidInput("invalid_request", str(exc), field="start") from None
    if command.window_start == command.window_end:
        raise InvalidInput("invalid_request", "the window must not be empty", field="window")
    async with uow:
        unit = await visible_unit(uow, command.who, command.org_unit)
        team = await uow.patrols.add_team(
            NewPatrolTeam(
                org_unit_id=unit.id,
                name=command.name,
                lon=lon,
                lat=lat,
                crs=crs.value,
                capacity=command.capacity,
                window_start=command.window_start,
                window_end=command.window_end,
                speed_kmh=command.speed_kmh or policy.patrol.default_speed_kmh,
                stop_minutes=(
                    command.stop_minutes
                    if command.stop_minutes is not None
                    else policy.patrol.default_stop_minutes
                ),
                created_by=command.who.officer_id,
            )
        )
        if team is None:
            raise Conflict("team_exists", f"{unit.code} has a team named {command.name!r}")
        uow.audit(
            officer_id=command.who.officer_id,
            action="patrol_team.create",
            request_id=command.request_id,
            detail={"team_id": team.id, "org_unit": unit.code, "name": team.name},
        )
    return PlacedTeam(team, unit.code)


@dataclass(frozen=True, slots=True)
class ListTeams(Command[list[PlacedTeam]]):
    who: Principal
    org_unit: str | None


async def list_teams(command: ListTeams, uow: UnitOfWork) -> list[PlacedTeam]:
    async with uow:
        if command.org_unit is not None:
            unit = await visible_unit(uow, command.who, command.org_unit)
            scope: frozenset[int] | None = frozenset({unit.id})
        else:
            scope = command.who.scope
        teams = await uow.patrols.teams_in(scope)
        codes = await uow.org_units.codes_by_id({t.org_unit_id for t in teams})
    return [PlacedTeam(t, codes[t.org_unit_id]) for t in teams]


# -- planning --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Situation:
    """What planning a unit's nights reads once: its teams, subjects and loads."""

    unit: OrgUnit
    teams: tuple[PatrolTeam, ...]
    subjects: tuple[PatrolSubject, ...]
    loads: dict[int, deque[tuple[date, int, int]]]


async def _situation(
    uow: UnitOfWork, unit: OrgUnit, first: date, last: date, policy: Policy, now: datetime
) -> Situation:
    """The unit's active teams, its subtree's subjects as of ``first`` (with leaves meeting
    any night up to ``last``) and the teams' stops over the nights before ``first``."""
    teams = tuple(t for t in await uow.patrols.teams_in(frozenset({unit.id})) if t.active)
    if not teams:
        raise InvalidInput("no_teams", f"{unit.code} has no active patrol team", field="org_unit")
    tz = ZoneInfo(unit.timezone)
    today = now.astimezone(tz).date()
    rows = await uow.patrols.subjects(await uow.patrols.subtree(unit.id), first, today)
    ids = [r["id"] for r in rows]
    windows = [t.window for t in teams]
    span_from = patrol.night_span(first, unit.timezone, windows)[0]
    span_to = patrol.night_span(last, unit.timezone, windows)[1]
    leaves = await uow.patrols.approved_leaves(ids, span_from, span_to)
    as_of = min(now, span_from)
    p = policy.patrol
    risks = await uow.patrols.risks(
        ids,
        as_of - timedelta(days=p.risk_lookback_days),
        as_of - timedelta(days=p.risk_recent_sanction_days),
        as_of,
    )
    subjects = tuple(
        PatrolSubject(
            subject_id=r["id"],
            every_days=policy.levels[SupervisionLevel(r["level"])].patrol_every_days,
            term_start=r["term_start"],
            term_end=r["term_end"],
            home=r["home"],
            last_visit=r["last_visit"],
            active=r["active"],
            leaves=tuple(leaves.get(r["id"], ())),
            risk=risks.get(r["id"], patrol.RiskFacts()),
        )
        for r in rows
    )
    recent = await uow.patrols.recent_loads(
        [t.id for t in teams], first - timedelta(days=LOAD_DAYS), first
    )
    # The window's past loads as one entry per team dated the window's start.
    loads = {
        t.id: deque([(first - timedelta(days=LOAD_DAYS), t.id, recent.get(t.id, 0))]) for t in teams
    }
    return Situation(unit, teams, subjects, loads)


def _loads_before(situation: Situation, night: date) -> dict[int, int]:
    since = night - timedelta(days=LOAD_DAYS)
    out = {}
    for team_id, entries in situation.loads.items():
        while entries and entries[0][0] < since:
            entries.popleft()
        out[team_id] = sum(n for _, _, n in entries)
    return out


def _prepare(
    situation: Situation, night: date, seed: int, policy: Policy, time_limit_s: float
) -> tuple[patrol.Selection, RoutingProblem]:
    teams = situation.teams
    span = patrol.night_span(night, situation.unit.timezone, [t.window for t in teams])
    total = sum(t.capacity for t in teams)
    selection = patrol.select(situation.subjects, night, seed, policy.patrol, span, total)
    shares = patrol.split_capacity(
        len(selection.chosen),
        {t.id: t.capacity for t in teams},
        _loads_before(situation, night),
    )
    problem = patrol.routing_problem(
        selection.chosen, teams, shares, policy.patrol, seed, time_limit_s
    )
    return selection, problem


def _plan_of(
    situation: Situation,
    night: date,
    seed: int,
    selection: patrol.Selection,
    result: RoutingResult,
) -> Plan:
    reference = patrol.reference_instant(night, ZoneInfo(situation.unit.timezone))
    routes, unassigned = patrol.assemble(
        result,
        {c.subject_id: c.reasons for c in selection.chosen},
        reference,
        selection.left_out,
    )
    return Plan(
        id=None,
        org_unit_id=situation.unit.id,
        night=night,
        seed=seed,
        status="draft",
        routes=routes,
        unassigned=unassigned,
        solver={
            "feasible": bool(result.feasible),
            "objective": float(result.objective),
            "runtime_s": round(float(result.runtime_s), 3),
            "drawn": len(selection.chosen),
            "candidates": len(situation.subjects),
        },
    )


async def _solve(problem: RoutingProblem) -> RoutingResult:
    if not problem.stops or not problem.teams:
        return RoutingResult(routes=(), unassigned=(), feasible=True, objective=0.0, runtime_s=0.0)
    return await asyncio.to_thread(solve, problem)


def _check_night(night: date, today: date) -> None:
    if not today - timedelta(days=PAST_DAYS) <= night <= today + timedelta(days=AHEAD_DAYS):
        raise InvalidInput(
            "invalid_date",
            f"plans are made for nights from {PAST_DAYS} days ago to {AHEAD_DAYS} days ahead",
            field="date",
        )


@dataclass(frozen=True, slots=True)
class CreatePlan(Command[PlacedPlan]):
    """Plan a unit's night (``who`` None: the nightly job, for ``org_unit_id``); a draft for
    the same night is replaced, a published one is a conflict. ``seed`` None: drawn."""

    who: Principal | None
    org_unit: str | None
    night: date
    seed: int | None = None
    org_unit_id: int | None = None
    request_id: str | None = None


async def create_plan(
    command: CreatePlan, uow: UnitOfWork, *, policy: Policy, clock: Clock
) -> PlacedPlan:
    seed = command.seed if command.seed is not None else secrets.randbits(62)
    now = clock.now()
    async with uow:
        if command.who is not None:
            assert command.org_unit is not None
            unit = await visible_unit(uow, command.who, command.org_unit)
        else:
            assert command.org_unit_id is not None
            unit = await uow.org_units.get(command.org_unit_id)
        _check_night(command.night, now.astimezone(ZoneInfo(unit.timezone)).date())
        await uow.patrols.lock_night(unit.id, command.night)
        existing = await uow.patrols.plan_for(unit.id, command.night)
        if existing is not None and existing.status == "published":
            raise Conflict(
                "plan_published",
                f"the plan for {command.night.isoformat()} is published (id {existing.id})",
            )
        situation = await _situation(uow, unit, command.night, command.night, policy, now)
        selection, problem = _prepare(
            situation, command.night, seed, policy, policy.patrol.solver_seconds
        )
        plan = _plan_of(situation, command.night, seed, selection, await _solve(problem))
        if existing is not None:
            assert existing.id is not None
            await uow.patrols.delete_plan(existing.id)
        officer_id = command.who.officer_id if command.who else None
        plan = replace(plan, id=await uow.patrols.add_plan(plan, now, officer_id))
        detail: dict[str, Any] = {
            "plan_id": plan.id,
            "org_unit": unit.code,
            "night": plan.night.isoformat(),
            "seed": seed,
            "seed_given": command.seed is not None,
            "stops": len(plan.subject_ids()),
            "unassigned": len(plan.unassigned),
            "replaced_plan_id": existing.id if existing else None,
            "by": "officer" if command.who else "nightly job",
        }
        uow.audit(
            officer_id=officer_id,
            action="patrol_plan.create",
            request_id=command.request_id,
            detail=detail,
        )
        uow.emit(DomainEvent(EventName.PATROL_PLAN_CREATED, unit.id, data=detail))
    return PlacedPlan(plan, unit.code)


async def _visible_plan(
    uow: UnitOfWork, who: Principal, plan_id: int, *, for_update: bool = False
) -> Plan:
    try:
        plan = await uow.patrols.get_plan(plan_id, for_update=for_update)
    except stored.NotFound:
        raise NotFound(f"patrol plan {plan_id}") from None
    if not who.sees(plan.org_unit_id):
        raise NotFound(f"patrol plan {plan_id}")
    return plan


@dataclass(frozen=True, slots=True)
class GetPlan(Command[PlacedPlan]):
    who: Principal
    plan_id: int
    request_id: str | None = None


async def get_plan(command: GetPlan, uow: UnitOfWork) -> PlacedPlan:
    """A plan in the caller's jurisdiction; the read is audited as patrol preparation."""
    async with uow:
        plan = await _visible_plan(uow, command.who, command.plan_id)
        unit = await uow.org_units.get(plan.org_unit_id)
        uow.audit(
            officer_id=command.who.officer_id,
            action="patrol_plan.read",
            purpose=PREPARATION,
            request_id=command.request_id,
            detail={"plan_id": plan.id, "stops": len(plan.subject_ids())},
        )
    return PlacedPlan(plan, unit.code)


PLAN_LIST_LIMIT = 100
"""At most this many plans in one list, the latest nights first."""


@dataclass(frozen=True, slots=True)
class ListPlans(Command[list[PlacedPlan]]):
    """The plans in the caller's jurisdiction (of one unit and its stations, one night, one
    status when given): how an officer's phone finds tonight's plan."""

    who: Principal
    org_unit: str | None = None
    night: date | None = None
    status: str | None = None
    request_id: str | None = None


async def list_plans(command: ListPlans, uow: UnitOfWork) -> list[PlacedPlan]:
    """Audited, like reading one plan, as patrol preparation."""
    async with uow:
        scope = command.who.scope
        if command.org_unit is not None:
            unit = await visible_unit(uow, command.who, command.org_unit)
            scope = await uow.patrols.subtree(unit.id)
        ids = await uow.patrols.plan_ids(scope, command.night, command.status, PLAN_LIST_LIMIT)
        plans = [await uow.patrols.get_plan(plan_id) for plan_id in ids]
        codes = await uow.org_units.codes_by_id({p.org_unit_id for p in plans})
        uow.audit(
            officer_id=command.who.officer_id,
            action="patrol_plan.list",
            purpose=PREPARATION,
            request_id=command.request_id,
            detail={"plan_ids": ids},
        )
    return [PlacedPlan(p, codes[p.org_unit_id]) for p in plans]


@dataclass(frozen=True, slots=True)
class PublishPlan(Command[PlacedPlan]):
    who: Principal
    plan_id: int
    request_id: str | None = None


async def publish_plan(command: PublishPlan, uow: UnitOfWork, *, clock: Clock) -> PlacedPlan:
    async with uow:
        plan = await _visible_plan(uow, command.who, command.plan_id, for_update=True)
        if plan.status == "published":
            raise Conflict("plan_published", f"patrol plan {plan.id} is published already")
        assert plan.id is not None
        await uow.patrols.publish(plan.id, clock.now(), command.who.officer_id)
        unit = await uow.org_units.get(plan.org_unit_id)
        detail = {"plan_id": plan.id, "org_unit": unit.code, "night": plan.night.isoformat()}
        uow.audit(
            officer_id=command.who.officer_id,
            action="patrol_plan.publish",
            request_id=command.request_id,
            detail=detail,
        )
        uow.emit(DomainEvent(EventName.PATROL_PLAN_PUBLISHED, unit.id, data=detail))
    return PlacedPlan(replace(plan, status="published"), unit.code)


# -- a supervisor's edits of a draft ---------------------------------------------------------

EDIT_OPS = ("swap", "remove", "add")


@dataclass(frozen=True, slots=True)
class EditPlan(Command[PlacedPlan]):
    """``remove`` a stop; ``add`` a subject (to ``team_id``, or the team with most room);
    ``swap`` a planned subject with ``with_subject_id``: two planned subjects exchange teams,
    an unplanned one takes the other's place. Each needs a reason."""

    who: Principal
    plan_id: int
    op: str
    subject_id: int
    reason: str
    with_subject_id: int | None = None
    team_id: int | None = None
    request_id: str | None = None


def _route_members(plan: Plan) -> dict[int, list[tuple[int, list[dict[str, object]]]]]:
    return {r.team_id: [(s.subject_id, list(s.reasons)) for s in r.stops] for r in plan.routes}


async def edit_plan(
    command: EditPlan, uow: UnitOfWork, *, policy: Policy, clock: Clock
) -> PlacedPlan:
    if command.op not in EDIT_OPS:
        raise InvalidInput(
            "invalid_request", f"'op' must be one of {', '.join(EDIT_OPS)}", field="op"
        )
    if not command.reason.strip():
        raise InvalidInput("invalid_request", "an edit needs a reason", field="reason")
    if command.op == "swap" and command.with_subject_id is None:
        raise InvalidInput(
            "invalid_request", "'swap' needs 'with_subject_id'", field="with_subject_id"
        )
    now = clock.now()
    async with uow:
        plan = await _visible_plan(uow, command.who, command.plan_id, for_update=True)
        if plan.status != "draft":
            raise Conflict("plan_published", f"patrol plan {plan.id} is published: not editable")
        unit = await uow.org_units.get(plan.org_unit_id)
        situation = await _situation(uow, unit, plan.night, plan.night, policy, now)
        teams = {t.id: t for t in situation.teams}
        members = _route_members(plan)
        planned = {sid: team for team, stops in members.items() for sid, _ in stops}
        unassigned = [u for u in plan.unassigned]
        note = {"code": "", "detail": command.reason.strip(), "weight": 0.0}

        def eligible(subject_id: int) -> list[dict[str, object]]:
            """The reasons a subject not on the plan may be added with; 400 otherwise."""
            subject = next((s for s in situation.subjects if s.subject_id == subject_id), None)
            if subject is None:
                raise NotFound(f"subject {subject_id}")
            span = patrol.night_span(plan.night, unit.timezone, [t.window for t in situation.teams])
            why = patrol.exclusion(subject, plan.night, span)
            if why is not None:
                raise InvalidInput(
                    "not_plannable", f"subject {subject_id}: {why}", field="subject_id"
                )
            return [r.to_json() for r in patrol.risk_reasons(subject, plan.night, policy.patrol)]

        changed: set[int] = set()
        sid = command.subject_id
        if command.op == "remove":
            if sid not in planned:
                raise InvalidInput(
                    "not_planned", f"subject {sid} is not on the plan", field="subject_id"
                )
            team = planned[sid]
            members[team] = [m for m in members[team] if m[0] != sid]
            unassigned.append((sid, f"{patrol.REMOVED}: {command.reason.strip()}"))
            changed.add(team)
        elif command.op == "add":
            if sid in planned:
                raise InvalidInput(
                    "already_planned", f"subject {sid} is on the plan", field="subject_id"
                )
            reasons = [{**note, "code": patrol.ADDED}, *eligible(sid)]
            if command.team_id is not None:
                if command.team_id not in teams:
                    raise InvalidInput(
                        "unknown_team",
                        f"team {command.team_id} does not patrol here",
                        field="team_id",
                    )
                team = command.team_id
            else:
                team = max(teams, key=lambda t: (teams[t].capacity - len(members.get(t, [])), -t))
            if len(members.get(team, [])) >= teams[team].capacity:
                raise Conflict("over_capacity", f"team {team} has no room left tonight")
            members.setdefault(team, []).append((sid, reasons))
            unassigned = [u for u in unassigned if u[0] != sid]
            changed.add(team)
        else:
            other = command.with_subject_id
            assert other is not None
            if sid not in planned:
                raise InvalidInput(
                    "not_planned", f"subject {sid} is not on the plan", field="subject_id"
                )
            team = planned[sid]
            mine = next(m for m in members[team] if m[0] == sid)
            if other in planned:
                theirs_team = planned[other]
                if theirs_team == team:
                    raise InvalidInput(
                        "same_team", "both subjects are on the same route", field="with_subject_id"
                    )
                theirs = next(m for m in members[theirs_team] if m[0] == other)
                members[team] = [m for m in members[team] if m[0] != sid] + [theirs]
                members[theirs_team] = [m for m in members[theirs_team] if m[0] != other] + [mine]
                changed |= {team, theirs_team}
            else:
                reasons = [{**note, "code": patrol.SWAPPED_IN}, *eligible(other)]
                members[team] = [m for m in members[team] if m[0] != sid] + [(other, reasons)]
                unassigned = [u for u in unassigned if u[0] != other]
                unassigned.append((sid, f"{patrol.REMOVED}: {command.reason.strip()}"))
                changed.add(team)
        routes = {r.team_id: r for r in plan.routes}
        homes = {s.subject_id: s.home for s in situation.subjects}
        reference = patrol.reference_instant(plan.night, ZoneInfo(unit.timezone))
        for team_id in sorted(changed):
            routes[team_id] = await _reroute(
                teams[team_id], members[team_id], homes, reference, plan.seed, policy
            )
        new = replace(
            plan,
            routes=tuple(routes[t] for t in sorted(routes) if routes[t].stops),
            unassigned=tuple(sorted(set(unassigned))),
        )
        await uow.patrols.replace_routes(new)
        detail: dict[str, Any] = {
            "plan_id": plan.id,
            "op": command.op,
            "subject_id": sid,
            "with_subject_id": command.with_subject_id,
            "team_ids": sorted(changed),
            "reason": command.reason.strip(),
        }
        uow.audit(
            officer_id=command.who.officer_id,
            action="patrol_plan.edit",
            subject_id=sid,
            request_id=command.request_id,
            detail=detail,
        )
        uow.emit(DomainEvent(EventName.PATROL_PLAN_EDITED, unit.id, data=detail))
    return PlacedPlan(new, unit.code)


async def _reroute(
    team: PatrolTeam,
    members: list[tuple[int, list[dict[str, object]]]],
    homes: dict[int, tuple[float, float] | None],
    reference: datetime,
    seed: int,
    policy: Policy,
) -> PlanRoute:
    """The team's route through exactly ``members`` (all required), re-ordered; 409 when
    they no longer fit its window."""
    if not members:
        return PlanRoute(team.id, (), 0.0, 0.0)
    stops = []
    for sid, _ in members:
        home = homes.get(sid)
        if home is None:
            raise InvalidInput("not_plannable", f"subject {sid} has no home", field="subject_id")
        stops.append(patrol.Candidate(sid, home[0], home[1], 1.0, True, ()))
    problem = patrol.routing_problem(
        stops,
        [team],
        {team.id: len(stops)},
        policy.patrol,
        seed,
        min(EDIT_SOLVER_S, policy.patrol.solver_seconds),
    )
    result = await _solve(problem)
    if result.unassigned or not result.feasible:
        raise Conflict("does_not_fit", f"the stops no longer fit team {team.id}'s window")
    reasons = {sid: [patrol.Reason("", "")] for sid, _ in members}
    (route,), _ = patrol.assemble(result, reasons, reference)
    given = dict(members)
    return replace(
        route,
        stops=tuple(replace(s, reasons=tuple(given[s.subject_id])) for s in route.stops),
    )


# -- the forecast ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Forecast(Command[ForecastResult]):
    who: Principal
    org_unit: str
    start: date
    nights: int
    seed: int | None = None


async def forecast(
    command: Forecast, uow: UnitOfWork, *, policy: Policy, clock: Clock
) -> ForecastResult:
    """The plans of ``nights`` nights from ``start`` if every planned visit happens, and who
    would still go overdue; nothing is stored."""
    if not 1 <= command.nights <= MAX_FORECAST_NIGHTS:
        raise InvalidInput(
            "invalid_request", f"'nights' must be 1..{MAX_FORECAST_NIGHTS}", field="nights"
        )
    seed = command.seed if command.seed is not None else secrets.randbits(62)
    began = clocktime.perf_counter()
    last = command.start + timedelta(days=command.nights - 1)
    async with uow:
        unit = await visible_unit(uow, command.who, command.org_unit)
        situation = await _situation(uow, unit, command.start, last, policy, clock.now())
    limit = min(policy.patrol.solver_seconds, FORECAST_BUDGET_S / command.nights)
    plans: list[PlacedPlan] = []
    overdue: dict[tuple[int, date], date] = {}
    for offset in range(command.nights):
        night = command.start + timedelta(days=offset)
        selection, problem = _prepare(situation, night, seed, policy, limit)
        plan = _plan_of(situation, night, seed, selection, await _solve(problem))
        plans.append(PlacedPlan(plan, unit.code))
        went = plan.subject_ids()
        span = patrol.night_span(night, unit.timezone, [t.window for t in situation.teams])
        for s in situation.subjects:
            if s.subject_id in went or patrol.exclusion(s, night, span) is not None:
                continue
            due = patrol.due_window(s).due
            if night > due:
                overdue.setdefault((s.subject_id, due), night)
        for route in plan.routes:
            situation.loads[route.team_id].append((night, route.team_id, len(route.stops)))
        situation = replace(
            situation, subjects=tuple(patrol.visited(situation.subjects, went, night))
        )
    return ForecastResult(
        tuple(plans),
        tuple(sorted((sid, first) for (sid, _), first in overdue.items())),
        clocktime.perf_counter() - began,
    )


# -- the nightly job -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanComingNights(Command[list[int]]):
    """The nightly job's tick: every unit with active teams whose local time is past
    ``plan_at`` and whose tonight has no plan yet gets a draft. Returns the plans' ids."""

    now: datetime


async def plan_coming_nights(
    command: PlanComingNights, uow: UnitOfWork, *, policy: Policy, clock: Clock
) -> list[int]:
    async with uow:
        unit_ids = await uow.patrols.units_with_teams()
        units = [await uow.org_units.get(u) for u in unit_ids]
        due = []
        for unit in units:
            local = command.now.astimezone(ZoneInfo(unit.timezone))
            if local.time() < policy.patrol.plan_at:
                continue
            if await uow.patrols.plan_exists(unit.id, local.date()):
                continue
            due.append((unit, local.date()))
    made = []
    for unit, night in due:
        try:
            placed = await create_plan(
                CreatePlan(who=None, org_unit=None, night=night, org_unit_id=unit.id),
                uow,
                policy=policy,
                clock=clock,
            )
        except (InvalidInput, Conflict) as exc:
            log.warning("nightly patrol plan not made", org_unit=unit.code, error=exc.message)
            continue
        assert placed.plan.id is not None
        made.append(placed.plan.id)
    return made
