"""The UID OONI gives a measurement in each layout of its bucket, and its content name.

* A postcan keeps each submission as ``…/<measurement_uid>.post``: the member's name is the
  UID OONI's API and explorer know it by.
* A ``jsonl.gz`` line carries no UID of its own (OONI's uploader writes the submission's
  content; the UID lives in OONI's database beside the file and line number): censorwatch
  keeps a ``measurement_uid`` the line has, and otherwise names it by its content.
* A can's line gets OONI's trivial id: ``01``, the day of ``measurement_start_time``
  (``00000000`` when that is not OONI's ``YYYY-MM-DD HH:MM:SS``), and 30 hex digits of the
  SHAKE-128 of the line's bytes with its newline, as ``oonidata`` computes it.

The content name (``model.derive_measurement_uid``, blind to ``measurement_uid``) is the
same whichever layout the measurement was read from: ``dedupe`` stores it once by it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from censorwatch.model import derive_measurement_uid

POST_SUFFIX = ".post"


def post_uid(member: str) -> str | None:
    """The UID in a postcan member's name, or None for a member that is not a ``.post``."""
    name = member.rsplit("/", 1)[-1]
    if not name.endswith(POST_SUFFIX) or len(name) == len(POST_SUFFIX):
        return None
    return name[: -len(POST_SUFFIX)]


def can_uid(line: bytes, ended: bool, measurement: dict[str, Any]) -> str:
    """OONI's trivial id of a can's line (``ended``: a newline closed it in the file)."""
    digest = hashlib.shake_128(line + b"\n" if ended else line).hexdigest(15)
    start = measurement.get("measurement_start_time")
    try:
        day = datetime.strptime(start, "%Y-%m-%d %H:%M:%S").strftime("%Y%m%d")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        day = "00000000"
    return f"01{day}{digest}"


def content_name(measurement: dict[str, Any]) -> str:
    """The name of what the measurement says, whatever UID it was given."""
    return derive_measurement_uid(measurement)
