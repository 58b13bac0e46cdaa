"""The JSON entry points besides the collector's, fuzzed: the analysis road over files and
ingest's line decoder. Whatever the bytes (sizes, depths, encodings, shapes), each answers
with a verdict or a named refusal, never an exception, and memory stays within a few times the
input (the collector's own fuzz is in test_collector_hostile.py)."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from censorwatch.analysis import core
from censorwatch.analysis.core import analyze_files
from censorwatch.analysis.fingerprints import Fingerprints
from censorwatch.ingest.decode import decode_measurement
from censorwatch.ingest.lines import Limits
from censorwatch.netinfo import address_plan

PLAN = address_plan(None)
NO_FPS = Fingerprints.empty()

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=40,
)
_SHAPES = st.sampled_from([b"{}", b"[]", b"0", b'""', b'{"a":0}', b"[[]]", b'"\xff"', b"{"])


def _lines(value: Any, encoding: str, ascii: bool) -> bytes | None:
    try:
        return json.dumps(value, ensure_ascii=ascii).encode(encoding)
    except UnicodeEncodeError:
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    values=st.lists(_JSON, min_size=1, max_size=4),
    encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]),
    ascii=st.booleans(),
    junk=st.binary(max_size=40),
)
def test_fuzz_the_analysis_road_answers_every_line(tmp_path_factory, values, encoding, ascii, junk):
    path = tmp_path_factory.mktemp("fuzz") / "input.jsonl"
    lines = [b for b in (_lines(v, encoding, ascii) for v in values) if b is not None]
    path.write_bytes(b"\n".join([*lines, junk]) + b"\n")
    results = list(analyze_files([path], NO_FPS, PLAN))  # never raises
    for source, result, problem in results:
        assert source.startswith(str(path))
        assert (result is None) != (problem is None)
        if result is not None:
            assert result.verdict.verdict in ("ok", "blocked", "down", "unknown")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_JSON, encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]), ascii=st.booleans())
def test_fuzz_ingest_decodes_or_names_every_line(value, encoding, ascii) -> None:
    line = _lines(value, encoding, ascii)
    if line is None:
        return
    answer = decode_measurement(line, Limits())
    assert isinstance(answer, dict | str)
    if isinstance(answer, dict):
        assert answer == json.loads(line)


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=_SHAPES, count=st.integers(1, 2_000_000), depth=st.integers(0, 80))
def test_fuzz_memory_stays_within_a_few_times_the_input(tmp_path_factory, shape, count, depth):
    """The analysis road and ingest's decoder refuse, unbuilt, what would cost tens of times
    its size; what they do build costs a few times its bytes."""
    body = b"[" * depth + b'{"x_pad":[' + b",".join([shape] * count) + b"]}" + b"]" * depth
    path = tmp_path_factory.mktemp("mem") / "input.jsonl"
    path.write_bytes(body + b"\n")
    budget = 200_000
    limits = Limits(max_line_values=budget)
    original = core.MAX_VALUES
    core.MAX_VALUES = budget
    try:
        analysed = _peak(lambda: list(analyze_files([path], NO_FPS, PLAN)))
    finally:
        core.MAX_VALUES = original
    ingested = _peak(lambda: decode_measurement(body, limits))
    allowance = 30 * len(body) + (16 << 20)  # + the reader's block buffers
    assert analysed < allowance, (analysed, len(body))
    assert ingested < allowance, (ingested, len(body))
