"""The Python call's cost against `impasto stylize` on the same job, side by side in one run:
each round runs the command (a process: start, weights, job, PNG written) and then
`impasto.stylize` (a fresh Stylizer: engine, weights, job, array returned), then a call on a
Stylizer kept from the round before (weights read and style targets computed already).

    python benches/python_overhead.py --bin target/release/impasto --rounds 3

Needs the package installed (`pip install ./python`) and the shipped weights and images.
"""

import subprocess
import tempfile
import time

import impasto

from side_by_side import CONTENT as content, SHALLOW, STYLE as style, WEIGHTS as weights
from side_by_side import flags as to_flags, parse_args


def main():
    a = parse_args(__doc__)
    settings = dict(SHALLOW, size=a.size, steps=a.steps)
    flags = to_flags(settings)
    kept = impasto.Stylizer(weights=weights, engine=a.engine, **SHALLOW)
    kept.stylize(content, style, size=a.size, steps=0)
    print(f"{a.size} px, {a.steps} steps, engine {a.engine}: seconds a job")
    print("round  impasto stylize  impasto.stylize  Stylizer kept")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            t0 = time.perf_counter()
            subprocess.run([a.bin, "stylize", "--content", str(content), "--style", str(style),
                            "--weights", str(weights), "--engine", a.engine,
                            "--output", f"{tmp}/out.png"] + flags,
                           check=True, capture_output=True)
            cli = time.perf_counter() - t0
            t0 = time.perf_counter()
            impasto.stylize(content, style, weights=weights, engine=a.engine, progress=False,
                            **settings)
            py = time.perf_counter() - t0
            t0 = time.perf_counter()
            kept.stylize(content, style, size=a.size, steps=a.steps, progress=False)
            reused = time.perf_counter() - t0
            print(f"{r:5d}  {cli:15.2f}  {py:15.2f}  {reused:13.2f}")


if __name__ == "__main__":
    main()
