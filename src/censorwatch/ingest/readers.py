"""Each kind of OONI file as the records it holds: JSONL lines, postcan submissions, can lines.

A reader only splits a file into records within the limits; ``ooni`` decodes and names them.
A member a reader does not read (a YAML report, a file that is no submission) is a ``Note``
with its reason, never dropped unseen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from censorwatch.ingest import layouts
from censorwatch.ingest.lines import Limits, UnreadableFile, split_lines
from censorwatch.ingest.streams import StreamError, gzip_blocks, gzip_or_plain_blocks, lz4_blocks
from censorwatch.ingest.tars import Member, members

#: A postcan member's JSON wrapping (``{"format": "json", "content": …}``) beyond the line
#: limit the measurement itself is allowed.
POST_SLACK = 64 << 10


@dataclass(frozen=True, slots=True)
class Record:
    """One measurement's bytes, and where they were."""

    member: str | None  # the tar member, for a container
    line: int | None  # the line number, for lines
    data: bytes | None  # None: over the size limit (not kept)
    ended: bool = True  # a newline closed the line
    post: bool = False  # a postcan submission (the UID is in the member's name)


@dataclass(frozen=True, slots=True)
class Note:
    """A member that is not read, and why."""

    member: str
    reason: str
    unsupported: bool = False  # a format declared unsupported (legacy YAML), not a fault


Item = Record | Note

YAML_REPORT = "a legacy YAML report: not supported (not read)"


def read_records(kind: str, stream: IO[bytes], limits: Limits) -> Iterator[Item]:
    """The records of a file of ``kind`` (``layouts``); ``UnreadableFile`` where it stops."""
    reader = _READERS.get(kind)
    if reader is None:
        raise UnreadableFile(f"no reader for {kind} files")
    yield from reader(stream, limits)


def _jsonl(stream: IO[bytes], limits: Limits) -> Iterator[Item]:
    for number, line, ended in split_lines(gzip_blocks(stream), limits):
        yield Record(None, number, line, ended)


def _report_can(stream: IO[bytes], limits: Limits) -> Iterator[Item]:
    for number, line, ended in split_lines(lz4_blocks(stream), limits):
        yield Record(None, number, line, ended)


def _postcan(stream: IO[bytes], limits: Limits) -> Iterator[Item]:
    most = limits.max_line_bytes + POST_SLACK
    for member in members(gzip_or_plain_blocks(stream), limits):
        if not member.name.endswith(".post"):
            yield Note(member.name, "not a submission (.post): not read")
        elif member.size > most:
            yield Record(member.name, None, None, post=True)
        else:
            yield Record(member.name, None, _whole(member), post=True)


def _whole(member: Member) -> bytes:
    try:
        return member.read_all()
    except StreamError as exc:  # the tar stops inside this member
        raise UnreadableFile(f"{exc} (in member {member.name!r})") from None


def _tar_can(stream: IO[bytes], limits: Limits) -> Iterator[Item]:
    lines = 0
    for member in members(lz4_blocks(stream), limits):
        if member.name.endswith(".yaml"):
            yield Note(member.name, YAML_REPORT, unsupported=True)
            continue
        if not member.name.endswith(".json"):
            yield Note(member.name, "not a report (.json or .yaml): not read")
            continue
        try:
            for number, line, ended in split_lines(member.blocks(), limits):
                lines += 1
                if lines > limits.max_file_lines:
                    raise UnreadableFile(
                        f"more than {limits.max_file_lines} lines; the rest is not read"
                    )
                yield Record(member.name, number, line, ended)
        except UnreadableFile as exc:
            raise UnreadableFile(f"{exc} (in member {member.name!r})") from None


_READERS: dict[str, Callable[[IO[bytes], Limits], Iterator[Item]]] = {
    layouts.JSONL: _jsonl,
    layouts.POSTCAN: _postcan,
    layouts.TAR_CAN: _tar_can,
    layouts.REPORT_CAN: _report_can,
}
