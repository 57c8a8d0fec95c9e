"""Logging: one structlog pipeline for our events and for stdlib loggers (aiohttp's included).

Every line carries an ISO timestamp, the level, the logger name and whatever the handler bound
with `structlog.contextvars.bind_contextvars` (call_id, user_id, node_id). Credentials and
SDP never reach the output: values under sensitive keys are replaced, and bearer tokens are
scrubbed from free text too, because aiohttp's access log prints the request line and a
WebSocket client passes its token in the query string.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Final, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from commandcenter.config import LoggingConfig

REDACTED: Final = "[redacted]"
# Compared case-insensitively, so an `Authorization` header in a logged mapping is caught too.
REDACTED_KEYS: Final = frozenset(
    {
        "token",
        "secret",
        "jwt_secret",
        "password",
        "authorization",
        "cookie",
        "set-cookie",
        "resume_token",
        "refresh_token",
        "sdp",
    }
)
# `?token=...` / `&access_token=...` in a URL or request line.
_TOKEN_PARAM = re.compile(r"(?i)(\b(?:access_)?token=)[^&\s\"']+")
# Anything shaped like a JWT (base64url JSON header and payload), wherever it appears.
_JWT = re.compile(r"\beyJ[\w-]*\.eyJ[\w-]*\.[\w-]*")
# A secret written out in text, as a traceback or a repr shows it: `password='x'`,
# `"Cookie": "cc_session=..."`, `jwt_secret=...`; the value, quoted or not, is hidden.
_SECRET_ASSIGNED = re.compile(
    r"(?i)\b((?:password|passwd|jwt_secret|secret|resume_token|refresh_token|cookie"
    r"|set-cookie|authorization)[\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&)}\]\"']+)"
)
# A cookie or authorization header line in a dumped request: everything after the name.
_SECRET_HEADER = re.compile(r"(?im)^(\s*(?:cookie|set-cookie|authorization)\s*:\s*)\S.*$")
# `Bearer <token>` anywhere.
_BEARER = re.compile(r"(?i)\b(bearer\s+)[\w.~+/-]+=*")
# Nested structures deeper than this are logged as they are; we never log deeper ones.
_MAX_DEPTH: Final = 4


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Structlog processor: hide credentials and SDP under any key, and tokens in any text."""
    return {key: _redacted(key, value, 0) for key, value in event_dict.items()}


def _redacted(key: object, value: Any, depth: int) -> Any:
    if isinstance(key, str) and key.lower() in REDACTED_KEYS:
        return REDACTED
    if isinstance(value, str):
        return scrubbed(value)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: _redacted(k, v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(None, v, depth + 1) for v in value]
    return value


def scrubbed(text: str) -> str:
    """`text` (a message, a traceback) with tokens, JWTs, bearer credentials, cookies and
    passwords written in it replaced by `REDACTED`."""
    text = _TOKEN_PARAM.sub(rf"\g<1>{REDACTED}", text)
    text = _SECRET_HEADER.sub(rf"\g<1>{REDACTED}", text)
    text = _BEARER.sub(rf"\g<1>{REDACTED}", text)
    text = _SECRET_ASSIGNED.sub(rf"\g<1>{REDACTED}", text)
    return _JWT.sub(REDACTED, text)


# C0 and C1 controls other than tab and newline: ESC starts every ANSI escape, which a
# terminal showing the log would obey. JSON escapes them itself.
_CONTROLS: Final = {
    c: f"\\x{c:02x}" for c in (*range(0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))
}


def escape_controls(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Structlog processor for console output: control characters in any text made visible
    (`\\x1b`), so a value from a client cannot recolour, move or clear the reader's screen."""
    return {key: _escaped(value, 0) for key, value in event_dict.items()}


def _escaped(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return value.translate(_CONTROLS)
    if depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: _escaped(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped(v, depth + 1) for v in value]
    return value


class _Handler(logging.StreamHandler[TextIO]):
    """Our root handler; a distinct class so reconfiguring replaces it instead of adding."""


def configure_logging(
    cfg: LoggingConfig, *, stream: TextIO | None = None, cache: bool = True
) -> None:
    """Route structlog and stdlib logging to `stream` (default stderr) at `cfg.level`.

    Safe to call more than once: the last call wins and no line is ever written twice.
    `cache` freezes each module's logger at its first use (the server's hot paths); a short
    command passes False, so that loggers used after it (in tests: in the same process) still
    follow later configuration.
    """
    level = logging.getLevelNamesMapping()[cfg.level.upper()]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    out = sys.stderr if stream is None else stream
    renderer: Processor
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    # Tracebacks become text before redaction in either format, so they are scrubbed like
    # everything else (the console renderer would otherwise print them from the exception
    # object itself, secrets in its message and locals included).
    final += [structlog.processors.format_exc_info, redact]
    if cfg.format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        final += [escape_controls]
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[*final, renderer],
    )
    handler = _Handler(out)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)

    structlog.configure(
        processors=[
            # Checked against the stdlib logger at call time, so a later reconfiguration
            # applies to loggers already cached.
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=cache,
    )


__all__ = [
    "REDACTED",
    "REDACTED_KEYS",
    "configure_logging",
    "escape_controls",
    "redact",
    "scrubbed",
]
