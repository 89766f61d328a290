"""How long loading the full Fashion-MNIST takes (goal: well under 2 s), each round in a fresh process.

    python -m benchmarks.data_load [--rounds 5]

Prints one line per round and the median against the 2 s goal. Each round is a new interpreter, so
no in-process cache helps it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = """
import json, time
t0 = time.perf_counter()
from edgekd.data import load_data
split = load_data("fashion-mnist")
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "n": len(split.train) + len(split.val) + len(split.test)}))
"""

GOAL_S = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times = []
    for i in range(args.rounds):
        out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout
        result = json.loads(out)
        times.append(result["seconds"])
        print(f"round {i + 1}: {result['n']} images in {result['seconds']:.3f} s")
    median = statistics.median(times)
    print(f"median {median:.3f} s = {median / GOAL_S:.2f}x the {GOAL_S:.0f} s goal")


if __name__ == "__main__":
    main()
