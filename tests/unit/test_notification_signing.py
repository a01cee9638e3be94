"""Signatures as the receivers document them, robots' rate-limit plans, retries' backoff."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote_plus, urlsplit

import orjson

from correction_monitor.domain.notifications import (
    Acceptance,
    Answer,
    Channel,
    ChannelKind,
    DueDelivery,
    Notice,
    Rendering,
    aliyun_signature,
    aliyun_string_to_sign,
    build_request,
    dingtalk_url,
    judge,
    plan_robot_round,
    retry_delay_s,
    webhook_signature,
)

AT = datetime(2026, 12, 7, 2, 30, tzinfo=UTC)


def notice(event_id: int = 7, event: str = "alert.opened") -> Notice:
    return Notice(
        event_id, event, AT, "c1", "Asia/Shanghai", 3, "张三", 11, {"type": "left_activity_area"}
    )


def channel(
    kind: ChannelKind, url: str, secret: str | None = "s3cret", **settings: object
) -> Channel:
    return Channel(1, 1, kind, url, secret, dict(settings), ("alert.opened",), True, None, AT)


def test_alibaba_cloud_documented_example_signs_as_documented() -> None:
    # The example of Alibaba Cloud SMS's signature documentation (SendSms, GET, testSecret).
    params = {
        "AccessKeyId": "testId",
        "Action": "SendSms",
        "Format": "XML",
        "OutId": "123",
        "PhoneNumbers": "15300000001",
        "RegionId": "cn-hangzhou",
        "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0",
        "TemplateCode": "SMS_71390007",
        "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z",
        "Version": "2017-05-25",
    }
    to_sign = aliyun_string_to_sign("GET", params)
    assert to_sign.startswith(
        "GET&%2F&AccessKeyId%3DtestId%26Action%3DSendSms%26Format%3DXML%26OutId%3D123"
    )
    assert "%26SignName%3D%25E9%2598%25BF%25E9%2587%258C%25E4%25BA%2591" in to_sign
    assert to_sign.endswith("%26Timestamp%3D2017-07-12T02%253A42%253A19Z%26Version%3D2017-05-25")
    assert aliyun_signature("testSecret", to_sign) == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_webhook_signature_is_hmac_sha256_of_the_raw_body() -> None:
    request = build_request(
        channel(ChannelKind.WEBHOOK, "http://x/hook"), [notice()], Rendering(AT)
    )
    expected = hmac.new(b"s3cret", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-CM-Signature"] == f"sha256={expected}"
    assert webhook_signature("s3cret", request.body) == f"sha256={expected}"
    body = orjson.loads(request.body)
    assert list(body) == ["id", "event", "occurred_at", "org_unit", "data"]
    assert body["id"] == 7
    assert body["org_unit"] == "c1"
    assert body["occurred_at"] == "2026-12-07T02:30:00Z"
    # No name of the subject leaves in a webhook: ids only.
    assert "张三" not in request.body.decode()


def test_dingtalk_sign_is_recomputed_from_the_query() -> None:
    url = dingtalk_url(
        "https://oapi.dingtalk.com/robot/send?access_token=abc", "SECx", 1700000000000
    )
    query = parse_qs(urlsplit(url).query)
    assert query["access_token"] == ["abc"]
    timestamp = query["timestamp"][0]
    digest = hmac.new(b"SECx", f"{timestamp}\nSECx".encode(), hashlib.sha256).digest()
    assert query["sign"][0] == base64.b64encode(digest).decode()
    # The sign is url-encoded in the url (base64's + / = are escaped).
    raw_sign = urlsplit(url).query.split("sign=")[1]
    assert unquote_plus(raw_sign) == base64.b64encode(digest).decode()
    # A url without a query gets one; without a secret nothing is added.
    assert dingtalk_url("http://h/robot", "k", 1).startswith("http://h/robot?timestamp=1&sign=")
    assert dingtalk_url("http://h/robot?access_token=a", None, 1) == "http://h/robot?access_token=a"


def test_robot_markdown_reads_like_an_officer_expects() -> None:
    request = build_request(
        channel(ChannelKind.DINGTALK, "http://h/r?access_token=a"), [notice()], Rendering(AT)
    )
    body = orjson.loads(request.body)
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "【告警】张三 离开活动区域"
    assert "2026-12-07 10:30" in body["markdown"]["text"]  # Beijing time
    wecom = orjson.loads(
        build_request(
            channel(ChannelKind.WECOM, "http://h/w?key=k"), [notice()], Rendering(AT)
        ).body
    )
    assert list(wecom) == ["msgtype", "markdown"]
    assert list(wecom["markdown"]) == ["content"]
    digest = orjson.loads(
        build_request(
            channel(ChannelKind.WECOM, "http://h/w?key=k"),
            [notice(i, "task.escalated") for i in range(30)],
            Rendering(AT),
        ).body
    )
    assert digest["markdown"]["content"].startswith("### 另有 30 条通知：")


def test_a_tasks_robot_message_names_the_officer_now_holding_it() -> None:
    escalated = Notice(
        8,
        "task.escalated",
        AT,
        "s1",
        "Asia/Shanghai",
        3,
        "张三",
        11,
        {"task_id": 5, "kind": "verify_alert", "escalation_level": 1, "assignee_id": 42},
        assignee_name="李督导",
    )
    body = orjson.loads(
        build_request(
            channel(ChannelKind.DINGTALK, "http://h/r?access_token=a"), [escalated], Rendering(AT)
        ).body
    )
    assert body["markdown"]["title"] == "【任务升级】张三 核实告警，升至第1级"
    assert "- 承办人：李督导" in body["markdown"]["text"].split("\n")
    # Only a task's events name a holder; the webhook carries ids, never names.
    assert (
        "承办人"
        not in orjson.loads(
            build_request(
                channel(ChannelKind.WECOM, "http://h/w?key=k"), [notice()], Rendering(AT)
            ).body
        )["markdown"]["content"]
    )
    hook = build_request(channel(ChannelKind.WEBHOOK, "http://h/hook"), [escalated], Rendering(AT))
    assert "李督导" not in hook.body.decode()
    assert orjson.loads(hook.body)["data"]["assignee_id"] == 42


def test_answers_are_judged_per_receiver() -> None:
    assert judge(Acceptance.HTTP_2XX, Answer(204)) is None
    assert judge(Acceptance.HTTP_2XX, Answer(503)) == "HTTP 503"
    assert judge(Acceptance.ERRCODE_ZERO, Answer(200, b'{"errcode":0,"errmsg":"ok"}')) is None
    assert "130101" in (judge(Acceptance.ERRCODE_ZERO, Answer(200, b'{"errcode":130101}')) or "")
    assert judge(Acceptance.ALIYUN_OK, Answer(200, b'{"Code":"OK"}')) is None
    assert judge(Acceptance.ALIYUN_OK, Answer(200, b'{"Code":"isv.BUSINESS_LIMIT_CONTROL"}'))
    assert judge(Acceptance.HTTP_2XX, Answer(0, error="timed out")) == "timed out"


def test_a_burst_beyond_the_minute_is_folded_into_one_digest() -> None:
    plan = plan_robot_round([DueDelivery(i) for i in range(1, 51)], 20)
    assert len(plan.single) == 19
    assert plan.folded == tuple(range(20, 51))
    assert plan.waiting == ()
    # Exactly what fits goes one by one; a digest being retried is never folded again.
    assert plan_robot_round([DueDelivery(1), DueDelivery(2)], 2).single == (1, 2)
    retried = plan_robot_round([DueDelivery(1, carrier=True), DueDelivery(2), DueDelivery(3)], 2)
    assert retried.single == (1,)
    assert retried.folded == (2, 3)
    assert plan_robot_round([DueDelivery(1, carrier=True), DueDelivery(2)], 1).waiting == (2,)


def test_backoff_doubles_from_the_base_up_to_the_max() -> None:
    delays = [retry_delay_s(n, 5, 3600, rand=0.0) for n in range(1, 12)]
    assert delays[:4] == [5.0, 10.0, 20.0, 40.0]
    assert delays[-1] == 3600.0
    assert 5.0 <= retry_delay_s(1, 5, 3600) <= 6.25
