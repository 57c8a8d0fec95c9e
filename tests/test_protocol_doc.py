"""`docs/protocol.md` is checked against the code, so that the protocol reference cannot
silently fall out of step with `signalling.protocol`, `signalling.errors` and the config.

Conventions the document follows, and this test relies on:

- `## Client messages` has one `### \\`tag\\`` heading per client message (the `tag=` of each
  Struct in `ClientMessage`), and nothing else at that level; `## Server messages` likewise
  for `ServerMessage`; `## Shared shapes` has one `### \\`Name\\`` heading per other public
  Struct of `signalling.protocol` (`UserInfo`, `CallInfo`, ...).
- Each of those sections has exactly one field table: a Markdown table whose header's first
  cell is `Field`, one row per field with the field's name in backticks as its first cell.
  The rows must be exactly the Struct's fields (the `type` tag is the heading, not a row).
- Fenced JSON examples carry a marker after the language in the info string:
  - ```` ```json client ````: one client message; it must decode with `signalling.codec.decode`
    as a JSON text frame, and the same value as a msgpack binary frame.
  - ```` ```json server ````: one server message; it must decode with msgspec into
    `ServerMessage` and re-encode to the same JSON value, i.e. list every field the server
    sends, with a value of the right type.
  - ```` ```json invalid ````: a client frame the server rejects with `invalid_message`.
  - ```` ```json data ````: any other JSON (token claims); only parsed.
  A ```` ```json ```` block without one of these markers fails the test. Each message section
  holds at least one example of its own type.
- ```` ```msgpack client ```` / ```` ```msgpack server ````: the bytes of a binary frame in
  hex, right after the ```` ```json ```` block of the same message: it must decode (as a
  client frame, or into `ServerMessage`) to the same message as that JSON, and the server's
  own msgpack encoding of it must be exactly those bytes.
- ```` ```sequence ```` blocks (the walkthroughs) hold one event a line: `actor → {json}` is a
  client message the actor sends, `actor ← {json}` a server message the actor receives,
  `# ...` a comment. Each JSON is checked as above, and every `ref` an actor receives must be
  the `id` of a message that actor sent earlier in the block.
- `## Error codes` has a table whose first cells are exactly the `code` attributes of the
  errors in `signalling.errors`; `## Close codes` a table listing every `CLOSE_*` constant
  of the `signalling` package (plus the codes aiohttp sends on its own, `LIBRARY_CLOSE_CODES`).
- `## Settings` has a table with a row per `limits.*`, `presence.*`, `calls.*`, `emergency.*` and
  `conferences.*` setting, its first cell the key in backticks and another cell its default
  in backticks.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import typing
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import msgspec
import pytest

import signalling
from commandcenter import config as cfg
from commandcenter.auth import AuthReason, Role
from signalling import errors, hub
from signalling import protocol as p
from signalling.codec import Encoding, decode, encode
from signalling.errors import InvalidMessage, SignallingError

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
# Close codes the WebSocket library sends by itself (no constant of ours names them):
# 1006 when a peer vanishes (e.g. no pong to the server's ping), 1009 for a frame far
# above limits.max_frame_bytes.
LIBRARY_CLOSE_CODES = frozenset({1006, 1009})
JSON_MARKERS = frozenset({"client", "server", "invalid", "data"})
SETTINGS_SECTIONS: dict[str, type[msgspec.Struct]] = {
    "limits": cfg.LimitsConfig,
    "presence": cfg.PresenceConfig,
    "calls": cfg.CallsConfig,
    "conferences": cfg.ConferencesConfig,
    "emergency": cfg.EmergencyConfig,
}
MAX_FRAME_BYTES = cfg.LimitsConfig().max_frame_bytes

_FENCE = re.compile(r"^```(?P<info>.*)$")
_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<title>.+?)\s*$")
_CODE_TITLE = re.compile(r"^`(?P<name>[^`]+)`$")
_SEQUENCE_LINE = re.compile(r"^(?P<actor>\S+)\s+(?P<arrow>→|←)\s+(?P<json>\{.*\})\s*$")
_server_decoder = msgspec.json.Decoder(p.ServerMessage)


# ---- reading the document ------------------------------------------------------------------


@dataclass
class Block:
    info: str
    text: str
    line: int  # 1-based line of the opening fence

    @property
    def words(self) -> list[str]:
        return self.info.split()


@dataclass
class Section:
    level: int
    title: str
    line: int
    # The body outside fences (each fence is one blank line) and without sub-headings.
    lines: list[str] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    children: list[Section] = field(default_factory=list)

    @property
    def code_name(self) -> str | None:
        """The name in a heading made of one code span, e.g. "### `call_center`"."""
        match = _CODE_TITLE.match(self.title)
        return match.group("name") if match else None

    def all_lines(self) -> list[str]:
        return self.lines + [line for child in self.children for line in child.all_lines()]

    def all_blocks(self) -> list[Block]:
        return self.blocks + [b for child in self.children for b in child.all_blocks()]


def parse(text: str) -> Section:
    """The document as a tree of sections; headings inside fences are not headings."""
    root = Section(level=0, title="", line=0)
    stack = [root]
    fence: Block | None = None
    fence_lines: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if fence is not None:
            if line.strip() == "```":
                fence.text = "\n".join(fence_lines)
                stack[-1].blocks.append(fence)
                fence = None
            else:
                fence_lines.append(line)
            continue
        opening = _FENCE.match(line)
        if opening:
            fence = Block(info=opening.group("info").strip(), text="", line=number)
            fence_lines = []
            stack[-1].lines.append("")
            continue
        heading = _HEADING.match(line)
        if heading:
            level = len(heading.group("hashes"))
            while stack[-1].level >= level:
                stack.pop()
            section = Section(level=level, title=heading.group("title"), line=number)
            stack[-1].children.append(section)
            stack.append(section)
            continue
        stack[-1].lines.append(line)
    assert fence is None, f"line {fence.line}: fence never closed"
    return root


DOC_TEXT = DOC_PATH.read_text(encoding="utf-8")
DOC = parse(DOC_TEXT)


def walk(section: Section) -> list[Section]:
    return [section] + [s for child in section.children for s in walk(child)]


def top(title: str) -> Section:
    found = [s for s in walk(DOC) if s.level == 2 and s.title == title]
    assert len(found) == 1, f"docs/protocol.md needs exactly one '## {title}' section"
    return found[0]


def children_of(title: str) -> list[Section]:
    """The subsections of '## title', or none (for parametrizing: the tests that call
    `top` report a missing section)."""
    return [c for s in walk(DOC) if s.level == 2 and s.title == title for c in s.children]


def table_rows(lines: list[str]) -> list[list[str]]:
    """Every row of every Markdown table in `lines`, as stripped cells, separators dropped."""
    rows: list[list[str]] = []
    for line in lines:
        stripped = line.strip()
        if not (stripped.startswith("|") and stripped.endswith("|")):
            continue
        cells = [c.strip() for c in stripped[1:-1].split("|")]
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        rows.append(cells)
    return rows


def tables(lines: list[str]) -> list[list[list[str]]]:
    """Tables in `lines`, each a list of rows (header first), split at non-table lines."""
    found: list[list[list[str]]] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if line.strip().startswith("|"):
            current.append(line)
        elif current:
            found.append(table_rows(current))
            current = []
    return found


def first_code_cells(rows: list[list[str]]) -> list[str]:
    """The backticked first cells of `rows` (the header and plain cells are skipped)."""
    names = []
    for row in rows:
        match = _CODE_TITLE.match(row[0])
        if match:
            names.append(match.group("name"))
    return names


# ---- the code's side -----------------------------------------------------------------------


def tag_of(struct: type[msgspec.Struct]) -> str:
    tag = struct.__struct_config__.tag
    assert isinstance(tag, str)
    return tag


CLIENT_TYPES: dict[str, type[msgspec.Struct]] = {
    tag_of(t): t for t in typing.get_args(p.ClientMessage)
}
SERVER_TYPES: dict[str, type[msgspec.Struct]] = {
    tag_of(t): t for t in typing.get_args(p.ServerMessage)
}
SHAPES: dict[str, type[msgspec.Struct]] = {
    name: obj
    for name, obj in vars(p).items()
    if inspect.isclass(obj)
    and issubclass(obj, msgspec.Struct)
    # Declared in a module of the `signalling.protocol` package, re-exported by it.
    and obj.__module__.startswith(p.__name__ + ".")
    and not name.startswith("_")
    and obj not in CLIENT_TYPES.values()
    and obj not in SERVER_TYPES.values()
}


def field_names(struct: type[msgspec.Struct]) -> set[str]:
    return {f.encode_name for f in msgspec.structs.fields(struct)}


def error_codes() -> set[str]:
    return {
        obj.code
        for obj in vars(errors).values()
        if inspect.isclass(obj) and issubclass(obj, SignallingError)
    }


def close_constants() -> dict[str, int]:
    """Every CLOSE_* integer constant of every module of the `signalling` package (its
    subpackages included: `signalling.cluster` has one)."""
    found: dict[str, int] = {}
    for info in pkgutil.walk_packages(signalling.__path__, signalling.__name__ + "."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if name.startswith("CLOSE_") and isinstance(value, int):
                found[f"{info.name}.{name}"] = value
    return found


# ---- checking one example --------------------------------------------------------------------


def check_client(text: str) -> msgspec.Struct:
    """Decode `text` as the server would, from a JSON and from a msgpack frame."""
    message = decode(text, Encoding.JSON, MAX_FRAME_BYTES)
    as_msgpack = msgspec.msgpack.encode(msgspec.json.decode(text))
    assert decode(as_msgpack, Encoding.MSGPACK, MAX_FRAME_BYTES) == message
    return message


def check_server(text: str) -> msgspec.Struct:
    """Decode `text` into a ServerMessage; it must be exactly what the server would send."""
    message: msgspec.Struct = _server_decoder.decode(text)
    resent = msgspec.json.decode(msgspec.json.encode(message))
    assert resent == msgspec.json.decode(text), (
        "the example differs from what the server sends for it (missing or unknown field?)"
    )
    return message


def check_invalid(text: str) -> None:
    with pytest.raises(InvalidMessage):
        decode(text, Encoding.JSON, MAX_FRAME_BYTES)


def json_blocks() -> list[Block]:
    return [b for b in DOC.all_blocks() if b.words[:1] == ["json"]]


def sequence_blocks() -> list[Block]:
    return [b for b in DOC.all_blocks() if b.words == ["sequence"]]


def block_id(block: Block) -> str:
    return f"line{block.line}"


# ---- the tests -------------------------------------------------------------------------------


def test_the_document_states_the_protocol_version() -> None:
    match = re.search(r"Protocol version: \*{0,2}(\d+)", DOC_TEXT)
    assert match, "state the version as 'Protocol version: N'"
    assert int(match.group(1)) == p.PROTOCOL_VERSION


@pytest.mark.parametrize(
    ("title", "types"),
    [
        ("Client messages", CLIENT_TYPES),
        ("Server messages", SERVER_TYPES),
        ("Shared shapes", SHAPES),
    ],
)
def test_every_message_and_shape_has_exactly_one_section(
    title: str, types: dict[str, type[msgspec.Struct]]
) -> None:
    names = [child.code_name or child.title for child in top(title).children]
    missing = sorted(set(types) - set(names))
    stale = sorted(set(names) - set(types))
    doubled = sorted({n for n in names if names.count(n) > 1})
    assert (missing, stale, doubled) == ([], [], []), f"## {title}: missing, stale, doubled"


def _sections_with_types() -> list[tuple[str, Section, type[msgspec.Struct]]]:
    out = []
    for title, types in (
        ("Client messages", CLIENT_TYPES),
        ("Server messages", SERVER_TYPES),
        ("Shared shapes", SHAPES),
    ):
        for child in children_of(title):
            if child.code_name in types:
                out.append((title, child, types[child.code_name]))
    return out


@pytest.mark.parametrize(
    ("title", "section", "struct"),
    _sections_with_types(),
    ids=[f"{t}:{s.code_name}" for t, s, _ in _sections_with_types()],
)
def test_field_table_lists_exactly_the_fields(
    title: str, section: Section, struct: type[msgspec.Struct]
) -> None:
    field_tables = [t for t in tables(section.all_lines()) if t and t[0][0] == "Field"]
    assert len(field_tables) == 1, f"{title} / {section.title}: one table headed 'Field'"
    listed = first_code_cells(field_tables[0][1:])
    assert sorted(listed) == sorted(field_names(struct))
    assert len(listed) == len(set(listed)), "a field is listed twice"


@pytest.mark.parametrize(
    ("title", "marker", "types", "check"),
    [
        ("Client messages", "client", CLIENT_TYPES, check_client),
        ("Server messages", "server", SERVER_TYPES, check_server),
    ],
)
def test_every_message_section_has_an_example_of_its_type(
    title: str,
    marker: str,
    types: dict[str, type[msgspec.Struct]],
    check: typing.Callable[[str], msgspec.Struct],
) -> None:
    without = []
    for section in top(title).children:
        examples = [b for b in section.all_blocks() if b.words == ["json", marker]]
        kinds = {type(check(b.text)) for b in examples}
        if types.get(section.code_name or "") not in kinds:
            without.append(section.title)
    assert without == [], f"## {title}: sections without a ```json {marker} example of their type"


@pytest.mark.parametrize("block", json_blocks(), ids=block_id)
def test_json_examples_are_marked_and_valid(block: Block) -> None:
    words = block.words
    marker = words[1] if len(words) == 2 else None
    assert marker in JSON_MARKERS, f"line {block.line}: mark it ```json client|server|invalid|data"
    if marker == "client":
        check_client(block.text)
    elif marker == "server":
        check_server(block.text)
    elif marker == "invalid":
        check_invalid(block.text)
    else:
        msgspec.json.decode(block.text)


def msgpack_pairs() -> list[tuple[Block, Block]]:
    """Each ```msgpack block with the block just before it in its section."""
    pairs = []
    for section in walk(DOC):
        blocks = section.blocks
        for i, block in enumerate(blocks):
            if block.words[:1] == ["msgpack"]:
                assert i > 0, f"line {block.line}: a msgpack example follows its JSON"
                pairs.append((blocks[i - 1], block))
    return pairs


@pytest.mark.parametrize("pair", msgpack_pairs(), ids=lambda pair: block_id(pair[1]))
def test_msgpack_examples_are_the_bytes_of_the_json_before_them(
    pair: tuple[Block, Block],
) -> None:
    json_block, packed = pair
    side = packed.words[1]
    assert json_block.words == ["json", side], f"line {packed.line}: after a ```json {side}"
    raw = bytes.fromhex("".join(packed.text.split()))
    if side == "client":
        message: Any = decode(raw, Encoding.MSGPACK, 1 << 20)
        assert message == check_client(json_block.text)
    else:
        message = msgspec.msgpack.decode(raw, type=p.ServerMessage)
        assert message == check_server(json_block.text)
        assert encode(message, Encoding.MSGPACK) == raw


