"""Unattended runs (``censorwatch probe --every 1h``): one cycle per interval, never two at once.

Each cycle, in order, between which a SIGTERM or SIGINT stops the probe cleanly:

1. take the run lock (``STATE/probe.lock``, ``fcntl.flock``); when another process holds it,
   skip this cycle with a message naming that process (never wait: two probes on one network
   would measure each other, and a waiting cycle would run late and back-to-back);
2. make room in the state folder: delete measurement files every line of which the collector
   has acknowledged, oldest first, then the oldest receipts; when what is left (undelivered or
   refused measurements) leaves no room for one more cycle, do not measure, and say so in the
   log at WARNING: nothing undelivered is ever deleted;
3. measure (locate, check in, every target), each measurement appended to
   ``STATE/measurements/<start>.jsonl`` and, with ``--submit``, put in the durable queue;
4. flush the queue: what a collector that was down could not take waits for the next cycle;
5. wait the interval plus a random delay of up to ``jitter`` seconds, counted from the cycle's
   start (a cycle that overran starts the next at once; missed cycles are not made up).

The log goes to stderr and to ``STATE/probe.log``, rotated (``RotatingFileHandler``), so the
folder holds at most ``log_max_bytes × (log_backups + 1)`` bytes of log beside the cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import random
import re
import signal
import sys
from dataclasses import dataclass, field
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import IO, Any

from censorwatch.console import SERVICE_LOG_FORMAT
from censorwatch.probe.config import ProbeConfig
from censorwatch.probe.runner import outcome, run, typed_test_keys
from censorwatch.probe.submit import RECEIPTS, QueueingWriter, SubmissionQueue
from censorwatch.targets import Target
from censorwatch.times import compact_stamp, rfc3339, utcnow

LOCK_FILE = "probe.lock"
LOG_FILE = "probe.log"
MEASUREMENTS_DIR = "measurements"
QUEUED_SUFFIX = ".queued"  # beside each cycle's file: the queue items it put, one a line

#: Jitter when none is given: a tenth of the interval, at most five minutes.
JITTER_FRACTION = 0.1
JITTER_MAX = 300.0
DEFAULT_MAX_DISK = 256 * 1024 * 1024
DEFAULT_LOG_MAX_BYTES = 1024 * 1024
DEFAULT_LOG_BACKUPS = 3
#: Receipts kept at most, within the cap (about 3,000 acknowledgements).
RECEIPTS_MAX_BYTES = 1024 * 1024

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(d|h|m|s)")
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]i?b?|b?)", re.IGNORECASE)
log = logging.getLogger("censorwatch.probe.unattended")


def parse_duration(text: str) -> float:
    """Seconds from ``"90"``, ``"90s"``, ``"15m"``, ``"1h"``, ``"1h30m"`` or ``"1d"``."""
    value = text.strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 1h or 1h30m")
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return sum(float(n) * units[u] for n, u in parts)


def parse_size(text: str) -> int:
    """Bytes from ``"1048576"``, ``"500K"``, ``"256M"``, ``"2GiB"`` (powers of 1024)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a size like 500K, 256M or 2G")
    unit = m.group(2).lower()[:1]
    return int(float(m.group(1)) * {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit])


def default_jitter(every: float) -> float:
    return min(every * JITTER_FRACTION, JITTER_MAX)


@dataclass(frozen=True)
class Schedule:
    """When cycles start: every ``every`` seconds plus up to ``jitter``; ``cycles`` of them
    (None: until stopped). The jitter keeps probes that started together (a power cut, a
    fleet of containers) from all measuring, and all calling the collector, at one moment."""

    every: float
    jitter: float
    cycles: int | None = None

    def delay(self, started: float, now: float, rng: random.Random) -> float:
        return max(0.0, started + self.every + rng.uniform(0.0, self.jitter) - now)


