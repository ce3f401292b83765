"""The rules every id, display text and transaction id from a client follows.

One set of rules for commands, queries and reports alike, so an id that one
accepts another cannot reject (issue 12, finding 10). Each check raises
`InvalidArgument` naming the field and returns the value to use. The framework
applies `entity_id` to every entity it writes (CommandContext.set) and `tx` to
every command; handlers call them for the ids and texts in their parameters.
docs/errors.md states the rules.
"""

from __future__ import annotations

import re
import unicodedata
import uuid

from myko.errors import InvalidArgument, echo

MAX_ID_CHARS = 128
# Letters, digits and - _ . ~ : @ (URL- and log-safe, no blanks, nothing to escape).
_ID = re.compile(r"[A-Za-z0-9._~:@-]+")
ID_CHARSET = "A-Z a-z 0-9 - _ . ~ : @"

# Text that renders differently from what it stores: bidirectional overrides
# and isolates (they can reverse what an operator reads in a log or a UI).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

# 8-4-4-4-12 hex digits; either case on input, lower case from then on.
_TX = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_NIL_TX = str(uuid.UUID(int=0))


def entity_id(value: str, field: str = "id") -> str:
    """An entity id: 1 to 128 characters from ID_CHARSET."""
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if len(value) > MAX_ID_CHARS:
        raise InvalidArgument(field, f"is {len(value)} characters; at most {MAX_ID_CHARS}")
    if not _ID.fullmatch(value):
        raise InvalidArgument(
            field, f"{echo(value)} may hold only {ID_CHARSET} (no blanks or control characters)"
        )
    return value


def text(value: str, field: str, *, max_chars: int, multiline: bool = False, required: bool = True) -> str:
    """Display text (a name, a tag, a description): trimmed, at most `max_chars`,
    no control characters (tab and newline only when `multiline`), no bidi overrides."""
    value = value.strip()
    if not value:
        if required:
            raise InvalidArgument(field, "must not be empty")
        return value
    if len(value) > max_chars:
        raise InvalidArgument(field, f"is {len(value)} characters; at most {max_chars}")
    allowed = "\t\n" if multiline else ""
    for c in value:
        if c in allowed:
            continue
        if c in _BIDI_CONTROLS or unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp"):
            raise InvalidArgument(field, f"contains the control character U+{ord(c):04X}")
    return value


def tx(raw: str) -> str:
    """A transaction id: a UUID as 8-4-4-4-12 hex digits, returned in lower case.

    Upper-case hex is accepted and normalised (RFC 9562 reads UUIDs case-blind),
    so "ABC…" and "abc…" are the same tx. Braces, "urn:uuid:", missing or moved
    hyphens and the nil UUID are refused."""
    if not raw:
        raise InvalidArgument("tx", "is required (a UUID chosen by the caller)")
    if not _TX.fullmatch(raw):
        raise InvalidArgument("tx", f"{echo(raw)} is not a UUID in 8-4-4-4-12 form (e.g. {uuid.uuid4()})")
    canonical = raw.lower()
    if canonical == _NIL_TX:
        raise InvalidArgument("tx", "must not be the nil UUID: choose a fresh one per command")
    return canonical
