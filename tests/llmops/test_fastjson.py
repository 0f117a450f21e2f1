"""llmops.fastjson reads what json.loads reads, the same values and the same errors, and
llmops.limits' loads refuses what it refused before its orjson path."""

from __future__ import annotations

import json
import math
import random
import struct

import pytest

from llmops import fastjson, limits


def _same(text):
    """fastjson.loads(text) against json.loads(text): the same value (NaN compared as NaN),
    or the same error type."""
    try:
        expected = json.loads(text)
    except Exception as exc:  # the type is what is compared
        with pytest.raises(type(exc)):
            fastjson.loads(text)
        return
    got = fastjson.loads(text)
    assert repr(got) == repr(expected)
    assert _types(got) == _types(expected)


def _types(value):
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value).__name__


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": [1.5, -0.0, 1e-7, 2E3], "c": null, "d": true, "e": "\\u00e9\\ud83d\\ude00"}',
        '{"a": 1, "a": 2}',  # the last of a repeated key
        '{"b": 1, "a": 2}',  # the keys' order
        '{"a": NaN}',
        "[Infinity, -Infinity]",
        '{"a": 1e999}',
        '{"n": 123456789012345678901234567890}',  # past 64 bits: orjson reads a float
        '{"n": 9223372036854775808}',  # 2**63: an int for json.loads
        '{"n": -9223372036854775809}',
        '{"n": 9223372036854775807}',
        '{"s": "a run of 1234567890123456789012 digits in a string"}',
        '"\\ud800"',  # a lone surrogate
        "[" * 2000 + "]" * 2000,  # deeper than orjson's 1,024 levels
        "",
        "{",
        '{"a": 1} x',
        " [1, 2] ",
        '"\x00"',
    ],
)
def test_the_same_as_json_loads_str(text):
    _same(text)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": "\xc3\xa9"}',
        '{"a": "é"}'.encode("utf-16"),  # json.loads detects UTF-16; orjson does not
        b'{"a": "\xff"}',  # not UTF-8
        b'{"n": 99999999999999999999}',
        b"\xef\xbb\xbf{}",  # a BOM
    ],
)
def test_the_same_as_json_loads_bytes(raw):
    _same(raw)


def test_random_doubles_read_as_json_loads_reads_them():
    rng = random.Random(7)
    for _ in range(20_000):
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if not math.isfinite(value):
            continue
        for text in (repr(value), f"{value:.17g}", f"{value:.6e}"):
            _same(f"[{text}]")


def test_fast_says_when_only_json_loads_can_read_it():
    assert fastjson.fast('{"a": [1, 2]}') == (True, {"a": [1, 2]})
    assert fastjson.fast('{"a": NaN}') == (False, None)
    assert fastjson.fast('{"n": 1234567890123456789}') == (False, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('{"metadata": {"a": NaN}}', "metadata.a: NaN is not a finite number"),
        ('{"x": [1, 1e999]}', "x.1: 1e999 is not a finite number"),
        ('{"n": 9223372036854775808}', "n: 9223372036854775808 is not a finite number"),
        ('{"n": 18446744073709551615}', "n: 18446744073709551615 is not a finite number"),
        ("{", "The body is not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "The body is nested too deeply"),
    ],
)
def test_limits_refuses_as_before(body, message):
    with pytest.raises(limits.Refused) as refused:
        limits.loads(body)
    assert refused.value.status == 400
    assert message in refused.value.message


def test_limits_reads_the_largest_64_bit_integers():
    assert limits.loads(b'{"n": 9223372036854775807, "m": -9223372036854775808}') == {
        "n": 2**63 - 1,
        "m": -(2**63),
    }


@pytest.mark.parametrize(
    ("text", "long"),
    [
        ("1" * 18, False),
        ("1" * 19, True),
        ('{"a": 123456789, "b": 1234567890}', False),  # 19 digits, not in one run
        ('{"a": "x' + "7" * 25 + '"}', True),
        ("é\ud800" + "5" * 19, True),  # a lone surrogate does not stop the search
        (("1" * 19).encode(), True),
        (bytearray(b"12345678901234567.8"), False),
    ],
)
def test_a_run_of_19_digits_is_found_wherever_it_is(text, long):
    assert fastjson._has_long_digits(text) is long


