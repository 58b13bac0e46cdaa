"""Prometheus metrics of one running collector (its own registry, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.submissions = Counter(
            "censorwatch_submissions_total",
            "Measurement submissions by outcome (stored, duplicate, rejected, failed).",
            ["outcome"],
            registry=r,
        )
        self.rejections = Counter(
            "censorwatch_rejections_total",
            "Refused requests by HTTP status.",
            ["status"],
            registry=r,
        )
        self.reports_opened = Counter(
            "censorwatch_reports_opened_total", "Reports opened.", registry=r
        )
        self.commit_batch = Histogram(
            "censorwatch_commit_batch_size",
            "Measurements per group commit (one fsync each).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )
        self.commit_seconds = Histogram(
            "censorwatch_commit_seconds",
            "Time of one group commit: archive write + fsync, log append + fsync, hooks, "
            "database insert.",
            registry=r,
        )
        self.hook_errors = Counter(
            "censorwatch_accept_hook_errors_total",
            "Errors raised by on_accepted hooks (notifications; the commit goes on).",
            registry=r,
        )
        self.log_errors = Counter(
            "censorwatch_log_append_errors_total",
            "Transparency-log appends that failed (their commit failed; replayed on recovery).",
            registry=r,
        )
        self.log_conflicts = Counter(
            "censorwatch_log_conflicts_total",
            "Appends of a UID the log already holds with other content.",
            registry=r,
        )
        self.log_replayed = Counter(
            "censorwatch_log_replayed_total",
            "Archived measurements appended to the log on recovery.",
            registry=r,
        )
        self.stored = Gauge(
            "censorwatch_measurements_stored", "Measurements in the database.", registry=r
        )
        self.queue_depth = Gauge(
            "censorwatch_commit_queue_depth", "Submissions waiting for the writer.", registry=r
        )
