"""The course on a GPU, in one command: unit tests, every chapter under nbval, one benchmark.

    python tests/gpu_check.py [--chapters 01 02 ...] [--jobs N] [--threads 2] [--timeout 1500]
                              [--skip-unit] [--out DIR] [--allow-cpu]

Prints one line per step (PASS / FAIL / TIMEOUT, wall time, and for a failed chapter its first
failing cell and error), the throughput benchmark's table, and the machine it ran on; the same
text goes to DIR/summary.txt, each step's full output to DIR/<step>.log. Exit code 0 when
everything passed, 1 when something failed, 2 when it could not start (no GPU, missing packages).

Only the standard library and torch are imported here, so it runs on a GPU machine whose Python
has torch but not the Jupyter stack, and says what to install when that is missing.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# What the chapters and tests need besides torch: the Jupyter stack (nbval runs each chapter
# in an ipykernel through nbclient) and fcnlib's own dependencies. Import name -> pip name.
NEEDED = {
    "pytest": "pytest",
    "nbval": "nbval",
    "nbclient": "nbclient",
    "ipykernel": "ipykernel",
    "torchvision": "torchvision",
    "numpy": "numpy",
    "scipy": "scipy",
    "matplotlib": "matplotlib",
    "tqdm": "tqdm",
}
# Wheels to leave out of an offline install because such machines usually have them already:
# two versions of one package on the path clash.
USUALLY_PRESENT = (
    "pytest pluggy iniconfig coverage attrs packaging psutil typing_extensions tzdata "
    "python_dateutil"
)


@dataclass
class Result:
    name: str
    status: str  # PASS, FAIL or TIMEOUT
    seconds: float
    detail: str = ""  # counts, or the first failing cell and its error


def missing_modules() -> list[str]:
    missing = []
    for module in NEEDED:
        try:
            importlib.import_module(module)
        except Exception:  # not installed, or installed but broken: either way unusable
            missing.append(module)
    return missing


def install_advice(missing: list[str]) -> str:
    names = " ".join(NEEDED[m] for m in missing)
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    abi = f"cp{sys.version_info.major}{sys.version_info.minor}"
    arch = platform.machine()
    platforms = " ".join(
        f"--platform {p}_{arch}" for p in ("manylinux_2_28", "manylinux_2_17", "manylinux2014")
    )
    return f"""\
Missing Python packages: {", ".join(missing)}.
With the package index:  {sys.executable} -m pip install {names}
  (or the whole course: pip install -r requirements.txt)
Offline: on a machine with the index, download wheels for this Python ({py}, {arch}):
  python3 -m pip download --only-binary=:all: --python-version {py} --implementation cp \\
      --abi {abi} \\
      {platforms} \\
      -d .whl {names}
  delete from .whl the wheels of packages this machine already has, often:
      {USUALLY_PRESENT}
  (two versions of one package clash), copy .whl here, then:
  {sys.executable} -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
