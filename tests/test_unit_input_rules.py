"""Unit tests: the one set of input rules for ids, display texts and transaction ids."""

from __future__ import annotations

import uuid

import pytest

from myko import input_rules
from myko.errors import InvalidArgument, echo

U = "3f2b8c1e-9a4d-4c6e-8f10-2b3c4d5e6f70"


@pytest.mark.parametrize("value", ["z1", "a" * 128, "zone:a.b~c@d-e_f", str(uuid.uuid4()), "0"])
def test_ids_that_pass(value: str) -> None:
    assert input_rules.entity_id(value) == value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "empty"),
        ("a" * 129, "at most 128"),
        ("a" * 100_000, "at most 128"),
        ("a b", "no blanks"),
        (" a", "no blanks"),
        ("a\tb", "no blanks"),
        ("a\x00b", "no blanks"),
        ("a\nb", "no blanks"),
        ("a\u200bb", "no blanks"),
        ("zoné", "no blanks"),
        ("a/b", "no blanks"),
    ],
)
def test_ids_that_fail_name_the_field(value: str, why: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        input_rules.entity_id(value, "zone_id")
    assert err.value.message.startswith("zone_id: ")
    assert why in err.value.message
    assert len(err.value.message) < 200


def test_text_is_trimmed_bounded_and_free_of_controls() -> None:
    assert input_rules.text("  Zone A  ", "name", max_chars=10) == "Zone A"
    assert input_rules.text("line 1\nline 2", "description", max_chars=50, multiline=True) == "line 1\nline 2"
    assert input_rules.text("  ", "tag", max_chars=5, required=False) == ""
    for bad, why in [
        ("", "empty"),
        ("x" * 11, "at most 10"),
        ("a\x00b", "U+0000"),
        ("a\nb", "U+000A"),
        ("a\u202eb", "U+202E"),
        ("a\u2028b", "U+2028"),
    ]:
        with pytest.raises(InvalidArgument) as err:
            input_rules.text(bad, "name", max_chars=10)
        assert err.value.message.startswith("name: ") and why in err.value.message


def test_tx_is_canonical_uuid_text_only() -> None:
    assert input_rules.tx(U) == U
    assert input_rules.tx(U.upper()) == U  # upper case is the same tx, normalised
    for bad in [
        "",
        "not-a-uuid",
        U.replace("-", ""),
        "{" + U + "}",
        "urn:uuid:" + U,
        "urn:" + U.replace("-", ""),  # 36 characters, but not 8-4-4-4-12
        "{" + U.replace("-", "")[:30] + "-" + U.replace("-", "")[30:] + "-}",
        U[:8] + U[9:13] + "-" + U[8] + U[13:],  # a hyphen moved
        U + "\n",
        " " + U,
        str(uuid.UUID(int=0)),
        "x" * 1_000_000,
    ]:
        with pytest.raises(InvalidArgument) as err:
            input_rules.tx(bad)
        assert err.value.message.startswith("tx: ")
        assert len(err.value.message) < 200


def test_echo_bounds_echoed_client_text() -> None:
    assert echo("abc") == "'abc'"
    long = echo("y" * 1_000_000)
    assert len(long) < 120 and "1000000 characters" in long
