"""Two versions of the project side by side in one run: the working tree and a base commit.

    python bench/compare.py --base HEAD~3 ingest --scenario rate-30k --duration 10
    python bench/compare.py --base HEAD~3 --rounds 3 wall --scenario agency
    python bench/compare.py --base HEAD~3 cameras --cameras 10 --no-ffmpeg
    python bench/compare.py --base HEAD~1 --rounds 3 replay --runs 5

The base commit is checked out into a temporary git worktree. Each round runs the named
benchmark once from each tree, alternating which goes first, so both see the same machine at
the same hour; the benchmark's own last line (one JSON object) is collected from every run
and each numeric figure is printed as base / this tree with its change, medians over the
rounds. The last line is one JSON object: {"base": ..., "this": ..., "rounds": N}.
The benchmarks are run as they are in each tree (`python bench/<name>.py ARGS`), so a
benchmark that changed between the two runs its own version on each side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def flatten(doc: Any, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(doc, (int, float)) and not isinstance(doc, bool):
        out[prefix] = float(doc)
    return out


def run_once(tree: Path, bench: str, args: list[str]) -> dict[str, float]:
    """One run of `bench/<bench>.py` in `tree`, its output passed through; the figures of its last line."""
    cmd = [sys.executable, str(tree / "bench" / f"{bench}.py"), *args]
    print(f"\n=== {tree}: {' '.join(cmd[1:])}", flush=True)
    proc = subprocess.Popen(cmd, cwd=tree, stdout=subprocess.PIPE, text=True,
                            env={**_env(), "PYTHONPATH": str(tree)})
    last = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        if line.strip():
            last = line
    if proc.wait() != 0:
        raise SystemExit(f"{bench} failed in {tree} (exit {proc.returncode})")
    try:
        return flatten(json.loads(last))
    except json.JSONDecodeError:
        raise SystemExit(f"{bench} in {tree} did not end with a JSON line: {last[:200]!r}") from None


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="HEAD~1", help="the commit to compare with (default HEAD~1)")
    p.add_argument("--rounds", type=int, default=3, help="runs of each tree; figures are medians (default 3)")
    p.add_argument("bench", choices=["ingest", "wall", "cameras", "broker", "replay", "recording"])
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark (one run each)")
    opts = p.parse_args()
    rev = subprocess.run(["git", "rev-parse", "--short", opts.base], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="ioc-bench-base-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), rev], cwd=REPO, check=True)
        try:
            runs: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
            for n in range(opts.rounds):
                order = [("base", base), ("this", REPO)] if n % 2 == 0 else [("this", REPO), ("base", base)]
                for side, tree in order:
                    runs[side].append(run_once(tree, opts.bench, opts.args))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO, check=False)
    med = {side: {k: statistics.median(r[k] for r in rs if k in r) for k in sorted(set().union(*rs))}
           for side, rs in runs.items()}
    print(f"\n{opts.bench}: base {rev} vs this tree, medians of {opts.rounds} runs each")
    print(f"{'figure':<60} {'base':>14} {'this':>14} {'change':>8}")
    for key in sorted(set(med["base"]) | set(med["this"])):
        b, t = med["base"].get(key), med["this"].get(key)
        change = f"{(t - b) / abs(b) * 100:+.1f}%" if b not in (None, 0) and t is not None else ""
        print(f"{key[:60]:<60} {'' if b is None else f'{b:,.2f}':>14} {'' if t is None else f'{t:,.2f}':>14} {change:>8}")
    print(json.dumps({"base_rev": rev, "base": med["base"], "this": med["this"], "rounds": opts.rounds},
                     separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
