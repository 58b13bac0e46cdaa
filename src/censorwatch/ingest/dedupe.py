"""One measurement, one row, whichever of OONI's layouts it was read from.

A postcan and the ``jsonl.gz`` beside it hold the same submissions; the ``jsonl/`` tree holds
again what the cans hold. The layouts name a measurement differently (a postcan by OONI's
UID, a can by OONI's trivial id, a jsonl line by nothing), so the UID alone cannot tell that
two reads are one measurement. Its content name (``identity.content_name``) can: a
measurement is new only if neither its UID, nor its content name, nor the UID its content
name stands for (``Store.aliased``) is stored. The alias is written before the measurement is
committed, so a crash between the two leaves an alias to nothing, which is harmless.
"""

from __future__ import annotations

from collections.abc import Sequence

from censorwatch.collector.pipeline import Pending
from censorwatch.store.base import Store


def fresh(store: Store, batch: Sequence[tuple[Pending, str]]) -> tuple[list[Pending], int]:
    """The measurements of ``batch`` (each with its content name) whose content is not
    stored yet under any name, and how many were left out; their aliases are recorded."""
    names = list({name for _, name in batch})
    stored_by_name = store.existing(names)
    aliases = store.aliased(names)
    stored_aliased = store.existing(list(set(aliases.values())))
    seen: set[str] = set()
    keep: list[Pending] = []
    new_aliases: dict[str, str] = {}
    for pending, name in batch:
        uid = pending.measurement_uid
        other = aliases.get(name)
        if name in seen:
            continue  # the same content twice in one batch
        seen.add(name)
        if uid != name and name in stored_by_name:
            continue  # stored before under its content name (a line without a UID)
        if other is not None and other != uid and other in stored_aliased:
            continue  # stored before from another layout, under the UID that one gave
        keep.append(pending)
        if uid != name and other is None:
            new_aliases[name] = uid
    store.add_aliases(new_aliases)
    return keep, len(batch) - len(keep)
