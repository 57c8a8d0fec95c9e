"""`ConfigError`, and msgspec's validation errors turned into it.

msgspec reports "Expected `int`, got `str` - at `$.server.port`"; an operator should read
'server.port: expected an integer, got "8080"': the key as config.toml spells it, the value
given as the file would spell it, and the type in the words of config.toml's comments.
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import msgspec


class ConfigError(Exception):
    """The configuration cannot be used; the message names the offending key."""


# msgspec's messages have no structured form (no path or type attributes), so the text is
# parsed; a message of another shape is passed on as it is, after the key.
_MSGSPEC_ERROR = re.compile(r"(?P<what>.*?)(?: - at `(?P<path>[^`]*)`)?", re.DOTALL)
_EXPECTED = re.compile(r"Expected `(?P<type>[^`]+)`, got `(?P<got>[^`]+)`")
_FIELD = re.compile(
    r"Object (?P<problem>contains unknown|missing required) field `(?P<name>[^`]+)`"
)
_PATH_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
# msgspec's type names in the words config.toml's comments use.
_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "a table",
}
_SHOWN_CHARS = 60


def _shown(value: Any) -> str:
    """`value` as the file would spell it (`"8080"`, `true`, `[1, 2]`), cut short."""
    match value:
        case bool():
            text = "true" if value else "false"
        case str():
            text = json.dumps(value, ensure_ascii=False)
        case list():
            text = "[" + ", ".join(_shown(v) for v in value) + "]"
        case dict():
            text = "{" + ", ".join(f"{k} = {_shown(v)}" for k, v in value.items()) + "}"
        case datetime.date() | datetime.time():
            text = value.isoformat()
        case _:
            # int and float; repr spells nan and inf as TOML does.
            text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def config_error(
    exc: msgspec.ValidationError, data: Any, prefix: str = "", source: str = ""
) -> ConfigError:
    """msgspec's error in ours: the key, the value given and the type expected.

    `data` is what was converted, `prefix` the key it sits at, `source` where it came from
    (an environment variable), appended to the message.
    """
    parsed = _MSGSPEC_ERROR.fullmatch(str(exc))
    assert parsed is not None  # the pattern matches any text
    what, path = parsed["what"], parsed["path"] or "$"
    key = (prefix + path[1:]).lstrip(".")
    suffix = f" ({source})" if source else ""
    if field := _FIELD.fullmatch(what):
        full = f"{key}.{field['name']}" if key else field["name"]
        problem = "unknown setting" if field["problem"] == "contains unknown" else "required"
        return ConfigError(f"{full}: {problem}{suffix}")
    if expected := _EXPECTED.fullmatch(what):
        wanted = _TYPE_WORDS.get(expected["type"], expected["type"])
        try:
            value = data
            for name, index in _PATH_STEP.findall(path[1:]):
                value = value[name] if name else value[int(index)]
            given = _shown(value)
        except (KeyError, IndexError, TypeError):  # pragma: no cover - the path is into `data`
            given = _TYPE_WORDS.get(expected["got"], expected["got"])
        return ConfigError(f"{key}: expected {wanted}, got {given}{suffix}")
    return ConfigError(f"{key or 'config'}: {what[:1].lower()}{what[1:]}{suffix}")