class RunLock:
    """An exclusive ``flock`` on ``STATE/probe.lock``, taken for one cycle and released.

    The kernel drops it when the process dies, so a killed probe never leaves a stale lock.
    The holder writes its pid and start time into the file for the message of a skipped run.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def try_acquire(self) -> bool:
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {rfc3339(utcnow())}\n")
        fh.flush()
        self._fh = fh
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace")[:200].strip()
        except OSError:
            return ""

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


@dataclass
class Room:
    """What making room did: bytes in use after it, what it deleted, and whether one more
    cycle fits under the cap."""

    used: int
    deleted: list[str] = field(default_factory=list)
    fits: bool = True


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _tree_size(root: Path) -> int:
    return sum(_size(p) for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0


class StateFolder:
    """The measurement files of unattended cycles and the queue, kept within a byte cap.

    A cycle's file may go only when none of the queue items it put is still pending: the
    collector has acknowledged them all. Refused measurements (``queue/rejected``) and
    everything pending stay until a person or the collector deals with them.
    """

    def __init__(self, root: Path, queue: SubmissionQueue | None) -> None:
        self.root = root
        self.queue = queue
        self.measurements = root / MEASUREMENTS_DIR
        self.measurements.mkdir(parents=True, exist_ok=True)
        self.largest_cycle = 0  # bytes; the room kept free for the next cycle

    def used(self) -> int:
        queue = _tree_size(self.queue.directory) if self.queue is not None else 0
        return _tree_size(self.measurements) + queue

    def cycle_files(self) -> list[Path]:
        return sorted(self.measurements.glob("*.jsonl"))

    def delivered(self, cycle: Path) -> bool:
        if self.queue is None:
            return False  # without a collector the files are the only copy
        manifest = cycle.with_suffix(QUEUED_SUFFIX)
        try:
            names = manifest.read_text(encoding="utf-8").split()
        except FileNotFoundError:
            return False
        return not any((self.queue.pending / name).exists() for name in names)

    def cycle_bytes(self, cycle: Path) -> int:
        """The file, its manifest, and its queue copies (about as large as the file)."""
        copies = 2 if self.queue is not None else 1
        return _size(cycle) * copies + _size(cycle.with_suffix(QUEUED_SUFFIX))

    def make_room(self, max_bytes: int) -> Room:
        for cycle in self.cycle_files():
            self.largest_cycle = max(self.largest_cycle, self.cycle_bytes(cycle))
        target = max(0, max_bytes - self.largest_cycle)
        room = Room(used=self.used())
        for cycle in self.cycle_files():
            if room.used <= target:
                break
            if self.delivered(cycle):
                room.used -= _size(cycle) + _size(cycle.with_suffix(QUEUED_SUFFIX))
                cycle.unlink()
                cycle.with_suffix(QUEUED_SUFFIX).unlink(missing_ok=True)
                room.deleted.append(cycle.name)
        if self.queue is not None:  # receipts: at most RECEIPTS_MAX_BYTES, less when short
            receipts = _size(self.queue.directory / RECEIPTS)
            keep = max(0, min(RECEIPTS_MAX_BYTES, receipts - max(0, room.used - target)))
            room.used -= self.queue.trim_receipts(keep)
        room.fits = room.used <= target
        return room


def setup_logging(state_dir: Path, max_bytes: int, backups: int) -> logging.Logger:
    """The unattended probe's log: stderr (a journal keeps it) and a rotated file."""
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = False
    formatter = logging.Formatter(SERVICE_LOG_FORMAT)
    handlers: list[logging.Handler] = [
        RotatingFileHandler(
            state_dir / LOG_FILE, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        ),
        logging.StreamHandler(sys.stderr),
    ]
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)
    return log


