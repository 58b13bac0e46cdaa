"""Events on the testbed: blocks switched on and off between rounds, probed in rounds.

    sudo .venv/bin/python bench/bench_events_testbed.py [--rounds 16] [--out DIR]

Builds its own testbed (id ``cwev``): four networks of one country; three block X by different
methods, switched on and off between measurement rounds; the fourth never blocks and loses 5%
of its packets to and from every target (the testbed's ``packet-loss``). Every network is
probed for X's endpoints and one unblocked site each round; the measurements are analysed, the
verdicts turned into events, and the events checked against the moments each switch was made:
is every true onset and end inside its bracket, is each bracket at most one round wide, is
there no event on the lossy open network, does the national event list exactly the blockers?
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from censorwatch.events import detect_events
from censorwatch.times import parse_time

ID = "cwev"
X_HOSTS = ["x.com", "twitter.com", "api.x.com", "abs.twimg.com", "pbs.twimg.com",
           "video.twimg.com", "t.co"]  # fmt: skip
LOSSY = "AS23674"
SCHEDULE = {  # after which round: [(network, method, on)]
    3: [("AS17557", "tls-rst", True), ("AS135407", "tcp-drop", True)],
    5: [("AS9541", "dns-inject", True)],
    8: [("AS135407", "tcp-drop", False)],
    11: [("AS17557", "tls-rst", False)],
}
CLI = [sys.executable, "-m", "censorwatch"]


def scenario_toml() -> str:
    lines = ['name = "events-bench"', 'description = "blocks switched between rounds"']
    for asn in ["AS17557", "AS9541", "AS135407", LOSSY]:
        lines += ["[[network]]", f'asn = "{asn}"', 'cc = "PK"']
    for host in [*X_HOSTS, "www.dawn.com"]:
        lines += ["[[target]]", f'host = "{host}"']
    lines += ["[[censor]]", f'network = "{LOSSY}"', 'method = "packet-loss"',
              "targets = " + json.dumps([*X_HOSTS, "www.dawn.com"]), 'loss = "5%"']  # fmt: skip
    return "\n".join(lines) + "\n"


def sh(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def probe(asn: str, out: Path) -> None:
    urls = [f"https://{h}/" for h in [*X_HOSTS, "www.dawn.com"]]
    cmd = [*CLI, "testbed", "exec", "--id", ID, asn, "--", *CLI, "probe", "-o", str(out),
           "--connect-timeout", "3", "--tls-timeout", "3", "--dns-timeout", "3",
           "--http-timeout", "5", "-c", "8"]  # fmt: skip
    for url in urls:
        cmd += ["--url", url]
    res = sh(*cmd, timeout=90.0)
    if res.returncode != 0:
        print(f"probe {asn}: exit {res.returncode}: {res.stderr[-400:]}", file=sys.stderr)


def main() -> None:
    from censorwatch.testbed import manager

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="cw-events-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenario.toml").write_text(scenario_toml())
    res = sh(*CLI, "testbed", "up", str(out / "scenario.toml"), "--id", ID, "--replace",
             timeout=300)  # fmt: skip
    if res.returncode != 0:
        sys.exit(f"testbed up failed: {res.stderr[-2000:]}")
    state_dir = Path("/run/censorwatch/testbed") / ID
    truth: dict[str, list[tuple[str, datetime, datetime]]] = {}
    starts = []
    try:
        nets = ["AS17557", "AS9541", "AS135407", LOSSY]
        for r in range(1, args.rounds + 1):
            starts.append(time.time())
            with ThreadPoolExecutor(len(nets)) as pool:
                list(pool.map(lambda a, r=r: probe(a, out / f"m-{r:03d}-{a}.jsonl"), nets))
            for asn, method, on in SCHEDULE.get(r, []):
                t0 = datetime.now(UTC)
                manager.set_method(ID, asn, method, X_HOSTS, on)
                t1 = datetime.now(UTC)
                truth.setdefault(asn, []).append(("on" if on else "off", t0, t1))
            time.sleep(1.1)  # measurement times have whole seconds
            print(f"round {r} done", file=sys.stderr)
        plan = state_dir / "address-plan.json"
        files = sorted(str(p) for p in out.glob("m-*.jsonl"))
        res = sh(*CLI, "analyze", "--json", "--asn-db", str(plan), *files, timeout=600)
        (out / "verdicts.jsonl").write_text(res.stdout)
    finally:
        sh(*CLI, "testbed", "down", "--id", ID, timeout=300)
    verdicts = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    round_seconds = max(b - a for a, b in itertools.pairwise(starts))
    report(verdicts, truth, round_seconds)


def report(verdicts: list[dict], truth: dict, round_seconds: float) -> None:
    events = detect_events(verdicts)
    kinds: dict[str, int] = {}
    for v in verdicts:
        kinds[v["verdict"]] = kinds.get(v["verdict"], 0) + 1
    print(f"{len(verdicts)} verdicts {kinds}; longest round {round_seconds:.1f} s")
    checks = dict.fromkeys(("onsets", "onsets_in", "ends", "ends_in", "too_wide"), 0)
    checks.update(missing=0, extra=0)
    errors = []

    def inside(bracket, t0: datetime, t1: datetime) -> bool:
        after = parse_time(bracket.after) if bracket.after else None
        return (after is None or after <= t0) and t1 <= parse_time(bracket.before)

    def wide(bracket) -> bool:
        if bracket.after is None:
            return False
        span = parse_time(bracket.before) - parse_time(bracket.after)
        return span.total_seconds() > round_seconds + 1

    for target in ("x", "x.com"):
        net_events = [e for e in events if e.scope == "network" and e.target == target]
        for asn, switches in sorted(truth.items()):
            evs = sorted((e for e in net_events if e.asns == [asn]), key=lambda e: e.onset.before)
            ons = [(t0, t1) for kind, t0, t1 in switches if kind == "on"]
            offs = [(t0, t1) for kind, t0, t1 in switches if kind == "off"]
            print(f"{target} {asn}: switched on {[t[0].isoformat() for t in ons]} "
                  f"off {[t[0].isoformat() for t in offs]}")  # fmt: skip
            for e in evs:
                end = (e.end.after, e.end.before) if e.end else None
                print(f"   onset ({e.onset.after}, {e.onset.before}] end {end} {e.methods}")
            checks["missing"] += max(0, len(ons) - len(evs))
            checks["extra"] += max(0, len(evs) - len(ons))
            for (t0, t1), e in zip(ons, evs, strict=False):
                checks["onsets"] += 1
                checks["onsets_in"] += inside(e.onset, t0, t1)
                checks["too_wide"] += wide(e.onset)
                errors.append((parse_time(e.onset.before) - t1).total_seconds())
            for (t0, t1), e in zip(offs, evs, strict=False):
                checks["ends"] += 1
                if e.end:
                    checks["ends_in"] += inside(e.end, t0, t1)
                    checks["too_wide"] += wide(e.end)
    lossy = [e for e in events if LOSSY in e.asns]
    national = [e for e in events if e.scope == "national" and e.target == "x"]
    print(json.dumps(checks))
    print(f"onset error (first blocked − switch), s: {sorted(round(x, 1) for x in errors)}")
    print(f"events touching the lossy open network: {len(lossy)}")
    for n in national:
        print(f"national: {n.asns} methods {n.methods} onset ({n.onset.after}, {n.onset.before}]"
              f" measured {n.measurements.get('networks_measured')}")  # fmt: skip


if __name__ == "__main__":
    main()
