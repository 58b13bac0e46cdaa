"""JSON within budgets: the size of what bytes would decode to, known before decoding them.

Decoding is where hostile input costs memory: every ``{}`` becomes a Python dict (~64 bytes
for 2 bytes of input), so 16 MB of ``{},`` would become a gigabyte. Counting the structural
characters ``{ [ , :`` is a C-speed upper bound on the values and keys a document decodes to,
with no allocation; only when that bound is over budget (a large HTML body full of commas may
be) are the characters inside strings taken off. Depth is bounded by the decoder's recursion
guard, then by ``deeper_than`` on the decoded value, one level at a time (no recursion).

The collector (a submission), ingest (a line of OONI's files) and the analysis (a measurement
read whole) all measure with these two functions; each keeps its own limits.
"""

from __future__ import annotations

import re
from typing import Any

_STRUCTURAL = (b"{", b"[", b",", b":")
# Linear on any input: possessive quantifiers never backtrack into a string's body.
_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"')


def count_items(body: bytes | bytearray | memoryview, budget: int) -> int:
    """The values and keys ``body`` decodes to (exact enough: an upper bound, tightened only
    when it is over ``budget``), without decoding or copying it.

    Every string is an item too, so more unescaped quotes than two per allowed item is over
    budget at once; otherwise the characters inside the (then few enough) strings are counted
    and taken off.
    """
    rough = sum(body.count(c) for c in _STRUCTURAL)
    if rough <= budget:
        return rough
    strings = (body.count(b'"') - body.count(b'\\"')) // 2  # a lower bound
    if strings > budget:
        return strings
    inside = 0
    for match in _JSON_STRING.finditer(body):
        start, end = match.span()
        inside += sum(body.count(c, start, end) for c in _STRUCTURAL)
    return rough - inside


def deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` levels of objects and arrays."""
    level: list[Any] = [value] if type(value) in (dict, list) else []
    for _ in range(limit):
        deeper: list[Any] = []
        add = deeper.append
        for item in level:
            for child in item.values() if type(item) is dict else item:
                if type(child) is dict or type(child) is list:
                    add(child)
        if not deeper:
            return False
        level = deeper
    return bool(level)