def test_lines_are_split_wherever_the_chunks_end():
    text = b'{"a": 1}\r\n{"b": "x\\ny"}\n\n{"c": [1,\n'
    for size in (1, 2, 3, 7, len(text)):
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        assert list(fastjson.lines(chunks)) == [b'{"a": 1}\r', b'{"b": "x\\ny"}', b"", b'{"c": [1,']
    assert list(fastjson.lines([b'{"a": 1}', b'\n{"b": 2}'])) == [b'{"a": 1}', b'{"b": 2}']
    assert list(fastjson.lines([])) == []


def test_a_line_is_read_as_a_replacing_text_decoder_gives_it():
    assert fastjson.stored_line_loads(b'{"a": 1}\r') == ({"a": 1}, "")
    assert fastjson.stored_line_loads(b'{"a": "\xff"}') == ({"a": "\ufffd"}, "")
    big = 123456789012345678901234567890
    assert fastjson.stored_line_loads(b"[%d]" % big) == ([big], "")
    with pytest.raises(ValueError):
        fastjson.stored_line_loads(b'{"a": ')


@pytest.mark.parametrize(
    ("raw", "unstorable"),
    [
        (b'{"a": [1, 2.5, "NaN"]}', ""),  # orjson read it: nothing to search
        (b'{"a": 12345678901234567890123}', ""),  # json.loads read it: searched, finite
        (b'{"a": NaN}', "NaN"),
        (b'{"a": {"b": [0, Infinity]}}', "Infinity"),
        (b"[-Infinity, NaN]", "-Infinity"),  # the first, in reading order
        (b'{"a": -1e400}', "-Infinity"),
        (b'{"a": "\xff", "b": NaN}', "NaN"),  # no UTF-8: read as decoded with replacements
    ],
)
def test_stored_line_loads_names_the_first_number_no_json_column_holds(raw, unstorable):
    value, found = fastjson.stored_line_loads(raw)

    assert found == unstorable
    expected = json.loads(raw.decode("utf-8", "replace"))
    assert json.dumps(value) == json.dumps(expected)  # the same value as json.loads'


def test_stored_line_loads_refuses_what_is_no_json():
    with pytest.raises(ValueError):
        fastjson.stored_line_loads(b'{"a": ')


def test_not_finite_walks_deep_values_without_recursing():
    deep: list = [math.inf]
    for _ in range(100_000):
        deep = [deep]

    assert fastjson.not_finite(deep) == "Infinity"
    assert fastjson.not_finite({"a": [1.0, {"b": "x"}], "c": None}) == ""


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1.5, -0.0, 1e-7, 2e3], "c": None, "d": True, "e": "é😀 \u2028"},
        {"b": 1, "a": 2},  # the keys' order kept
        {"n": 2**70, "m": -(2**63) - 1, "k": 2**64 - 1},  # past 64 bits: json.dumps writes it
        {1: "one", None: "none", 2.5: "x"},  # keys that are not text: json.dumps makes them text
        ["\ud800"],  # a lone surrogate, which orjson refuses to write
        [[[[{"deep": ["list"]}]]]],
        "text",
        12,
    ],
)
def test_dumps_writes_what_json_dumps_writes_read_back(value):
    text = fastjson.dumps(value)
    assert isinstance(text, str)
    assert json.loads(text) == json.loads(json.dumps(value))
    assert _types(json.loads(text)) == _types(json.loads(json.dumps(value)))


def test_random_doubles_are_written_as_the_same_number():
    rng = random.Random(11)
    values = [
        struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0] for _ in range(20_000)
    ]
    values = [value for value in values if math.isfinite(value)]
    assert json.loads(fastjson.dumps(values)) == values
