"""Each mutated module's score from mutmut's results, as the table tests/mutants.md shows;
exit 1 when a module is below the floor. Only mutants a test kills count as killed: a survivor,
a mutant no test reaches and a timeout all count against the module.

    python .ci/mutant_scores.py            # after `mutmut run` (nox -s mutants runs both)
"""

from __future__ import annotations

import collections
import subprocess
import sys

FLOOR = 95.0  # per cent killed, per module


def main() -> int:
    results = subprocess.run(
        ["mutmut", "results", "--all", "true"], capture_output=True, text=True, check=True
    ).stdout
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in results.splitlines():
        name, _, status = line.strip().partition(": ")
        if status:
            counts[name.split(".")[1] + ".py"][status] += 1
    print("| module | killed | mutants | score | not killed |\n|---|---|---|---|---|")
    below, killed_all, total_all = [], 0, 0
    for module, count in sorted(counts.items()):
        killed, total = count["killed"], sum(count.values())
        killed_all, total_all = killed_all + killed, total_all + total
        score = 100 * killed / total
        rest = ", ".join(
            f"{n} {status}" for status, n in sorted(count.items()) if status != "killed"
        )
        print(f"| `{module}` | {killed} | {total} | {score:.1f}% | {rest or '—'} |")
        if score < FLOOR:
            below.append(f"{module} {score:.1f}%")
    print(f"| all | {killed_all} | {total_all} | {100 * killed_all / total_all:.1f}% | |")
    if below:
        print(f"below the {FLOOR:g}% floor: {', '.join(below)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
