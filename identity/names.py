"""What a user id or display name may be: one spelling per look, nothing that steers a terminal.

Ids reach logs, the trace and other people's screens. Two ids that look the same must be
the same id, so every id is taken in Unicode normal form NFKC (fullwidth U+FF20 U+FF4F
U+FF11 become "@o1", and are then refused as the server's own prefix like "@o1").
Characters that are not text (C0 and C1 controls such as ESC, the start of every ANSI
escape; line and paragraph separators; zero-width and bidirectional formatting characters
that reorder or hide what a reader sees) are refused, not stripped: stripping would make
two ids that differ in bytes look equal in a log.
"""

from __future__ import annotations

import unicodedata
from typing import Final

# Unicode's "Cc" (control), "Cf" (format), "Zl" and "Zp" (separators), "Cs" (surrogates),
# "Co" (private use) and "Cn" (unassigned).
_NOT_TEXT: Final = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})

# The same set for msgspec patterns on the wire (`signalling.protocol`), as far as a regular
# expression can say it cheaply: controls, separators, zero-width and bidi formatting.
NO_CONTROL_PATTERN: Final = (
    "^[^\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]*$"
)


def free_text(value: str, *, max_chars: int) -> str:
    """What a person wrote to another (an instruction), or `BadName`: in Unicode normal form
    NFC, which joins decomposed characters but keeps what the writer chose: NFKC would turn
    the fullwidth punctuation of Chinese text (，。：) into ASCII. Control and formatting
    characters are refused as in ids; white space around the text is allowed."""
    text = unicodedata.normalize("NFC", value)
    if not text:
        raise BadName("empty")
    if len(text) > max_chars:
        raise BadName(f"longer than {max_chars} characters")
    if any(unicodedata.category(ch) in _NOT_TEXT for ch in text):
        raise BadName("contains control or formatting characters")
    return text


class BadName(ValueError):
    """An id or name that cannot be used; the message says why, without echoing it."""


def normalised(value: str, *, max_chars: int) -> str:
    """`value` in NFKC, 1 to `max_chars` characters of text, or `BadName`."""
    text = unicodedata.normalize("NFKC", value)
    if not text:
        raise BadName("empty")
    if len(text) > max_chars:
        raise BadName(f"longer than {max_chars} characters")
    if any(unicodedata.category(ch) in _NOT_TEXT for ch in text):
        raise BadName("contains control or formatting characters")
    if text != text.strip():
        # " o1" and "o1" would print alike.
        raise BadName("begins or ends with white space")
    return text


__all__ = ["NO_CONTROL_PATTERN", "BadName", "free_text", "normalised"]
