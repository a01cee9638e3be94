"""Notifications to officers outside the service: what each channel's receiver gets, how it
is signed, how its answer is judged, and how a robot's rate limit folds a burst into a digest.

Pure functions only; the sender (``service/notifications.py``) claims deliveries, builds a
request here, sends it through an HTTP adapter and records the outcome. Signatures follow
each receiver's documentation exactly (docs/notifications.md):

- webhook: ``X-CM-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed by the secret>``;
- 钉钉 (DingTalk) robot: ``&timestamp=<ms>&sign=<urlencoded base64 HMAC-SHA256 of
  "<ms>\\n<secret>", keyed by the secret>`` added to the robot's url;
- 企业微信 (WeCom) group robot: the key is in the url, nothing is signed;
- 阿里云短信 (Alibaba Cloud SMS) ``SendSms``: RPC style, ``HMAC-SHA1`` signature version 1.0
  over the percent-encoded, sorted parameters, keyed by ``AccessKeySecret + "&"``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote, quote_plus
from zoneinfo import ZoneInfo

import orjson

from correction_monitor.domain.timeutil import iso


class ChannelKind(StrEnum):
    WEBHOOK = "webhook"
    WECOM = "wecom"  # 企业微信 group robot
    DINGTALK = "dingtalk"  # 钉钉 custom robot
    SMS = "sms"  # officers' phones through an SMS provider


ROBOT_KINDS = frozenset({ChannelKind.WECOM, ChannelKind.DINGTALK})
"""Group robots take a limited number of messages a minute (20 for both): their deliveries
go through the rate limit and fold into digests."""


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DIGESTED = "digested"  # folded into a digest message (``digest_id``)
    FAILED = "failed"  # gave up after the policy's max_attempts


class SmsProvider(StrEnum):
    ALIYUN = "aliyun"


@dataclass(frozen=True, slots=True)
class Channel:
    """Where an org unit's notifications go. ``secret`` signs (webhook, DingTalk) or is the
    provider's access key secret (SMS); it is never shown. ``settings`` holds what is not
    secret (an SMS signature name, template code, phone numbers)."""

    id: int
    org_unit_id: int
    kind: ChannelKind
    url: str
    secret: str | None
    settings: dict[str, Any]
    events: tuple[str, ...]
    active: bool
    created_by: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Notice:
    """One event as the renderers need it: the event log's row with its org unit's code and
    time zone, for events about a subject the subject's name and, for a task's events, the
    name of the officer holding the task (its ``assignee_id``: after an escalation, the one
    it was handed to)."""

    event_id: int
    event: str
    occurred_at: datetime
    org_unit: str | None
    timezone: str
    subject_id: int | None
    subject_name: str | None
    alert_id: int | None
    data: dict[str, Any]
    assignee_name: str | None = None


class Acceptance(StrEnum):
    """How a receiver's answer is judged."""

    HTTP_2XX = "http_2xx"  # webhook: any 2xx
    ERRCODE_ZERO = "errcode_zero"  # robots: 200 with {"errcode": 0}
    ALIYUN_OK = "aliyun_ok"  # Alibaba Cloud: 200 with {"Code": "OK"}


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    """One HTTP request to a receiver, body exactly as signed."""

    url: str
    body: bytes
    headers: dict[str, str]
    acceptance: Acceptance
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class Answer:
    """A receiver's answer; ``status`` 0 when none came (refused, timed out), with
    ``error`` saying why."""

    status: int
    body: bytes = b""
    error: str | None = None


def judge(acceptance: Acceptance, answer: Answer) -> str | None:
    """None when ``answer`` means delivered; otherwise a short reason to keep with the
    delivery (shown to administrators; never the request, which may carry secrets)."""
    if answer.status == 0:
        return answer.error or "no answer"
    if acceptance is Acceptance.HTTP_2XX:
        return None if 200 <= answer.status < 300 else f"HTTP {answer.status}"
    if answer.status != 200:
        return f"HTTP {answer.status}"
    try:
        parsed = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return "HTTP 200 with a body that is not JSON"
    if not isinstance(parsed, dict):
        return "HTTP 200 with a body that is not a JSON object"
    if acceptance is Acceptance.ERRCODE_ZERO:
        if parsed.get("errcode") == 0:
            return None
        return f"errcode {parsed.get('errcode')!r}: {str(parsed.get('errmsg', ''))[:200]}"
    if parsed.get("Code") == "OK":
        return None
    return f"Code {parsed.get('Code')!r}: {str(parsed.get('Message', ''))[:200]}"