and run this check again. Details: book/maintainers.md, "Checking the course on a GPU"."""


ANSI = re.compile(r"\x1b\[[0-9;]*m")
COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)\b")
ERROR_LINE = re.compile(r"^(\w+(?:Error|Exception|Interrupt))(?::\s*(.*))?$")


def parse_pytest(text: str) -> dict:
    """Counts, the first failing test and its error, and the last cell started, from the output
    of ``pytest -v -ra``: what one summary line needs."""
    text = ANSI.sub("", text)
    counts: dict[str, int] = {}
    tail = [line for line in text.splitlines() if re.search(r" in [\d.]+s\b", line)]
    if tail:  # the last "3 passed, 1 failed in 12.3s" line
        for n, kind in COUNTS.findall(tail[-1]):
            counts[kind.rstrip("s") if kind.startswith("error") else kind] = int(n)
    failed = re.findall(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", text, re.M)
    error = ""
    if "= FAILURES =" in text:
        for line in text.split("= FAILURES =", 1)[1].splitlines():
            m = ERROR_LINE.match(re.sub(r"^E\s+", "", line.strip()))  # pytest's "E   " margin
            if m:  # the first exception raised, e.g. "AssertionError: Tensor-likes are not close!"
                error = m.group(1) + (f": {m.group(2)}" if m.group(2) else "")
                break
    # -v prints each cell's node id at the start of a line as the cell starts, so the last one
    # is where a run that was stopped was (failure headers start with "_", the summary "FAILED").
    cells = re.findall(r"^[^\s_]\S*::(Cell \d+)", text, re.M)
    return {
        "counts": counts,
        # A chapter's cell ("Cell 5"; nbval numbers code cells from 0), else the test's node id.
        "first_failed": failed[0].split(".ipynb::")[-1] if failed else None,
        "error": error[:160],
        "last_cell": cells[-1] if cells else None,
    }


def chapter_command(notebook: Path) -> list[str]:
    # pyproject's addopts already hold the nbval options; repeating them is harmless (pytest
    # takes the last value) and keeps this command right if addopts change.
    # -v names each cell as it starts, so a timed-out log shows where it stopped.
    return [
        sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env",
        "--nbval-cell-timeout=900", "-p", "no:cacheprovider", "-v",
        str(notebook.relative_to(ROOT)),
    ]  # fmt: skip


def child_env(threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # fcnlib must pick the device by itself (CUDA here) and run the lab bench, the scale the
    # chapters' assertions are written for, whatever this shell had set.
    env.pop("FCN_DEVICE", None)
    env.pop("FCN_SCALE", None)
    # The repository first on the path: fcnlib need not be installed (nbval's kernel inherits it).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # a Colab VM has 2 cores per GPU
    return env


# How long a step that ran over its time gets to stop after SIGINT (Ctrl-C: pytest writes its
# summary and shuts its kernel down), then after SIGTERM, before SIGKILL. A process started in
# the background (`make gpu-check &`, nohup) ignores SIGINT, so the later signals are needed.
GRACE_S = {signal.SIGINT: 30.0, signal.SIGTERM: 10.0}


def run_logged(cmd: list[str], env: dict, log: Path, timeout: float) -> tuple[int | None, float]:
    """Run cmd with its output in log; return (exit code, or None on timeout; seconds)."""
    start = time.monotonic()
    # The child stays in this process group, so Ctrl-C in the terminal stops it as well.
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(proc)
            rc = None
    return rc, time.monotonic() - start


def stop(proc: subprocess.Popen) -> None:
    """Stop proc whatever signals it ignores: SIGINT, then SIGTERM, then SIGKILL."""
    for sig, grace in GRACE_S.items():
        proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    proc.wait()


def judge(name: str, rc: int | None, seconds: float, log: Path) -> Result:
    info = parse_pytest(log.read_text(errors="replace"))
    counts = ", ".join(f"{n} {kind}" for kind, n in info["counts"].items())
    if rc is None:
        where = f"stopped in {info['last_cell']}" if info["last_cell"] else "stopped"
        return Result(name, "TIMEOUT", seconds, f"{where} ({counts or 'nothing finished'})")
    if rc == 0:
        return Result(name, "PASS", seconds, counts)
    where = info["first_failed"] or f"pytest exit code {rc}"
    return Result(name, "FAIL", seconds, f"{where}: {info['error'] or 'see log'} ({counts})")


def machine() -> str:
    if torch.cuda.is_available():
        gpu = (
            f"{torch.cuda.get_device_name(0)} | torch {torch.__version__} | "
            f"CUDA {torch.version.cuda} | cuDNN {torch.backends.cudnn.version()}"
        )
    else:
        gpu = f"no GPU (CPU only) | torch {torch.__version__}"
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return f"{gpu} | Python {platform.python_version()} | {os.cpu_count()} CPUs | {commit or '?'}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chapters", nargs="+", metavar="NN", help="default: every chapter")
    p.add_argument("--jobs", type=int, help="chapters at a time (default: CPUs / threads, <= 7)")
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS per chapter (default 2)")
    p.add_argument("--timeout", type=float, default=1500, help="seconds per step (default 1500)")
    p.add_argument("--skip-unit", action="store_true", help="do not run the unit tests")
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "_build" / "gpu-check",
        help="summary.txt and logs (default _build/gpu-check)",
    )
    p.add_argument("--allow-cpu", action="store_true", help="run without a GPU (to test this)")
    args = p.parse_args(argv)

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print(
            "gpu_check: torch sees no CUDA GPU (torch.cuda.is_available() is False), so there is "
            "nothing to check here.\nRun it on a machine with an NVIDIA GPU and a CUDA build of "
            "torch, or pass --allow-cpu to exercise this script on the CPU.",
            file=sys.stderr,
        )
        return 2
    missing = missing_modules()
    if missing:
        print(install_advice(missing), file=sys.stderr)
        return 2

    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.chapters:
        chosen = {c.zfill(2) for c in args.chapters}
        notebooks = [nb for nb in notebooks if nb.name[:2] in chosen]
        unknown = chosen - {nb.name[:2] for nb in notebooks}
        if unknown:
            print(f"gpu_check: no chapter numbered {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
    jobs = args.jobs or max(1, min(7, (os.cpu_count() or 1) // args.threads))
    args.out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    say(f"fcnlib GPU check, {datetime.datetime.now():%Y-%m-%d %H:%M}")
    say(f"machine: {machine()}")
    results: list[Result] = []

    if not args.skip_unit:
        log = args.out / "unit.log"
        cmd = [sys.executable, "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider"]
        rc, seconds = run_logged(cmd, child_env(), log, args.timeout)
        results.append(judge("unit tests", rc, seconds, log))
        r = results[-1]
        say(f"{'unit tests':28s} {r.status:7s} {r.seconds:6.0f} s  {r.detail}")

    say(f"chapters under nbval, OMP_NUM_THREADS={args.threads}, {jobs} at a time:")

    def run_chapter(nb: Path) -> Result:
        log = args.out / f"{nb.stem}.log"
        rc, seconds = run_logged(chapter_command(nb), child_env(args.threads), log, args.timeout)
        return judge(nb.stem, rc, seconds, log)

    with ThreadPoolExecutor(jobs) as pool:
        try:
            for r in pool.map(run_chapter, notebooks):  # in chapter order, each when it can
                results.append(r)
                say(f"  {r.name:26s} {r.status:7s} {r.seconds:6.0f} s  {r.detail}")
        except KeyboardInterrupt:  # Ctrl-C has stopped the running chapters; start no more
            pool.shutdown(cancel_futures=True)
            raise

    # After the chapters, so that nothing else competes for the GPU while it is timed. On a CPU
    # (--allow-cpu) the lab backbone at 128 x 128 stands in: VGG16 at 500 x 500 takes minutes.
    bench = ["throughput", "--device", "cuda" if cuda else "cpu", "--batch-size", "8"]
    if not cuda:
        bench += ["--backbone", "tiny_vgg", "--size", "128"]
    cmd = [sys.executable, "-m", "fcnlib", "bench", *bench]
    log = args.out / "bench.log"
    rc, seconds = run_logged(cmd, child_env(), log, args.timeout)
    status = "TIMEOUT" if rc is None else "PASS" if rc == 0 else "FAIL"
    results.append(Result("bench", status, seconds))
    say(f"python -m fcnlib bench {' '.join(bench)}: {status}, {seconds:.0f} s")
    for line in log.read_text(errors="replace").splitlines()[-20:]:
        say(f"  {line}")

    bad = [r.name for r in results if r.status != "PASS"]
    out = args.out.resolve()
    out = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    say(f"result: {'PASS' if not bad else 'FAIL: ' + ', '.join(bad)} (logs in {out})")
    (args.out / "summary.txt").write_text("\n".join(lines) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