def test_there_are_msgpack_examples_of_both_sides() -> None:
    assert {b.words[1] for _, b in msgpack_pairs()} == {"client", "server"}


def test_there_are_examples_of_every_kind() -> None:
    markers = {b.words[1] for b in json_blocks() if len(b.words) == 2}
    assert markers >= {"client", "server", "invalid"}
    assert sequence_blocks(), "the walkthroughs are ```sequence blocks"


@pytest.mark.parametrize("block", sequence_blocks(), ids=block_id)
def test_sequence_walkthroughs_hold_real_messages(block: Block) -> None:
    sent: dict[str, set[str]] = {}
    for offset, line in enumerate(block.text.splitlines(), start=1):
        where = f"line {block.line + offset}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _SEQUENCE_LINE.match(line)
        assert match, f"{where}: expected 'actor → {{json}}', 'actor ← {{json}}' or '# ...'"
        actor, text = match.group("actor"), match.group("json")
        if match.group("arrow") == "→":
            message: Any = check_client(text)
            sent.setdefault(actor, set()).add(message.id)
        else:
            message = check_server(text)
            ref = getattr(message, "ref", None)
            if ref is not None:
                assert ref in sent.get(actor, set()), f"{where}: {actor} never sent id {ref!r}"


def test_error_codes_table_lists_exactly_the_codes() -> None:
    listed = first_code_cells(table_rows(top("Error codes").all_lines()))
    assert sorted(set(listed)) == sorted(error_codes())


