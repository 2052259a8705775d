"""Run the lab-bench chapters over several seeds and report the spread of their comparisons.

The chapters assert the comparisons their prose makes (FCN-8s beats the patchwise baseline,
FCN-32s alone does not, each skip adds, ...) with margins. A margin means something only if it
is larger than what changes from one seed to the next, so this runs the chapters that train the
compared nets with ``seed = 0, 1, 2`` (papermill's convention: a cell that sets the parameters is
inserted after the ``parameters`` cell), each seed with its own results ledger
(``$FCN_RESULTS``), and prints every compared quantity per seed with its range:

    python book/seeds.py                      # chapters 01 02 05, seeds 0 1 2
    python book/seeds.py --seeds 0 1 --chapters 01 05

A chapter whose asserts fail for a seed is reported with its error (the run goes on). On a 2-core
CPU each seed takes about as long as the three chapters in the book build.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from fcnlib.data import CLASSES

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = {p.name[:2]: p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))}

# (label, function of the ledger) for every comparison the chapters assert
COMPARISONS = {
    "FCN-8s at once - patchwise, mean IU": lambda r: (
        _iu(r, "FCN-8s at once") - _iu(r, "patchwise CNN")
    ),
    "FCN-8s (staged) - patchwise, mean IU": lambda r: _iu(r, "FCN-8s") - _iu(r, "patchwise CNN"),
    "FCN-32s (Ch 5) - patchwise, mean IU": lambda r: _iu(r, "FCN-32s") - _iu(r, "patchwise CNN"),
    "FCN-32s (Ch 5) - patchwise, mean IU without bars": lambda r: (
        _no_bar(r, "FCN-32s") - _no_bar(r, "patchwise CNN")
    ),
    "FCN-16s - FCN-32s, mean IU": lambda r: _iu(r, "FCN-16s") - _iu(r, "FCN-32s"),
    "FCN-8s - FCN-16s, mean IU": lambda r: _iu(r, "FCN-8s") - _iu(r, "FCN-16s"),
    "FCN-8s - FCN-32s continued, mean IU": lambda r: (
        _iu(r, "FCN-8s") - _iu(r, "FCN-32s, continued")
    ),
    "patchwise / FCN-8s at once, time per scene": lambda r: (
        r["patchwise CNN"]["seconds_per_image"] / r["FCN-8s at once"]["seconds_per_image"]
    ),
}


def _iu(ledger: dict, name: str) -> float:
    return 100 * ledger[name]["mean_iu"]


def _no_bar(ledger: dict, name: str) -> float:
    iu, bar = ledger[name]["iu"], CLASSES.index("bar")
    return 100 * (sum(iu) - iu[bar]) / (len(iu) - 1)


def run_chapter(path: Path, seed: int, ledger: Path, timeout: int) -> tuple[float, str | None]:
    """Execute one chapter with ``seed``; return (seconds, error or None)."""
    nb = nbformat.read(path, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell(f"seed = {seed}")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(at + 1, injected)
    os.environ["FCN_RESULTS"] = str(ledger)
    start = time.perf_counter()
    try:
        NotebookClient(
            nb, timeout=timeout, resources={"metadata": {"path": str(path.parent)}}
        ).execute()
    except Exception as err:  # a failed assert in the chapter: report it, go on
        return (
            time.perf_counter() - start,
            f"{type(err).__name__}: {str(err).splitlines()[-1][:300]}",
        )
    return time.perf_counter() - start, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--chapters", nargs="+", default=["01", "02", "05"])
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--out", type=Path, default=None, help="folder for the ledgers")
    parser.add_argument(
        "--keep", dest="fresh", action="store_false", help="add to the ledgers already in --out"
    )
    args = parser.parse_args(argv)
    unknown = [c for c in args.chapters if c not in CHAPTERS]
    if unknown:
        parser.error(f"no chapter {unknown}; there are {sorted(CHAPTERS)}")
    out = args.out or Path(tempfile.mkdtemp(prefix="fcn-seeds-"))
    out.mkdir(parents=True, exist_ok=True)
    failures = 0
    values: dict[str, dict[int, float]] = {k: {} for k in COMPARISONS}
    for seed in args.seeds:
        ledger = out / f"seed{seed}.json"
        if args.fresh:
            ledger.unlink(missing_ok=True)
        for chapter in args.chapters:
            seconds, error = run_chapter(CHAPTERS[chapter], seed, ledger, args.timeout)
            failures += error is not None
            print(
                f"seed {seed} chapter {chapter}: {seconds:.0f} s, {error or 'every assert held'}",
                flush=True,
            )
        rows = json.loads(ledger.read_text()) if ledger.exists() else {}
        for label, fn in COMPARISONS.items():
            # a chapter that did not run, or failed before recording, leaves a gap
            with contextlib.suppress(KeyError, TypeError):
                values[label][seed] = fn(rows)
    print(f"\nledgers in {out}")
    print(f"{'comparison':>50} | " + " | ".join(f"seed {s:>2}" for s in args.seeds) + " |  range")
    for label, per_seed in values.items():
        cells = [f"{per_seed[s]:7.1f}" if s in per_seed else "      -" for s in args.seeds]
        spread = (max(per_seed.values()) - min(per_seed.values())) if per_seed else float("nan")
        print(f"{label:>50} | " + " | ".join(cells) + f" | {spread:6.1f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
