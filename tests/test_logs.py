"""Logging: JSON lines with context, redaction of credentials and SDP, stdlib routed through."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from commandcenter.app import create_app
from commandcenter.config import LoggingConfig
from commandcenter.logs import configure_logging
from sessions.recorder import MemoryRecorder
from tests.conftest import make_config


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A log sink; the global logging setup is put back afterwards for the other tests."""
    saved_config = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        yield io.StringIO()
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.configure(**saved_config)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_timestamp_level_logger_and_bound_context(stream: io.StringIO) -> None:
    configure_logging(LoggingConfig(format="json", level="info"), stream=stream)
    structlog.contextvars.bind_contextvars(call_id="c-1", user_id="o1")
    structlog.get_logger("test").info("answered", ms=12)
    (line,) = lines(stream)
    assert line["event"] == "answered"
    assert line["level"] == "info"
    assert line["logger"] == "test"
    assert line["timestamp"].endswith("Z")
    assert "T" in line["timestamp"]
    assert (line["call_id"], line["user_id"], line["ms"]) == ("c-1", "o1", 12)


def test_sensitive_keys_are_redacted_at_any_depth(stream: io.StringIO) -> None:
    configure_logging(LoggingConfig(), stream=stream)
    structlog.get_logger("test").info(
        "offer",
        token="eyJ.secret",
        sdp="v=0 o=- 1 1 IN IP4 10.0.0.1",
        password="hunter2",
        jwt_secret="x",
        headers={"Authorization": "Bearer abc", "Accept": "*/*"},
        items=[{"secret": "s"}],
    )
    (line,) = lines(stream)
    assert line["token"] == line["sdp"] == line["password"] == line["jwt_secret"] == "[redacted]"
    assert line["headers"] == {"Authorization": "[redacted]", "Accept": "*/*"}
    assert line["items"] == [{"secret": "[redacted]"}]
    for leaked in ("hunter2", "Bearer abc", "10.0.0.1"):
        assert leaked not in stream.getvalue()


def test_stdlib_records_are_routed_through_and_tokens_in_text_scrubbed(
    stream: io.StringIO,
) -> None:
    """aiohttp-style access lines arrive as JSON with the query-string token removed."""
    configure_logging(LoggingConfig(), stream=stream)
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvMSJ9.c2lnbmF0dXJl"
    logging.getLogger("aiohttp.access").info('1.2.3.4 "GET /ws?token=%s&v=1" 101', jwt_like)
    logging.getLogger("aiohttp.server").warning("bad header %s", jwt_like)
    first, second = lines(stream)
    assert first["logger"] == "aiohttp.access"
    assert first["event"] == '1.2.3.4 "GET /ws?token=[redacted]&v=1" 101'
    assert second["event"] == "bad header [redacted]"
    assert jwt_like not in stream.getvalue()


def test_level_applies_to_structlog_and_stdlib(stream: io.StringIO) -> None:
    configure_logging(LoggingConfig(level="warning"), stream=stream)
    structlog.get_logger("test").info("quiet")
    logging.getLogger("aiohttp.access").info("quiet too")
    structlog.get_logger("test").warning("loud")
    assert [line["event"] for line in lines(stream)] == ["loud"]


def test_configuring_twice_writes_each_line_once_and_the_last_call_wins(
    stream: io.StringIO,
) -> None:
    configure_logging(LoggingConfig(level="info"), stream=stream)
    log = structlog.get_logger("test")
    log.info("first")
    configure_logging(LoggingConfig(level="error"), stream=stream)
    log.info("dropped")
    log.error("second")
    assert [line["event"] for line in lines(stream)] == ["first", "second"]


def test_exception_tracebacks_are_logged_as_text(stream: io.StringIO) -> None:
    configure_logging(LoggingConfig(), stream=stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger("test").exception("failed")
    (line,) = lines(stream)
    assert "RuntimeError: boom" in line["exception"]


def test_console_format_is_plain_text_and_still_redacts(stream: io.StringIO) -> None:
    configure_logging(LoggingConfig(format="console"), stream=stream)
    structlog.get_logger("test").info("hello", token="abc123", n=1)
    out = stream.getvalue()
    assert "hello" in out
    assert "n=1" in out
    assert "abc123" not in out
    assert "[redacted]" in out
    assert not out.startswith("{")


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_control_characters_from_clients_never_reach_the_reader_raw(
    stream: io.StringIO, fmt: str
) -> None:
    """An ANSI escape in a value (a user id, a stdlib record's text) is escaped in either
    format: the terminal showing the log sees `\\x1b`, not ESC."""
    configure_logging(LoggingConfig(format=fmt), stream=stream)
    structlog.get_logger("test").info("sign_in", user_id="o1\x1b[2J\x1b[31m", nested={"a": "\x07"})
    logging.getLogger("aiohttp.access").info("GET /ws?user=\x1b[1A HTTP/1.1")
    out = stream.getvalue()
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "2J" in out


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_tracebacks_are_scrubbed_of_passwords_cookies_and_tokens_in_either_format(
    stream: io.StringIO, fmt: str
) -> None:
    """An exception whose message carries credentials (as a failing HTTP client's or a
    driver's may) is logged with its traceback, the credentials hidden, in the console
    (dev) format as in JSON."""
    configure_logging(LoggingConfig(format=fmt), stream=stream)
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJvMSJ9.c2lnbmF0dXJl"
    try:
        raise RuntimeError(
            f"sign-in failed: password='hunter2' headers={{'Cookie': 'cc_session=s3cr3t'}}"
            f" Authorization: Bearer abcdef.ghijk /ws?token={jwt}"
        )
    except RuntimeError:
        structlog.get_logger("test").exception("failed")
    try:
        raise ValueError("dsn postgresql://u@h/db jwt_secret=topsecret")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    out = stream.getvalue()
    assert "RuntimeError: sign-in failed" in out
    assert "ValueError: dsn postgresql://u@h/db" in out
    assert "Traceback" in out
    for secret in ("hunter2", "s3cr3t", "abcdef.ghijk", jwt, "c2lnbmF0dXJl", "topsecret"):
        assert secret not in out, secret
    assert out.count("[redacted]") >= 5


async def test_a_servers_traceback_is_scrubbed_in_the_console_format(
    stream: io.StringIO, aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """The real app serving a handler that fails with credentials in its error: aiohttp
    logs the traceback through our pipeline in the console (dev) format, scrubbed."""
    configure_logging(LoggingConfig(format="console"), stream=stream)
    app = create_app(make_config(tmp_path / "var"), recorder=MemoryRecorder())

    async def leaky(request: web.Request) -> web.Response:
        cookie = request.headers.get("Cookie", "")
        raise RuntimeError(f"upstream refused: Cookie: {cookie}; password=hunter2")

    app.router.add_get("/test/leaky", leaky)
    http = await aiohttp_client(app)
    resp = await http.get("/test/leaky", headers={"Cookie": "cc_session=s3cr3t-session"})
    assert resp.status == 500
    out = stream.getvalue()
    assert "RuntimeError: upstream refused" in out
    assert "Traceback" in out
    assert "s3cr3t-session" not in out
    assert "hunter2" not in out