# -- deliveries ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery this sender holds until ``next_attempt_at`` (its lease); ``attempts``
    counts this one and fences the outcome."""

    id: int
    channel_id: int
    event_id: int
    attempts: int


@dataclass(frozen=True, slots=True)
class RobotMinute:
    """A robot channel's rolling minute: messages sent in it, and when the oldest of them
    leaves it (None when none)."""

    sent: int
    oldest: datetime | None


@dataclass(frozen=True, slots=True)
class Failure:
    id: int
    attempts: int
    retry_at: datetime
    error: str
    give_up: bool


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: int
    event_id: int
    event: str | None
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    delivered_at: datetime | None
    digest_id: int | None
    created_at: datetime


# -- retries ---------------------------------------------------------------------------------


def retry_delay_s(attempts: int, base_s: float, max_s: float, rand: float | None = None) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: ``base_s`` doubling
    per attempt, with up to a quarter more of jitter (so receivers coming back are not hit by
    every sender at once), never beyond ``max_s``.

    >>> retry_delay_s(1, 5, 3600, rand=0.0), retry_delay_s(3, 5, 3600, rand=1.0)
    (5.0, 25.0)
    >>> retry_delay_s(30, 5, 3600, rand=0.5)
    3600.0
    """
    u = random.random() if rand is None else rand  # noqa: S311 - jitter, not a secret
    exponent = min(max(attempts - 1, 0), 40)
    return float(min(max_s, base_s * (2.0**exponent) * (1.0 + 0.25 * u)))


# -- robots' rate limit ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DueDelivery:
    """A robot delivery due now; ``carrier`` when it is a digest already (its
    ``digest_id`` is its own id) being sent again."""

    id: int
    carrier: bool = False


@dataclass(frozen=True, slots=True)
class RobotPlan:
    """What to do with a robot channel's due deliveries this round: send ``single`` one by
    one (digests already formed among them), fold ``folded`` into one new digest carried by
    ``folded[0]``, and let ``waiting`` wait for a free slot in the minute."""

    single: tuple[int, ...] = ()
    folded: tuple[int, ...] = ()
    waiting: tuple[int, ...] = ()


def plan_robot_round(due: Sequence[DueDelivery], free_slots: int) -> RobotPlan:
    """Fit a robot channel's due deliveries (oldest first) into the ``free_slots`` messages
    its rolling minute still allows: everything one by one when it fits, otherwise all but
    one slot one by one and the rest as ONE digest, so the robot never receives more than its
    limit. Digests being retried go first and are never folded again.

    >>> plan_robot_round([DueDelivery(i) for i in range(1, 6)], 3)
    RobotPlan(single=(1, 2), folded=(3, 4, 5), waiting=())
    >>> plan_robot_round([DueDelivery(1), DueDelivery(2)], 0)
    RobotPlan(single=(), folded=(), waiting=(1, 2))
    """
    if free_slots <= 0:
        return RobotPlan(waiting=tuple(d.id for d in due))
    carriers = [d.id for d in due if d.carrier]
    plain = [d.id for d in due if not d.carrier]
    single = carriers[:free_slots]
    waiting = carriers[free_slots:]
    left = free_slots - len(single)
    if len(plain) <= left:
        return RobotPlan(tuple(single + plain), (), tuple(waiting))
    if left == 0:
        return RobotPlan(tuple(single), (), tuple(waiting + plain))
    if left == 1 and len(plain) == 1:
        return RobotPlan(tuple(single + plain), (), tuple(waiting))
    return RobotPlan(tuple(single + plain[: left - 1]), tuple(plain[left - 1 :]), tuple(waiting))


# -- what each event says (zh-CN) ------------------------------------------------------------

