"""Read one OONI bucket file with OONI's own stream functions (``oonidata.dataclient``).

Run by the tests with the interpreter of the separate oonidata environment, never imported by
censorwatch. Arguments: the file's extension as oonidata names it (``jsonl.gz``, ``tar.gz``,
``json.lz4``, ``tar.lz4``), its path, and its bucket key (the cans' readers take it). Prints
one JSON object per measurement read: its UID (null when oonidata gives none), report_id,
input and test_name.
"""

import json
import sys

from oonidata import dataclient


def main(ext: str, path: str, key: str) -> None:
    readers = {
        "jsonl.gz": lambda body: dataclient.stream_jsonl(body),
        "tar.gz": lambda body: dataclient.stream_postcan(body),
        "json.lz4": lambda body: dataclient.stream_jsonlz4(body),
        "tar.lz4": lambda body: dataclient.stream_oldcan(body, key),
    }
    with open(path, "rb") as body:
        for msmt in readers[ext](body):
            row = {k: msmt.get(k) for k in ("measurement_uid", "report_id", "input", "test_name")}
            print(json.dumps(row))


if __name__ == "__main__":
    main(*sys.argv[1:4])
