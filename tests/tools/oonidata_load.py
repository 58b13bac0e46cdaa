"""Load measurements with OONI's own loader (``oonidata.dataclient.load_measurement``).

Run by the tests with the interpreter of the separate oonidata environment (``.venv-oonidata``,
made by ``scripts/run.sh test``), never imported by censorwatch. Reads JSON Lines files named on
the command line and prints one JSON object: how many measurements loaded, which model class
OONI chose for each test, and every failure with its line and OONI's error.
"""

import json
import sys
from collections import Counter

from oonidata.dataclient import load_measurement


def main(paths: list[str]) -> None:
    loaded: Counter[str] = Counter()
    engines: Counter[str] = Counter()
    failed = []
    for path in paths:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                raw = json.loads(line)
                try:
                    msmt = load_measurement(raw)
                except Exception as exc:  # OONI's loader raises many kinds; each is a finding
                    failed.append(
                        {
                            "file": path,
                            "line": number,
                            "input": raw.get("input"),
                            "error": f"{type(exc).__name__}: {exc}"[:500],
                        }
                    )
                    continue
                loaded[type(msmt).__name__] += 1
                for query in getattr(msmt.test_keys, "queries", None) or []:
                    engines[f"{query.engine}/{query.query_type}"] += 1
    print(json.dumps({"loaded": dict(loaded), "engines": dict(engines), "failed": failed}))


if __name__ == "__main__":
    main(sys.argv[1:])