def test_close_codes_table_lists_every_close_constant() -> None:
    rows = table_rows(top("Close codes").all_lines())
    listed = {int(c) for c in first_code_cells(rows) if c.isdigit()}
    constants = close_constants()
    missing = {name: code for name, code in constants.items() if code not in listed}
    assert missing == {}
    assert listed - set(constants.values()) <= LIBRARY_CLOSE_CODES


def _default_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@pytest.mark.parametrize(
    ("key", "default"),
    [
        (f"{section}.{f.name}", _default_text(getattr(cls(), f.name)))
        for section, cls in SETTINGS_SECTIONS.items()
        for f in msgspec.structs.fields(cls)
    ],
)
def test_settings_table_gives_every_setting_with_its_default(key: str, default: str) -> None:
    rows = [r for r in table_rows(top("Settings").all_lines()) if r[0] == f"`{key}`"]
    assert len(rows) == 1, f"one row for `{key}` in ## Settings"
    assert f"`{default}`" in rows[0][1:], f"`{key}`: its default `{default}` in a cell"


@pytest.mark.parametrize(
    ("name", "bound"),
    [
        ("token", None),
        ("device", hub.MAX_DEVICE_CHARS),
        ("app", hub.MAX_APP_CHARS),
        ("resume", hub.MAX_RESUME_CHARS),
        ("encoding", None),
        ("v", None),
    ],
)
def test_query_parameters_are_documented_with_their_bounds(name: str, bound: int | None) -> None:
    rows = [r for r in table_rows(top("Connecting").all_lines()) if r[0] == f"`{name}`"]
    assert len(rows) == 1, f"one row for the `{name}` query parameter in ## Connecting"
    if bound is not None:
        assert re.search(rf"\b{bound}\b", " ".join(rows[0])), f"`{name}`: bound {bound}"


@pytest.mark.parametrize(
    "enum",
    [p.EndReason, p.Direction, Role],
    ids=lambda e: e.__name__,
)
def test_enumerations_are_tabulated(enum: type[Enum]) -> None:
    listed = set(first_code_cells(table_rows(DOC.all_lines())))
    missing = {member.value for member in enum} - listed
    assert missing == set(), f"{enum.__name__}: values without a table row"


@pytest.mark.parametrize(
    "literal",
    [p.PresenceStatus, p.RingStopReason, AuthReason],
    ids=["PresenceStatus", "RingStopReason", "AuthReason"],
)
def test_literal_values_are_mentioned(literal: Any) -> None:
    missing = [v for v in typing.get_args(literal) if f"`{v}`" not in DOC_TEXT]
    assert missing == []