ALERT_TYPES_ZH = {
    "left_activity_area": "离开活动区域",
    "entered_exclusion_zone": "进入禁止区域",
    "curfew_violation": "违反宵禁",
    "lost_contact": "失去联系",
    "missed_checkin": "未按时签到",
    "leave_overdue": "外出逾期未归",
    "device_integrity": "设备异常",
    "mock_location": "虚拟定位",
    "second_device": "多部手机",
}
TASK_KINDS_ZH = {
    "verify_alert": "核实告警",
    "search": "组织查找",
    "review_checkin": "审核签到",
    "approve_leave": "审批外出",
    "decide_proposal": "决定处罚建议",
}
MEASURES_ZH = {
    "reprimand": "训诫",
    "warning": "警告",
    "public_security_penalty": "提请治安管理处罚",
    "revocation": "提请撤销/收监",
    "level_change": "调整管理等级",
}
EVENT_HEADINGS_ZH = {
    "alert.opened": "告警",
    "alert.released": "告警",
    "alert.ended": "告警结束",
    "alert.acknowledged": "告警已确认",
    "alert.resolved": "告警已处置",
    "alert.retracted": "告警撤回",
    "alert.reopened": "告警重新打开",
    "alert.self_resolved": "告警自行解除",
    "task.created": "新任务",
    "task.escalated": "任务升级",
    "task.done": "任务完成",
    "proposal.created": "处罚建议",
    "proposal.decided": "处罚建议已决定",
    "leave.applied": "外出申请",
    "leave.approved": "外出已批准",
    "leave.rejected": "外出未批准",
    "leave.cancelled": "外出已撤销",
    "leave.reported": "外出报告",
    "checkin.answered": "签到",
    "checkin.reviewed": "签到审核",
    "checkin.challenged": "随机签到",
    "subject.created": "新矫正对象",
    "subject.changed": "矫正对象变更",
    "device.enrolled": "设备登记",
    "device.revoked": "设备注销",
}


def _label(table: Mapping[str, str], value: Any) -> str:
    return table.get(str(value), str(value)) if value is not None else ""


def _local(at: datetime | str | None, timezone: str) -> str:
    """``at`` (a datetime or an ISO-8601 string from event data) as local minutes."""
    if at is None:
        return ""
    if isinstance(at, str):
        text = at
        try:
            at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    try:
        tz = ZoneInfo(timezone)
    except (KeyError, ValueError):
        tz = ZoneInfo("Asia/Shanghai")
    return at.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def headline(notice: Notice) -> str:
    """The one line that says what happened, e.g. ``【告警】张三 离开活动区域``."""
    heading = EVENT_HEADINGS_ZH.get(notice.event, "通知")
    who = notice.subject_name or (f"对象 {notice.subject_id}" if notice.subject_id else "")
    data = notice.data
    if notice.event.startswith("alert."):
        what = _label(ALERT_TYPES_ZH, data.get("type"))
    elif notice.event.startswith("task."):
        what = _label(TASK_KINDS_ZH, data.get("kind"))
        if notice.event == "task.escalated" and data.get("escalation_level") is not None:
            what += f"，升至第{data['escalation_level']}级"
    elif notice.event.startswith("proposal."):
        what = "建议" + _label(MEASURES_ZH, data.get("measure"))
        if notice.event == "proposal.decided" and data.get("decision"):
            what += "：" + ("已批准" if data["decision"] == "approved" else "未批准")
    elif notice.event in EVENT_HEADINGS_ZH:
        what = ""
    else:
        what = notice.event
    return f"【{heading}】" + " ".join(part for part in (who, what) if part)


def details(notice: Notice) -> list[str]:
    """Further lines for a markdown message: when, which unit, who holds a task now, due
    times, the article, the ids an officer looks up. Never a position: notifications leave
    the service, locations do not."""
    data = notice.data
    lines = [f"时间：{_local(notice.occurred_at, notice.timezone)}"]
    if notice.org_unit:
        lines.append(f"单位：{notice.org_unit}")
    if notice.assignee_name and notice.event.startswith("task."):
        lines.append(f"承办人：{notice.assignee_name}")
    if data.get("due_at"):
        lines.append(f"处理时限：{_local(data['due_at'], notice.timezone)}")
    if data.get("article"):
        lines.append(f"依据：{data['article']}")
    if notice.alert_id is not None:
        lines.append(f"告警编号：{notice.alert_id}")
    if data.get("task_id") is not None:
        lines.append(f"任务编号：{data['task_id']}")
    if data.get("proposal_id") is not None:
        lines.append(f"建议编号：{data['proposal_id']}")
    lines.append(f"事件编号：{notice.event_id}")
    return lines


DIGEST_LISTED = 10
"""How many events a digest names one by one; the rest are counted."""


def digest_lines(notices: Sequence[Notice]) -> tuple[str, list[str]]:
    """Title and lines of a digest folding ``notices`` (oldest first)."""
    title = f"另有 {len(notices)} 条通知"
    lines = [f"另有 {len(notices)} 条通知："]
    for notice in notices[:DIGEST_LISTED]:
        lines.append(f"- {_local(notice.occurred_at, notice.timezone)} {headline(notice)}")
    if len(notices) > DIGEST_LISTED:
        lines.append(f"- …… 其余 {len(notices) - DIGEST_LISTED} 条请登录平台查看")
    return title, lines


