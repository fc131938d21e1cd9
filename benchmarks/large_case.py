"""How long a large but legal case file takes to load, to turn into a dataset and to tabulate.

The KSS case with its channel copied ``--channels`` times and ``--claims`` claims (not cumulative,
so any values are legal), readings dropped; the file must stay under the loader's 1 MB limit
(500 x 500 is about 850 kB). Prints the median of ``--repeats`` runs of each step.

    .venv/bin/python benchmarks/large_case.py --channels 500 --claims 500 --repeats 3
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

from truecount import load_case
from truecount.model.bounds import case_capacity

KSS = Path(__file__).resolve().parents[1] / "data" / "kss_2021.toml"


def large_case_text(channels: int, claims: int) -> str:
    """The KSS case file with many channels and claims (text surgery on the real file)."""
    text = KSS.read_text(encoding="utf-8")
    head, rest = text.split("[[channels]]", 1)
    channel, rest = rest.split("# -- alternative readings", 1)
    _, rest = rest.split("# -- published claims", 1)
    claim_part, tail = rest.split("# -- evidence about reaching the lines", 1)
    claim = "[[claims]]" + claim_part.split("[[claims]]")[1]
    claim = claim.replace("cumulative = true", "cumulative = false")
    out = [head]
    for i in range(channels):
        out.append("[[channels]]" + channel.replace('id = "kss_phones"', f'id = "c{i}"', 1))
    for i in range(claims):
        body = re.sub(r'id = "utv_23000"', f'id = "k{i}"', claim, count=1)
        out.append(re.sub(r"value = 23000", f"value = {1000 * (i + 1)}", body, count=1))
    out.append("# -- evidence" + tail.replace('channel = "kss_phones"', 'channel = "c0"'))
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=500)
    parser.add_argument("--claims", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "large.toml"
        path.write_text(large_case_text(args.channels, args.claims), encoding="utf-8")
        times: dict[str, list[float]] = {"load": [], "to_dataset": [], "capacity": []}
        for _ in range(args.repeats):
            start = time.perf_counter()
            case = load_case(path)
            times["load"].append(time.perf_counter() - start)
            start = time.perf_counter()
            case.to_dataset()
            times["to_dataset"].append(time.perf_counter() - start)
            start = time.perf_counter()
            case_capacity(case)
            times["capacity"].append(time.perf_counter() - start)
        size = path.stat().st_size
    print(f"{args.channels} channels, {args.claims} claims, {size:,} bytes; median of "
          f"{args.repeats}: " + ", ".join(f"{k} {statistics.median(v):.2f} s"
                                         for k, v in times.items()))


if __name__ == "__main__":
    main()
