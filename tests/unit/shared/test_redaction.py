"""Log redaction: access tokens, secrets, Authorization, openids, phones, real names and ID
numbers never reach a log line, whether as a field, nested, or inside text."""
import json
import logging

import structlog

from shared.telemetry import REDACTED, RedactingFilter, redact, scrub_text


def render(**event) -> str:
    return json.dumps(redact(None, "info", dict(event)), ensure_ascii=False)


def test_sensitive_fields_are_replaced_wherever_they_are():
    line = render(event="x", openid="o-secret-openid", access_token="TOKEN123", real_name="张三",
                  headers={"Authorization": 'WECHATPAY2-SHA256-RSA2048 mchid="1",signature="SIG"',
                           "X-Fenxiao-Identity": "eyJ.abc"},
                  body={"phone": "13800138000", "items": [{"user_name": "李四"}]},
                  identity_secret="k" * 40, amount_fen=100)
    for value in ("o-secret-openid", "TOKEN123", "张三", "SIG", "eyJ.abc", "13800138000", "李四", "k" * 40):
        assert value not in line, value
    assert '"amount_fen": 100' in line and REDACTED in line


def test_values_inside_text_are_masked():
    text = ("GET https://api.weixin.qq.com/wxa/getwxacodeunlimit?access_token=ACCESS-TOKEN-1&x=1 "
            'body {"openid": "oUser123", "touser": "o"} phone 13912345678 id 11010519491231002X '
            "Authorization: WECHATPAY2 signature=abc")
    out = scrub_text(text)
    for value in ("ACCESS-TOKEN-1", "oUser123", "13912345678", "11010519491231002X", "signature=abc"):
        assert value not in out, (value, out)
    assert "x=1" in out and "order 12345678901234" in scrub_text("order 12345678901234")  # 14 digits: not an id


def test_stdlib_records_are_masked_too(capsys):
    logger = logging.getLogger("test.redaction")
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("HTTP Request: POST https://api.weixin.qq.com/cgi-bin/message/subscribe/send?access_token=%s",
                       "TOK-XYZ")
    finally:
        logger.removeHandler(handler)
    assert "TOK-XYZ" not in capsys.readouterr().err
