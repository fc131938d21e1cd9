"""Build, compile and sample time of the KSS case with a given number of lines (issue 13).

Run each in a new process, with the caches you mean to measure (empty or warm):

    C=$(mktemp -d); XDG_CACHE_HOME=$C/xdg PYTENSOR_FLAGS=base_compiledir=$C/pt \
        NUMBA_CACHE_DIR=$C/numba .venv/bin/python benchmarks/lines.py 2000 [jax|nutpie]

Prints one line: import, build, compile and sampling seconds (4 chains x 1,000 + 1,000 draws,
seed 0) and the divergences, for the sampler named (default: jax).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    lines = int(sys.argv[1])
    sampler = sys.argv[2] if len(sys.argv) > 2 else "jax"
    start = time.perf_counter()
    import truecount
    from truecount.inference.fitter import Fitter
    from truecount.model.build import build_model

    imported = time.perf_counter() - start
    text = (ROOT / "data" / "kss_2021.toml").read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"lines{lines}.toml"
        path.write_text(text.replace("servers = 6", f"servers = {lines}"), encoding="utf-8")
        start = time.perf_counter()
        model = build_model(truecount.load_case(path), truecount.load_spec("baseline"))
        built = time.perf_counter() - start
    fitter = Fitter(model, sampler)
    start = time.perf_counter()
    fitter.prepare(draws=1000, tune=1000)
    compiled = time.perf_counter() - start
    tree = fitter.fit(draws=1000, tune=1000, chains=4, seed=0)
    print(f"lines={lines} sampler={sampler} import={imported:.1f}s build={built:.2f}s "
          f"compile={compiled:.1f}s sample={tree.attrs['sample_seconds']:.1f}s "
          f"divergences={int(tree['sample_stats']['diverging'].sum())}")


if __name__ == "__main__":
    main()