def markdown(notices: Sequence[Notice]) -> tuple[str, str]:
    """(title, markdown text) of one event, or of a digest when more than one."""
    if len(notices) == 1:
        notice = notices[0]
        title = headline(notice)
        return title, "\n".join([f"### {title}", *(f"- {line}" for line in details(notice))])
    title, lines = digest_lines(notices)
    return title, "\n".join([f"### {lines[0]}", *lines[1:]])


# -- webhook ---------------------------------------------------------------------------------


def webhook_body(notice: Notice) -> bytes:
    """The contract's webhook payload; ``id`` is the event's, stable across retries, so a
    receiver dedupes by it."""
    data = dict(notice.data)
    if notice.subject_id is not None:
        data.setdefault("subject_id", notice.subject_id)
    if notice.alert_id is not None:
        data.setdefault("alert_id", notice.alert_id)
    return orjson.dumps(
        {
            "id": notice.event_id,
            "event": notice.event,
            "occurred_at": iso(notice.occurred_at),
            "org_unit": notice.org_unit,
            "data": data,
        }
    )


def webhook_signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the raw body keyed by the secret>``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


# -- DingTalk and WeCom robots ---------------------------------------------------------------


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's ``sign``: base64 of HMAC-SHA256 of ``"{timestamp}\\n{secret}"`` keyed by
    the secret, url-encoded (their documented example uses ``quote_plus``)."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), to_sign, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


def dingtalk_url(url: str, secret: str | None, timestamp_ms: int) -> str:
    """The robot's url with ``timestamp`` and ``sign`` added when a secret is set (the url
    normally carries ``?access_token=`` already)."""
    if not secret:
        return url
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}timestamp={timestamp_ms}&sign={dingtalk_sign(secret, timestamp_ms)}"


def dingtalk_body(notices: Sequence[Notice]) -> bytes:
    title, text = markdown(notices)
    return orjson.dumps({"msgtype": "markdown", "markdown": {"title": title, "text": text}})


WECOM_MAX_BYTES = 4096
"""WeCom's limit on a markdown message's content (UTF-8 bytes)."""


def wecom_body(notices: Sequence[Notice]) -> bytes:
    _, text = markdown(notices)
    raw = text.encode("utf-8")
    if len(raw) > WECOM_MAX_BYTES:
        text = raw[: WECOM_MAX_BYTES - 3].decode("utf-8", "ignore") + "……"
    return orjson.dumps({"msgtype": "markdown", "markdown": {"content": text}})


# -- Alibaba Cloud SMS (SendSms, RPC style, signature version 1.0) ----------------------------

ALIYUN_SMS_VERSION = "2017-05-25"
ALIYUN_DEFAULT_REGION = "cn-hangzhou"


def aliyun_percent_encode(value: str) -> str:
    """RFC 3986 percent-encoding of UTF-8 as Alibaba Cloud specifies it: letters, digits,
    ``-``, ``_``, ``.`` and ``~`` stay; everything else (space as ``%20``, ``*`` as
    ``%2A``) is ``%XY`` with upper-case hex."""
    return quote(value, safe="-_.~")


def aliyun_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """``METHOD&%2F&`` + the percent-encoded canonicalized query string: parameters (never
    ``Signature``) sorted by name, each name and value percent-encoded, joined by ``&``."""
    canonical = "&".join(
        f"{aliyun_percent_encode(k)}={aliyun_percent_encode(v)}"
        for k, v in sorted(params.items())
        if k != "Signature"
    )
    return f"{method}&{aliyun_percent_encode('/')}&{aliyun_percent_encode(canonical)}"


def aliyun_signature(access_key_secret: str, string_to_sign: str) -> str:
    """base64(HMAC-SHA1(key = AccessKeySecret + "&", StringToSign))."""
    key = (access_key_secret + "&").encode("utf-8")
    return base64.b64encode(
        hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha1).digest()
    ).decode("ascii")


SMS_PARAM_MAX = 35
"""Alibaba Cloud caps each variable of a notification template (characters)."""


