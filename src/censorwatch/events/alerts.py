"""Webhook alerts: a durable outbox and a background sender that retries with back-off.

Two roads feed the outbox: ``censorwatch events --webhook`` (a run over verdict files) and the
collector (``censorwatch serve --webhook``), whose stored-events writer hands each commit's
changes to :class:`Alerting`.

Detection only *enqueues* (one SQLite insert per alert and URL, next to the tracker's state
file), so a slow or failing webhook never holds detection up, and an alert that could not be
delivered stays queued across runs until a receiver acknowledges it with a 2xx answer.

Delivery is at-least-once: an alert is marked delivered only after its 2xx, so a receiver that
processed a request whose answer got lost will see it again. Every message carries a stable
``alert_id`` (also sent as the ``Idempotency-Key`` header); receivers dedupe on it, which makes
the effect exactly-once. Exactly-once *transport* is not possible over HTTP without that.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from censorwatch.events.platforms import Platform, load_platforms
from censorwatch.events.population import Estimates, with_impact
from censorwatch.events.rollup import AlertScope, contents, in_scope
from censorwatch.events.tracker import Change
from censorwatch.events.workarounds import headline
from censorwatch.model import Event

KINDS = ("opened", "methods_changed", "networks_changed", "ended")


def summary(event: Event) -> str:
    """One sentence a person can read in a chat channel."""
    nets = ", ".join(event.asns)
    how = " / ".join(event.methods) or "unknown method"
    since = event.onset.before
    if event.scope == "national":
        blocked = event.measurements.get("networks_blocked", len(event.asns))
        measured = event.measurements.get("networks_measured", blocked)
        text = (
            f"{event.target} blocked in {event.cc} on {blocked} of {measured} networks "
            f"measured ({nets}), methods {how}, from {since}"
        )
    else:
        text = f"{event.target} blocked on {nets} ({event.cc}) by {how}, onset before {since}"
    if event.end:
        text += f", ended by {event.end.before}"
    if isinstance(event.impact, dict):
        from censorwatch.events.population import impact_line

        text += f"; {impact_line(event.impact)}"
    if isinstance(event.workarounds, dict) and (still := headline(event.workarounds)):
        text += f"; {still}"
    return text


def alert_message(change: Change, inside: dict[str, Any] | None = None) -> dict[str, Any]:
    """The alert for one change. ``inside`` (``rollup.contents``) adds the networks and hosts
    the event holds; the ``alert_id`` depends on the change alone, never on that context."""
    ev = change.event
    ident = "|".join(
        [change.kind, ev.event_id, ",".join(sorted(ev.methods)), ",".join(ev.asns)]
        + ([ev.end.before] if ev.end and change.kind == "ended" else [])
    )
    message = {
        "alert_id": "alr_" + hashlib.sha256(ident.encode()).hexdigest()[:24],
        "kind": change.kind,
        "event_id": ev.event_id,
        "summary": summary(ev),
        "event": ev.to_record(),
    }
    if isinstance(ev.workarounds_summary, str):
        message["workarounds_summary"] = ev.workarounds_summary  # what still gets through
    if isinstance(ev.censor_location_summary, str):
        message["censor_location_summary"] = ev.censor_location_summary  # where it sits
    if inside is not None:
        message["networks"] = inside["networks"]
        message["hosts"] = inside["hosts"]
    return message


@dataclass(frozen=True)
class Subscription:
    """What a subscriber wants to be told: how deep (``national`` by default: one alert when a
    national block opens, changes networks or methods, or ends; ``network`` adds each
    network's; ``host`` each host's), and optionally only some countries and targets (a
    platform name, or a host, which also matches the platform events that hold it)."""

    scope: AlertScope = "national"
    ccs: frozenset[str] = frozenset()
    targets: frozenset[str] = frozenset()

    def messages(
        self, changes: Iterable[Change], events: list[Event], platforms: list[Platform]
    ) -> list[dict[str, Any]]:
        """The alerts for ``changes``, each carrying the networks and hosts inside its event.
        ``events`` are all current events (what the changes' events are folded against)."""
        out = []
        for change in changes:
            ev = change.event
            if self.ccs and ev.cc not in self.ccs:
                continue
            if not in_scope(ev, events, platforms, self.scope):
                continue
            inside = contents(ev, events, platforms)
            if self.targets and not (
                ev.target in self.targets or {h["host"] for h in inside["hosts"]} & self.targets
            ):
                continue
            out.append(alert_message(change, inside))
        return out


class AlertQueue:
    """The outbox: one row per (alert, webhook URL) until a receiver has acknowledged it."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        with closing(self._connect()) as db, db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS outbox ("
                " alert_id TEXT NOT NULL, url TEXT NOT NULL, body TEXT NOT NULL,"
                " queued_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
                " next_attempt REAL NOT NULL, delivered_at REAL, last_error TEXT,"
                " PRIMARY KEY (alert_id, url))"
            )

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30.0)

    def enqueue(self, messages: Iterable[dict[str, Any]], urls: Iterable[str]) -> int:
        """Queue each message for each URL; an alert already queued is not queued twice."""
        now = time.time()
        urls = list(urls)
        rows = [
            (m["alert_id"], url, json.dumps(m, sort_keys=True), now, now)
            for m in messages
            for url in urls
        ]
        with closing(self._connect()) as db, db:
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO outbox (alert_id, url, body, queued_at, next_attempt)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            return db.total_changes - before

    def due(self, now: float, limit: int = 100) -> list[tuple[str, str, str, int]]:
        with closing(self._connect()) as db:
            return db.execute(
                "SELECT alert_id, url, body, attempts FROM outbox"
                " WHERE delivered_at IS NULL AND next_attempt <= ?"
                " ORDER BY queued_at, alert_id LIMIT ?",
                (now, limit),
            ).fetchall()

    def next_attempt(self) -> float | None:
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT MIN(next_attempt) FROM outbox WHERE delivered_at IS NULL"
            ).fetchone()
            return row[0]

    def pending(self) -> int:
        with closing(self._connect()) as db:
            return db.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[
                0
            ]

    def delivered(self, alert_id: str, url: str) -> None:
        with closing(self._connect()) as db, db:
            db.execute(
                "UPDATE outbox SET delivered_at = ?, last_error = NULL"
                " WHERE alert_id = ? AND url = ?",
                (time.time(), alert_id, url),
            )

    def failed(self, alert_id: str, url: str, error: str, retry_at: float) -> None:
        with closing(self._connect()) as db, db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt = ?, last_error = ?"
                " WHERE alert_id = ? AND url = ?",
                (retry_at, error[:500], alert_id, url),
            )


class WebhookSender:
    """Delivers queued alerts from a background thread; exponential back-off with jitter."""

    def __init__(
        self,
        queue: AlertQueue,
        *,
        timeout: float = 5.0,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
    ) -> None:
        self.queue = queue
        self.timeout = timeout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> WebhookSender:
        self._thread = threading.Thread(target=self._run, name="censorwatch-webhooks", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """New alerts were queued: try them now."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=self.timeout + 5.0)

    def drain(self, seconds: float) -> int:
        """Wait up to ``seconds`` for the outbox to empty; return what is still pending."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.queue.pending() == 0:
                return 0
            self._wake.set()
            time.sleep(0.05)
        return self.queue.pending()

    def backoff(self, attempts: int) -> float:
        delay = min(self.max_delay, self.base_delay * 2**attempts)
        return delay * random.uniform(0.5, 1.0)

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
            while not self._stop.is_set():
                self.send_due(client)
                nxt = self.queue.next_attempt()
                wait = 1.0 if nxt is None else max(0.0, min(1.0, nxt - time.time()))
                self._wake.wait(wait)
                self._wake.clear()

    def send_due(self, client: Any) -> int:
        sent = 0
        for alert_id, url, body, attempts in self.queue.due(time.time()):
            if self._stop.is_set():
                break
            try:
                # Only the status matters: the answer's body is never read (bounded bytes).
                with client.stream(
                    "POST",
                    url,
                    content=body.encode(),
                    headers={"Content-Type": "application/json", "Idempotency-Key": alert_id},
                ) as resp:
                    status = resp.status_code
                ok = 200 <= status < 300
                error = "" if ok else f"HTTP {status}"
            except Exception as exc:  # any transport failure is retried later
                ok, error = False, f"{type(exc).__name__}: {exc}"
            if ok:
                self.queue.delivered(alert_id, url)
                sent += 1
            else:
                self.queue.failed(alert_id, url, error, time.time() + self.backoff(attempts))
        return sent


class Alerting:
    """The collector's alerts: each commit's event changes, as one subscription sees them,
    queued and sent in the background (``StoredEvents.on_changes``).

    The changes are queued before the events that caused them are saved, so a collector that
    dies in between tells them again when it replays its rows at the next start, and the
    outbox, which ignores an alert already queued or delivered, sends each once."""

    def __init__(
        self,
        queue: AlertQueue,
        urls: list[str],
        subscription: Subscription,
        *,
        platforms: list[Platform] | None = None,
        population: list[Estimates] | None = None,
        sender: WebhookSender | None = None,
    ) -> None:
        self.queue = queue
        self.urls = list(urls)
        self.subscription = subscription
        self.platforms = platforms if platforms is not None else load_platforms()
        self.population = population or []
        self.sender = sender if sender is not None else WebhookSender(queue)

    def __call__(self, changes: list[Change], events: list[Event]) -> None:
        current = with_impact(events, self.population)
        by_id = {e.event_id: e for e in current}
        told = [Change(c.kind, by_id.get(c.event.event_id, c.event)) for c in changes]
        if self.queue.enqueue(self.subscription.messages(told, current, self.platforms), self.urls):
            self.sender.wake()

    def start(self) -> Alerting:
        """Start sending (alerts left queued by an earlier run go first)."""
        self.sender.start()
        return self

    def stop(self) -> int:
        """Stop the sender; what is still queued waits for the next start."""
        self.sender.stop()
        return self.queue.pending()
