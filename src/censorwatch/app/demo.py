"""``censorwatch demo``: the whole flow on the emulated Pakistan of February 2024.

Brings up the ``pk-2024-x`` testbed, probes every network for X's endpoints in regular rounds
while the schedule switches the blocks on, stores every measurement through the collector,
analyses them, finds the events, exports the evidence bundle for the national event (cosigned
by a witness process that follows the collector's log) and verifies it offline, then tears
everything down. Everything it produced stays in ``--out``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from censorwatch.console import table_console
from censorwatch.model import Verdict

SCENARIO = "pk-2024-x"
PROFILE = "x"
TESTBED_ID = "cwdemo"
WITNESS_NAME = "witness.censorwatch.demo/w1"
# Often enough that the witness sees the log grow round after round (a round takes ~12 s).
WITNESS_INTERVAL_S = 2.0
# Tighter than the probe's defaults (made for real networks): the emulated one answers in
# milliseconds, and shorter timeouts keep a measurement round short.
PROBE_BUDGET = [
    "--connect-timeout",
    "3",
    "--tls-timeout",
    "3",
    "--dns-timeout",
    "2",
    "--http-timeout",
    "5",
    "--url-deadline",
    "15",
    # The ways around a block: in the testbed a way that works answers in milliseconds.
    "--workaround-timeout",
    "2",
    "--workarounds-deadline",
    "10",
]


@dataclass
class DemoRun:
    out: Path
    console: Console
    rounds: int
    interval: float
    testbed_id: str = TESTBED_ID
    started: float = field(default_factory=time.time)
    measurement_files: list[Path] = field(default_factory=list)
    api_url: str | None = None
    witness: Witness | None = None

    def say(self, message: str) -> None:
        self.console.print(f"[dim]{time.time() - self.started:6.1f}s[/dim] {message}")

    @property
    def measurements(self) -> Path:
        return self.out / "measurements.jsonl"

    @property
    def witness_key_file(self) -> Path:
        """The witness's cosigner key (public), what a reader passes to ``--witness``."""
        return self.out / "witness.vkey"


