"""Text out of raw measurements: one title rule, one body decoding, one header normaliser, all
bounded against hostile pages."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from censorwatch.observations.text import (
    MAX_TITLE,
    TITLE_WINDOW,
    as_text,
    decode_body,
    maybe_binary,
    normalize_headers,
    title_of,
)
from censorwatch.probe.http import Exchange, body_field


def test_title_basics() -> None:
    assert title_of("<html><head><title>Home</title></head></html>") == "Home"
    assert title_of(b"<TITLE lang='en'>\n  Access \t Denied\r\n</Title>") == "Access Denied"
    assert title_of("<title/>x") == ""  # an empty, self-closed element
    assert title_of("<title></title><title>second</title>") == ""  # only the first one counts
    assert title_of("<titles>not a title</titles>") == ""
    assert title_of("no title at all") == ""
    assert title_of(None) == "" and title_of(42) == ""  # type: ignore[arg-type]


def test_title_is_cut_to_the_limit_after_whitespace_is_collapsed() -> None:
    long = "word " * 100
    assert title_of(f"<title>{long}</title>") == " ".join(long.split())[:MAX_TITLE]
    assert len(title_of(f"<title>{long}</title>")) == MAX_TITLE


def test_title_must_close_within_the_window() -> None:
    pad = "x" * (TITLE_WINDOW - 10)
    assert title_of(f"{pad}<title>late</title>") == ""
    assert title_of(f"<title>{'y' * TITLE_WINDOW}</title>") == ""
    assert title_of(f"{'x' * (TITLE_WINDOW - 40)}<title>in time</title>") == "in time"


def test_bytes_and_text_of_one_body_give_one_title() -> None:
    """The probe holds bytes (its title goes into the control's answer), the analysis and the
    explorer hold the text the measurement stored: both must read the same title."""
    utf8 = "<title>Доступ ограничен — ü</title>".encode()
    latin1 = "<title>Accès refusé</title>".encode("latin-1")  # not UTF-8: stored as base64
    for raw in (utf8, latin1):
        stored = maybe_binary(body_field(raw))
        assert stored is not None
        assert title_of(raw) == title_of(stored) == Exchange("u", "a", 0.0, body=raw).title
    assert title_of(latin1) == "Accès refusé"  # Latin-1, not U+FFFD replacement characters


def test_a_character_cut_by_the_byte_window_does_not_turn_the_page_into_latin1() -> None:
    # 4-byte characters fill the bytes window exactly up to a cut in the middle of one.
    title = "<title>ключ</title>"
    body = (title + "😀" * TITLE_WINDOW).encode()
    assert title_of(body) == "ключ"


@settings(max_examples=200, deadline=None)
@given(
    prefix=st.text(max_size=50),
    inner=st.text(max_size=300),
    junk=st.binary(max_size=20),
)
def test_probe_and_analysis_titles_agree(prefix: str, inner: str, junk: bytes) -> None:
    raw = f"{prefix}<title>{inner}</title>".encode() + junk
    stored = maybe_binary(body_field(raw))
    assert stored is not None
    assert title_of(raw) == title_of(stored)


@pytest.mark.parametrize(
    "hostile",
    [
        "<title" * 400_000,  # openings that never end
        "<title>" + "a" * 5_000_000,  # a title that never closes
        "<title " + "x" * 5_000_000,  # an opening tag that never closes
        "<title>" * 400_000,
        "<title " + "a=1 " * 1_000_000 + ">t</title>",  # attributes without end
        "<" * 3_000_000,
    ],
    ids=["openings", "unclosed", "endless-tag", "many-titles", "attributes", "angles"],
)
def test_hostile_bodies_are_read_in_bounded_time(hostile: str) -> None:
    for body in (hostile, hostile.encode()):
        started = time.perf_counter()
        title = title_of(body)
        assert time.perf_counter() - started < 0.5
        assert len(title) <= MAX_TITLE


def test_decode_body_never_invents_replacement_characters() -> None:
    assert decode_body("ok ü".encode()) == "ok ü"
    assert decode_body(b"caf\xe9") == "café"
    assert "\ufffd" not in decode_body(bytes(range(256)))


def test_maybe_binary_reads_oonis_base64_objects() -> None:
    data = base64.b64encode(b"<html>\xff</html>").decode()
    assert maybe_binary("plain") == "plain"
    assert maybe_binary({"format": "base64", "data": data}) == "<html>\xff</html>"
    assert maybe_binary({"format": "base64", "data": data.rstrip("=")}) == "<html>\xff</html>"
    assert maybe_binary({"format": "base64", "data": "a"}) is None  # not base64 at all
    assert maybe_binary({"format": "base64", "data": 5}) is None
    assert maybe_binary({"format": "hex", "data": "00"}) is None
    assert maybe_binary(None) is None and maybe_binary(7) is None and maybe_binary([]) is None


def test_as_text_takes_whatever_a_caller_holds() -> None:
    assert as_text(b"caf\xe9") == "café"
    assert as_text("x") == "x"
    assert as_text({"format": "base64", "data": "eA=="}) == "x"
    assert as_text(None) == "" and as_text(3) == ""


def test_headers_from_a_mapping_and_from_a_list_read_the_same() -> None:
    b64 = {"format": "base64", "data": base64.b64encode(b"nginx/\xe9").decode()}
    mapping = {"Server": b64, "Set-Cookie": ["a=1", "b=2"], "X-Bad": 5}
    pairs = [["Server", b64], ["set-cookie", "a=1"], ["SET-COOKIE", "b=2"], ["X-Bad", 5]]
    want = {"server": ["nginx/é"], "set-cookie": ["a=1", "b=2"]}
    assert normalize_headers(mapping) == normalize_headers(pairs) == want


def test_odd_header_shapes_are_skipped() -> None:
    odd = [["only-name"], [1, "x"], "Location: /", ("Location", "/ok"), None, ["a", "b", "c"]]
    assert normalize_headers(odd) == {"location": ["/ok"]}
    assert normalize_headers(None) == {} and normalize_headers("Location: /") == {}
    assert normalize_headers({}) == {} and normalize_headers({5: "x"}) == {}  # type: ignore[dict-item]