@dataclass
class Unattended:
    """Everything one unattended probe needs; ``run()`` loops until done or stopped."""

    targets: list[Target]
    config: ProbeConfig  # not used by any run yet: each cycle measures with a fresh copy
    state_dir: Path
    schedule: Schedule
    submit: str | None = None
    queue_dir: Path | None = None
    collector_ca: Path | None = None
    concurrency: int = 4
    max_disk: int = DEFAULT_MAX_DISK
    rng: random.Random = field(default_factory=random.SystemRandom)

    def __post_init__(self) -> None:
        self.lock = RunLock(self.state_dir / LOCK_FILE)
        self.queue = SubmissionQueue(self.queue_dir) if self.submit and self.queue_dir else None
        self.folder = StateFolder(self.state_dir, self.queue)
        self.stop = asyncio.Event()
        self.stopped_by = ""

    async def run(self) -> int:
        """Cycles until ``schedule.cycles`` are done or a signal arrives; the cycles measured."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        measured = 0
        number = 0
        log.info(
            "unattended probe: every %gs (+ up to %gs), state %s%s",
            self.schedule.every,
            self.schedule.jitter,
            self.state_dir,
            f", submitting to {self.submit}" if self.submit else ", not submitting",
        )
        try:
            while not self.stop.is_set():
                number += 1
                started = loop.time()
                measured += await self.cycle(number)
                if self.schedule.cycles is not None and number >= self.schedule.cycles:
                    break
                delay = self.schedule.delay(started, loop.time(), self.rng)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), timeout=delay)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        if self.stopped_by:
            log.info("stopped by %s after %d cycle(s)", self.stopped_by, number)
        return measured

    def _on_signal(self, sig: signal.Signals) -> None:
        """First signal: stop at the next step. The handlers are removed, so a second one
        acts as it would on any program (SIGINT raises KeyboardInterrupt, SIGTERM ends)."""
        self.stopped_by = sig.name
        log.info("%s: stopping after the current step", sig.name)
        self.stop.set()
        loop = asyncio.get_running_loop()
        for other in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(other)

    async def cycle(self, number: int) -> int:
        """One cycle; 1 when it measured, 0 when it skipped (lock, disk) or was stopped."""
        if not self.lock.try_acquire():
            holder = self.lock.holder() or "another process"
            log.warning(
                "cycle %d skipped: another probe run holds %s (%s); runs never overlap",
                number,
                self.lock.path,
                holder,
            )
            return 0
        try:
            return await self._locked_cycle(number)
        except Exception:  # one bad cycle must not end a service that runs for months
            log.exception("cycle %d failed; the next one runs as scheduled", number)
            return 0
        finally:
            self.lock.release()

    async def _locked_cycle(self, number: int) -> int:
        room = self._make_room()
        measured = 0
        if not room.fits:
            log.warning(
                "cycle %d not measured: %d bytes of undelivered or refused measurements in %s "
                "leave no room under --max-disk %d; they are kept, and measuring resumes once "
                "the collector has taken them",
                number,
                room.used,
                self.state_dir,
                self.max_disk,
            )
        elif not self.stop.is_set():
            measured = await self._measure(number)
        if self.queue is not None and self.submit and not self.stop.is_set():
            sent = await asyncio.to_thread(
                self.queue.flush, self.submit, ca=self.collector_ca, should_stop=self.stop.is_set
            )
            log.info(
                "cycle %d: delivered %d to %s; %d waiting%s%s",
                number,
                len(sent.sent),
                self.submit,
                sent.queued,
                f" ({sent.error})" if sent.error else "",
                f"; {sent.rejected} refused (kept in queue/rejected)" if sent.rejected else "",
            )
            self._make_room()
        return measured

    def _make_room(self) -> Room:
        room = self.folder.make_room(self.max_disk)
        if room.deleted:
            log.info(
                "disk cap: deleted %d delivered file(s): %s",
                len(room.deleted),
                ", ".join(room.deleted),
            )
        return room

    async def _measure(self, number: int) -> int:
        config = self.config.for_another_run()
        config.unattended = True
        name = f"{compact_stamp(utcnow())}-{os.getpid()}-{number}"
        path = self.folder.measurements / f"{name}.jsonl"
        before = set(self._pending())
        log.info("cycle %d: measuring %s into %s", number, self._what(), path.name)

        def done(measurement: dict[str, Any]) -> None:
            tk = typed_test_keys(measurement)
            log.info("  %s %s", measurement.get("input"), outcome(tk))

        try:
            with path.open("a", encoding="utf-8") as out:
                sink: Any = QueueingWriter(out, self.queue) if self.queue is not None else out
                task = asyncio.create_task(
                    run(self.targets, config, sink, concurrency=self.concurrency, on_done=done)
                )
                stopping = asyncio.create_task(self.stop.wait())
                await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not task.done():  # stopped: URLs in flight are dropped, finished ones kept
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                    log.info("cycle %d: measuring interrupted; what finished is kept", number)
                    return 0
                summary = task.result()
        finally:
            queued = sorted(set(self._pending()) - before)
            if self.queue is not None:
                path.with_suffix(QUEUED_SUFFIX).write_text("".join(n + "\n" for n in queued))
        self.folder.largest_cycle = max(self.folder.largest_cycle, self.folder.cycle_bytes(path))
        blocked = ", ".join(f"{k}: {v}" for k, v in sorted(summary.blocking.items())) or "none"
        log.info(
            "cycle %d: %d measured in %.1fs; accessible %d; blocking %s; written to %s",
            number,
            summary.measured,
            summary.seconds,
            summary.accessible,
            blocked,
            path,
        )
        return 1

    def _pending(self) -> list[str]:
        return [p.name for p in self.queue.items()] if self.queue is not None else []

    def _what(self) -> str:
        if self.targets:
            return f"{len(self.targets)} target(s)"
        return "the check-in's list"


def run_unattended(job: Unattended) -> int:
    """Run ``job`` in a fresh event loop; the cycles that measured."""
    return asyncio.run(job.run())


__all__ = [
    "DEFAULT_LOG_BACKUPS",
    "DEFAULT_LOG_MAX_BYTES",
    "DEFAULT_MAX_DISK",
    "RunLock",
    "Schedule",
    "StateFolder",
    "Unattended",
    "default_jitter",
    "parse_duration",
    "parse_size",
    "run_unattended",
    "setup_logging",
]