@dataclass
class Witness:
    """A running ``censorwatch witness serve``: where it answers and the key it cosigns with."""

    url: str
    key: str
    log: Path

    def cosigned_sizes(self) -> list[int]:
        """The tree sizes it has cosigned while following the collector, as it reported them."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [int(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("OK ")]


def _cw(*args: str) -> list[str]:
    return [sys.executable, "-m", "censorwatch", *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def collector(run: DemoRun, asn_db: Path) -> Iterator[str]:
    """The collector and API on loopback, for the length of the demo."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(run.out / "collector.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        _cw(
            "serve",
            "--db",
            str(run.out / "censorwatch.duckdb"),
            "--archive",
            str(run.out / "archive"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--asn-db",
            str(asn_db),
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the collector did not start; see {run.out / 'collector.log'}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def witness(run: DemoRun, follow: str) -> Iterator[Witness]:
    """A witness process following the collector's log on loopback, its state and key in
    ``--out``; stopped (SIGTERM, then kill) however the demo ends."""
    state = run.out / "witness"
    log = run.out / "witness.log"
    log.write_bytes(b"")  # a rerun into the same --out reads only this run's lines
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            _cw(
                *("witness", "serve", "--state", str(state), "--name", WITNESS_NAME),
                *("--host", "127.0.0.1", "--port", "0", "--follow", follow),
                *("--interval", str(WITNESS_INTERVAL_S)),
            ),
            stdout=subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        yield _wait_for_witness(proc, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _wait_for_witness(proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> Witness:
    """The witness's URL and key, read from what it prints when it listens, once it answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        lines = log.read_text(errors="replace").splitlines()
        keys = [line.split(": ", 1)[1] for line in lines if line.startswith("witness key: ")]
        urls = [line.split(" on ", 1)[1].split()[0] for line in lines if " witness on " in line]
        if keys and urls:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(urls[-1], timeout=1).text.strip() == keys[-1]:
                    return Witness(url=urls[-1].rstrip("/"), key=keys[-1], log=log)
        time.sleep(0.2)
    raise RuntimeError(f"the witness did not start; see {log}")


def wait_until_witnessed(run: DemoRun, timeout: float = 3 * WITNESS_INTERVAL_S + 5) -> None:
    """Give the witness time to check and cosign the log's latest checkpoint (it must know the
    log before the collector stops, to cosign the bundle's checkpoint at export)."""
    if run.witness is None or run.api_url is None:
        return
    try:
        size = int(httpx.get(f"{run.api_url}/api/v1/log/checkpoint", timeout=5).text.split()[1])
    except (httpx.HTTPError, IndexError, ValueError):
        size = 1
    deadline = time.monotonic() + timeout
    while max(run.witness.cosigned_sizes(), default=0) < size and time.monotonic() < deadline:
        time.sleep(0.2)
    sizes = run.witness.cosigned_sizes()
    if sizes:
        run.say(
            f"witness {WITNESS_NAME} at {run.witness.url} followed the log: "
            f"{len(set(sizes))} checkpoints checked and cosigned, up to size {max(sizes)}"
        )
    else:
        run.say(f"[yellow]the witness has not cosigned the log yet; see {run.witness.log}[/yellow]")


def probe_round(run: DemoRun, number: int, networks: list[str]) -> list[Path]:
    """Every network measures every X endpoint at the same time, each from its own namespace."""
    folder = run.out / "rounds"
    folder.mkdir(parents=True, exist_ok=True)
    procs = []
    for asn in networks:
        output = folder / f"round-{number:02d}-{asn}.jsonl"
        output.unlink(missing_ok=True)  # a rerun into the same --out starts afresh
        cmd = _cw(
            "testbed",
            "exec",
            asn,
            "--id",
            run.testbed_id,
            "--",
            sys.executable,
            "-m",
            "censorwatch",
            "probe",
            "--profile",
            PROFILE,
            "--concurrency",
            "7",
            *PROBE_BUDGET,
            "--output",
            str(output),
        )
        key = run.out / "keys" / f"probe-{asn}.key"
        if key.is_file():
            cmd += ["--key", str(key)]
        if number == run.rounds:  # the last round also finds where each censor sits
            cmd += ["--locate"]
        procs.append(
            (
                asn,
                output,
                subprocess.Popen(
                    cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
                ),
            )
        )
    written = []
    for asn, output, proc in procs:
        _, stderr = proc.communicate(timeout=120)
        if proc.returncode != 0 and not output.is_file():
            run.say(f"[red]probe on {asn} failed:[/red] {stderr.decode(errors='replace')[-300:]}")
            continue
        written.append(output)
    return written


def read_json_objects(run: DemoRun, paths: list[Path]) -> list[dict[str, Any]]:
    """The JSON objects of the probes' or the events command's output files, read by the
    project's one reader; an unreadable file or line is named and skipped."""
    from censorwatch.observations.reader import iter_json_objects

    items = []
    for item in iter_json_objects(paths):
        if item.ok and item.record is not None:
            items.append(item.record)
        else:
            run.say(f"[yellow]skipped {escape(item.source)}: {escape(item.error or '')}[/yellow]")
    return items


def endpoint_table(verdicts: list[Verdict], title: str) -> Table:
    """network × endpoint: what the latest round shows."""
    latest: dict[tuple[str, str], Verdict] = {}
    for v in sorted(verdicts, key=lambda v: v.measurement_start_time):
        latest[(v.probe_asn, v.target or "?")] = v
    networks = sorted({k[0] for k in latest}, key=lambda a: int(a.removeprefix("AS")))
    targets = sorted({k[1] for k in latest})
    table = Table(title=title)
    table.add_column("network")
    for t in targets:
        table.add_column(t, overflow="fold")
    styles = {"ok": "green", "blocked": "bold red", "down": "yellow", "unknown": "dim"}
    for asn in networks:
        row = []
        for t in targets:
            v = latest.get((asn, t))
            if v is None:
                row.append("")
                continue
            label = v.method if v.verdict == "blocked" else v.verdict
            row.append(f"[{styles.get(v.verdict, '')}]{label}[/]")
        table.add_row(asn, *row)
    return table


def timeline_table(verdicts: list[Verdict], rounds: dict[str, int]) -> Table:
    """network × round: how many endpoints were blocked, with which methods."""
    cells: dict[tuple[str, int], list[Verdict]] = defaultdict(list)
    for v in verdicts:
        number = rounds.get(v.measurement_uid)
        if number is not None:
            cells[(v.probe_asn, number)].append(v)
    numbers = sorted({k[1] for k in cells})
    networks = sorted({k[0] for k in cells}, key=lambda a: int(a.removeprefix("AS")))
    table = Table(title="Blocked endpoints per round")
    table.add_column("network")
    for n in numbers:
        table.add_column(f"r{n}", justify="center")
    for asn in networks:
        row = []
        for n in numbers:
            vs = cells.get((asn, n), [])
            blocked = sum(v.verdict == "blocked" for v in vs)
            style = "bold red" if blocked else "green"
            row.append(f"[{style}]{blocked}/{len(vs)}[/]")
        table.add_row(asn, *row)
    return table


def still_works_table(event: dict[str, Any]) -> Table | None:
    """network × technique: what still gets through on each blocking network (the event's
    counts of its blocked measurements, ``events.workarounds``); None when it has none."""
    from censorwatch.analysis.workarounds import LABELS
    from censorwatch.events.workarounds import ORDER, overall

    by_network = event.get("workarounds_by_network")
    if not isinstance(by_network, dict) or not by_network:
        return None
    families = sorted(
        {f for tally in by_network.values() for f in tally},
        key=lambda f: (ORDER.index(f) if f in ORDER else len(ORDER), f),
    )
    table = Table(title="What still gets through, network by network (blocked measurements)")
    table.add_column("network")
    for f in families:
        table.add_column(LABELS.get(f, f), overflow="fold")
    styles = {"works": "green", "fails": "bold red", "not tried": "dim"}
    for asn in sorted(by_network, key=lambda a: int(a.removeprefix("AS"))):
        row = []
        for f in families:
            counts = by_network[asn].get(f)
            if not counts:
                row.append("[dim]not tried[/]")
                continue
            status = overall(counts)
            shown = ", ".join(f"{s} {n}" for s, n in counts.items() if n)
            row.append(f"[{styles[status]}]{status}[/] ({shown})")
        table.add_row(asn, *row)
    return table


def censor_location_table(event: dict[str, Any]) -> Table | None:
    """network → the hop where its censor sits (the event's localizations,
    ``events.locations``); None when none of its measurements was localized."""
    from censorwatch.analysis.locate import PLACEMENT_WORDS

    by_network = event.get("censor_location_by_network")
    if not isinstance(by_network, dict) or not by_network:
        return None
    table = Table(title="Where the censor sits, network by network (probe --locate)")
    for column in ("network", "hop", "router", "AS", "where", "localizations"):
        table.add_column(column)
    for asn in sorted(by_network, key=lambda a: int(a.removeprefix("AS"))):
        ranking = by_network[asn]
        total = sum(p.get("count", 0) for p in ranking)
        for place in ranking:
            table.add_row(
                asn,
                str(place.get("hop") or "—"),
                str(place.get("address") or ""),
                " ".join(str(place[k]) for k in ("asn", "as_org_name") if place.get(k)),
                PLACEMENT_WORDS.get(place.get("placement", ""), str(place.get("placement"))),
                f"{place.get('count', 0)} of {total}",
            )
    return table


def run_demo(
    out: Path | None, *, rounds: int = 8, interval: float = 12.0, console: Console | None = None
) -> Path:
    from censorwatch.analysis import Fingerprints
    from censorwatch.analysis.core import analyze_files
    from censorwatch.netinfo import AddressPlan
    from censorwatch.testbed import manager

    console = console or table_console()
    keep = out is not None
    out = Path(out) if out else Path(tempfile.mkdtemp(prefix="censorwatch-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    run = DemoRun(out=out, console=console, rounds=rounds, interval=interval)
    run.say(f"bringing up the emulated network [bold]{SCENARIO}[/bold]")
    state = manager.up(SCENARIO, run.testbed_id, replace=True)
    try:
        plan = state.plan()
        networks = [n.asn for n in plan.networks]
        asn_db = out / "address-plan.json"
        asn_db.write_text(state.address_plan_file.read_text())
        run.say(
            f"{len(networks)} networks: {', '.join(networks)}; X is blocked on four of "
            f"them from t=30s"
        )
        _make_probe_keys(run, networks)
        # The witness outlives the collector: the export, after it, asks for a cosignature.
        with contextlib.ExitStack() as witness_process:
            with collector(run, asn_db) as api:
                run.api_url = api
                run.say(
                    f"collector and API at [bold]{api}[/bold]: explorer {api}/explorer, "
                    f"measurements {api}/api/v1/measurements?probe_cc=PK"
                )
                run.witness = witness_process.enter_context(witness(run, api))
                run.witness_key_file.write_text(run.witness.key + "\n")
                run.say(
                    f"witness at [bold]{run.witness.url}[/bold] follows the collector's log; "
                    f"its key is in {run.witness_key_file}"
                )
                round_of: dict[str, int] = {}
                facts = AddressPlan.load(asn_db)
                fingerprints = Fingerprints.default()
                t0 = time.time()
                for number in range(1, rounds + 1):
                    delay = t0 + (number - 1) * interval - time.time()
                    if delay > 0:
                        time.sleep(delay)
                    elapsed = time.time() - float(state.info()["started_at"])
                    files = probe_round(run, number, networks)
                    measurements = read_json_objects(run, files)
                    for m in measurements:
                        round_of[m.get("measurement_uid", "")] = number
                    run.measurement_files.extend(files)
                    submitted = submit(run, measurements, api)
                    verdicts = [
                        r.verdict
                        for _, r, _ in analyze_files(files, fingerprints, facts)
                        if r is not None
                    ]
                    blocked = sum(v.verdict == "blocked" for v in verdicts)
                    run.say(
                        f"round {number}/{rounds} at t={elapsed:5.1f}s: "
                        f"{len(measurements)} measurements, {blocked} blocked, "
                        f"{submitted}"
                    )
                all_measurements = read_json_objects(run, run.measurement_files)
                with open(run.measurements, "w", encoding="utf-8") as fh:
                    for m in all_measurements:
                        fh.write(json.dumps(m, ensure_ascii=False) + "\n")
                verdicts = [
                    r.verdict
                    for _, r, _ in analyze_files([run.measurements], fingerprints, facts)
                    if r is not None
                ]
                with open(out / "verdicts.jsonl", "w", encoding="utf-8") as fh:
                    for v in verdicts:
                        fh.write(json.dumps(v.to_record(), ensure_ascii=False) + "\n")
                console.print(endpoint_table(verdicts, "What X looks like now, network by network"))
                console.print(timeline_table(verdicts, round_of))
                wait_until_witnessed(run)
            national = find_events(run)
            if national:
                export_evidence(run, national, asn_db)
            else:
                run.say("[yellow]no national event found: nothing to export as evidence[/yellow]")
    finally:
        run.say("tearing down the emulated network")
        manager.down(run.testbed_id)
    run.say(
        f"to explore it again: censorwatch serve --db {out / 'censorwatch.duckdb'} "
        f"--archive {out / 'archive'}, then open /explorer"
    )
    where = "kept in" if keep else "left in"
    run.say(
        f"done in {time.time() - run.started:.0f}s; everything it produced is {where} "
        f"[bold]{out}[/bold]"
    )
    return out


def submit(run: DemoRun, measurements: list[dict[str, Any]], api: str) -> str:
    """Hand a round to the collector; what cannot be sent waits in the queue folder."""
    from censorwatch.probe.submit import submit_or_queue

    try:
        result = submit_or_queue(measurements, api, run.out / "queue")
    except Exception as exc:  # the measurements stay queued on disk
        return f"[red]submission failed ({exc}); queued in {run.out / 'queue'}[/red]"
    return f"{len(result.sent)} stored by the collector" + (
        f", {result.queued} queued" if getattr(result, "queued", 0) else ""
    )


def find_events(run: DemoRun) -> dict[str, Any] | None:
    """Events from the verdicts; returns the widest national event, if any."""
    verdicts = str(run.out / "verdicts.jsonl")
    # The scenario's user estimates (illustrative figures), so the national event says how
    # many people are on the blocking networks.
    from censorwatch.testbed.scenario import scenario_population

    population = ["--population", str(scenario_population(SCENARIO))]
    subprocess.run(_cw("events", verdicts, "--scope", "national", *population), check=False)
    proc = subprocess.run(
        _cw("events", verdicts, "--json", *population), capture_output=True, text=True, check=False
    )
    events_file = run.out / "events.jsonl"
    events_file.write_text(proc.stdout)
    events = read_json_objects(run, [events_file]) if proc.stdout.strip() else []
    national = [e for e in events if e.get("scope") == "national"]
    run.say(
        f"{len(events)} events ({len(national)} national) written to {run.out / 'events.jsonl'}"
    )
    if not national:
        return None
    best = max(national, key=lambda e: (len(e["asns"]), e["target"] == PROFILE))
    counts = best.get("measurements", {})
    measured = counts.get("networks_measured") or "?"
    run.say(
        f"[bold red]{best['target']} blocked in {best['cc']} on {len(best['asns'])} of "
        f"{measured} networks measured[/bold red] ({', '.join(best['asns'])}), methods "
        f"{' / '.join(best['methods'])}, onset between {best['onset']['after']} and "
        f"{best['onset']['before']}, {best['status']}"
    )
    if best.get("impact"):
        from censorwatch.events.population import impact_line

        run.say(impact_line(best["impact"]))
    still = still_works_table(best)
    if still is not None:
        run.console.print(still)
        run.say(best.get("workarounds_summary") or "")
    located = censor_location_table(best)
    if located is not None:
        run.console.print(located)
    return best


def export_evidence(run: DemoRun, event: dict[str, Any], asn_db: Path) -> None:
    """The evidence bundle for the national event (every one of its measurements) and its
    PDF beside it, cosigned by the witness, then its offline verification twice: trusting
    the log by its id, and trusting it through the witness."""
    bundle = run.out / "evidence.zip"
    witness_url = ["--witness-url", run.witness.url] if run.witness else []
    export = subprocess.run(
        _cw(
            "evidence",
            "export",
            "--event",
            event["event_id"],
            "--events",
            str(run.out / "events.jsonl"),
            "--db",
            str(run.out / "censorwatch.duckdb"),
            "--archive",
            str(run.out / "archive"),
            "--asn-db",
            str(asn_db),
            "--out",
            str(bundle),
            "--pdf",
            *witness_url,
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if export.returncode != 0:
        run.say(f"[red]evidence export failed:[/red] {export.stderr.strip()[-500:]}")
        return
    run.say(
        f"evidence bundle for {event['target']} in {event['cc']} "
        f"({', '.join(event['asns'])}) written to [bold]{bundle}[/bold], "
        f"its report for print beside it: [bold]{bundle.with_suffix('.pdf')}[/bold]"
    )
    for line in export.stderr.strip().splitlines():  # whom it was cosigned by, or why not
        run.say(escape(line))
    log_id = export.stdout.strip().rsplit(" ", 1)[-1]  # the demo's own collector's log
    pinned = ["--log-id", log_id]
    verify_offline(run, bundle, pinned, pinned, trusting="the log pinned by its id")
    if run.witness is not None:
        quorum = ["--quorum", "1"]
        verify_offline(
            run,
            bundle,
            ["--witness", run.witness.key, *quorum],
            ["--witness", f'"$(cat {run.witness_key_file})"', *quorum],
            trusting="the log through the witness's cosignature",
        )


def verify_offline(
    run: DemoRun, bundle: Path, trust: list[str], shown: list[str], *, trusting: str
) -> bool:
    """``evidence verify`` on the bundle with one trust source (``trust``); prints its answer
    and the command a reader types to check again (``shown``: the same, as a shell line)."""
    verify = subprocess.run(
        _cw("evidence", "verify", str(bundle), *trust),
        capture_output=True,
        text=True,
        check=False,
    )
    run.console.print(verify.stdout.strip() or verify.stderr.strip())
    ok = verify.returncode == 0
    status = "[green]verified offline[/green]" if ok else f"[red]FAILED ({verify.returncode})[/red]"
    run.say(f"evidence bundle {status}, trusting {trusting}; to check it again:")
    command = " ".join(["censorwatch evidence verify", str(bundle), *shown])
    run.console.print(f"  {command}", markup=False, highlight=False, soft_wrap=True)
    return ok


def _make_probe_keys(run: DemoRun, networks: list[str]) -> None:
    """One signing key per probe device, when evidence signing is available."""
    with contextlib.suppress(ImportError):
        from censorwatch.signing.keys import generate_key_file

        for asn in networks:
            generate_key_file(run.out / "keys" / f"probe-{asn}.key", force=True)


def main_environment_ok() -> str | None:
    """Why the demo cannot run here, or None."""
    if os.geteuid() != 0:
        return "the demo builds network namespaces and needs root (sudo)"
    return None