def sms_template_params(notices: Sequence[Notice]) -> dict[str, str]:
    """The template's variables: ``${event}`` (what happened), ``${name}`` (the subject),
    ``${time}`` (local minutes) and ``${detail}``; a digest says how many."""
    first = notices[0]
    if len(notices) == 1:
        line = headline(first)
        event = EVENT_HEADINGS_ZH.get(first.event, "通知")
        detail = line.split(" ", 1)[1] if " " in line else ""
        name = first.subject_name or ""
    else:
        event, name, detail = "通知汇总", "", f"另有 {len(notices)} 条通知"
    params = {
        "event": event,
        "name": name,
        "time": _local(first.occurred_at, first.timezone),
        "detail": detail,
    }
    return {k: v[:SMS_PARAM_MAX] for k, v in params.items()}


def aliyun_send_sms(
    url: str,
    access_key_id: str,
    access_key_secret: str,
    settings: Mapping[str, Any],
    notices: Sequence[Notice],
    now: datetime,
    nonce: str,
) -> OutgoingRequest:
    """A signed ``SendSms`` request as an HTML form POST to ``url`` (the endpoint,
    ``https://dysmsapi.aliyuncs.com/``)."""
    params = {
        "AccessKeyId": access_key_id,
        "Action": "SendSms",
        "Format": "JSON",
        "PhoneNumbers": ",".join(settings["phone_numbers"]),
        "RegionId": str(settings.get("region_id") or ALIYUN_DEFAULT_REGION),
        "SignName": str(settings["sign_name"]),
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": nonce,
        "SignatureVersion": "1.0",
        "TemplateCode": str(settings["template_code"]),
        "TemplateParam": orjson.dumps(sms_template_params(notices)).decode("utf-8"),
        "Timestamp": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "OutId": str(notices[0].event_id),
        "Version": ALIYUN_SMS_VERSION,
    }
    signature = aliyun_signature(access_key_secret, aliyun_string_to_sign("POST", params))
    form = {"Signature": signature, **params}
    body = "&".join(
        f"{aliyun_percent_encode(k)}={aliyun_percent_encode(v)}" for k, v in form.items()
    )
    return OutgoingRequest(
        url,
        body.encode("ascii"),
        {"Content-Type": "application/x-www-form-urlencoded"},
        Acceptance.ALIYUN_OK,
    )


# -- one request per delivery ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendering:
    """What the sender needs besides the notices: the moment (robots' timestamp, SMS
    timestamp) and a fresh nonce (SMS)."""

    now: datetime
    nonce: str = field(default="")


def build_request(
    channel: Channel, notices: Sequence[Notice], rendering: Rendering
) -> OutgoingRequest:
    """The request telling ``channel`` about ``notices`` (one event, or a robot's digest)."""
    if channel.kind is ChannelKind.WEBHOOK:
        body = webhook_body(notices[0])
        headers = {"Content-Type": "application/json"}
        if channel.secret:
            headers["X-CM-Signature"] = webhook_signature(channel.secret, body)
        return OutgoingRequest(channel.url, body, headers, Acceptance.HTTP_2XX)
    if channel.kind is ChannelKind.DINGTALK:
        ms = int(rendering.now.timestamp() * 1000)
        return OutgoingRequest(
            dingtalk_url(channel.url, channel.secret, ms),
            dingtalk_body(notices),
            {"Content-Type": "application/json"},
            Acceptance.ERRCODE_ZERO,
        )
    if channel.kind is ChannelKind.WECOM:
        return OutgoingRequest(
            channel.url,
            wecom_body(notices),
            {"Content-Type": "application/json"},
            Acceptance.ERRCODE_ZERO,
        )
    return aliyun_send_sms(
        channel.url,
        str(channel.settings["access_key_id"]),
        channel.secret or "",
        channel.settings,
        notices,
        rendering.now,
        rendering.nonce,
    )


# -- the subject's app -----------------------------------------------------------------------


def leave_decision_text(approved: bool, data: Mapping[str, Any], timezone: str) -> str:
    """What the subject's app says about a decided leave application (外出申请)."""
    span = ""
    if data.get("starts_at") and data.get("ends_at"):
        span = f"（{_local(data['starts_at'], timezone)} 至 {_local(data['ends_at'], timezone)}）"
    if approved:
        return f"您的外出申请{span}已批准。请按时到达、按时返回，并在到达和返回时报告。"
    note = str(data.get("note") or "").strip()
    return f"您的外出申请{span}未获批准。" + (f"原因：{note}" if note else "如有疑问请联系司法所。")
