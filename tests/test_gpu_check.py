"""tests/gpu_check.py's plumbing, on any machine: reading pytest's output, the chapter command
and its environment, and the refusals. No notebook is executed here."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "tests" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_check"]


# What `pytest -v -ra` prints for a chapter whose second code cell fails (colours included).
NBVAL_FAILED = """\
collecting ... collected 3 items

notebooks/02_x::ipynb::Cell 0 PASSED                                     [ 33%]
notebooks/02_x::ipynb::Cell 1 FAILED                                     [ 66%]
notebooks/02_x::ipynb::Cell 2 PASSED                                     [100%]

=================================== FAILURES ===================================
__________________________ notebooks/02_x.ipynb::Cell 1 ________________________
\x1b[91mNotebook cell execution failed\x1b[0m
Input:
assert_close(heat, logits)

\x1b[31mAssertionError\x1b[39m                            Traceback (most recent call last)
----> 1 assert_close(heat, logits)

\x1b[31mAssertionError\x1b[39m: Tensor-likes are not close!

=========================== short test summary info ============================
FAILED notebooks/02_x.ipynb::Cell 1 - \x1b[91mNotebook cell execution failed\x1b[0m
========================= 1 failed, 2 passed in 35.20s =========================
"""

# The same chapter stopped (SIGINT) while its second cell ran.
NBVAL_STOPPED = """\
notebooks/02_x::ipynb::Cell 0 PASSED                                     [ 33%]
notebooks/02_x::ipynb::Cell 1

!!!!!!!!!!!!!!!!!!!!!!!!!!!!!! KeyboardInterrupt !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
============================== 1 passed in 5.50s ===============================
"""

UNIT_FAILED = """\
F..                                                                      [100%]
=================================== FAILURES ===================================
>       assert a == b
E       AssertionError: digests differ
=========================== short test summary info ============================
FAILED tests/test_backbones.py::test_pretraining_is_deterministic - AssertionError: digests
1 failed, 2 passed, 1 skipped in 0.03s
"""


def test_parse_a_failed_chapter(gc):
    info = gc.parse_pytest(NBVAL_FAILED)
    assert info["counts"] == {"failed": 1, "passed": 2}
    assert info["first_failed"] == "Cell 1"
    assert info["error"] == "AssertionError: Tensor-likes are not close!"


def test_parse_a_stopped_chapter_names_the_cell_it_was_in(gc):
    info = gc.parse_pytest(NBVAL_STOPPED)
    assert info["counts"] == {"passed": 1}
    assert info["first_failed"] is None
    assert info["last_cell"] == "Cell 1"


def test_parse_unit_tests(gc):
    info = gc.parse_pytest(UNIT_FAILED)
    assert info["counts"] == {"failed": 1, "passed": 2, "skipped": 1}
    assert info["first_failed"] == "tests/test_backbones.py::test_pretraining_is_deterministic"
    assert info["error"] == "AssertionError: digests differ"


def test_judge(gc, tmp_path):
    log = tmp_path / "ch.log"
    log.write_text(NBVAL_FAILED)
    r = gc.judge("02_x", 1, 35.2, log)
    assert (r.status, r.detail) == (
        "FAIL",
        "Cell 1: AssertionError: Tensor-likes are not close! (1 failed, 2 passed)",
    )
    log.write_text(NBVAL_STOPPED)
    assert gc.judge("02_x", None, 1500, log).detail == "stopped in Cell 1 (1 passed)"
    log.write_text("16 passed in 37.00s\n")
    assert gc.judge("01_x", 0, 37, log).status == "PASS"


def test_chapter_command_and_environment(gc, monkeypatch):
    nb = ROOT / "notebooks" / "01_semantic_segmentation.ipynb"
    cmd = gc.chapter_command(nb)
    assert cmd[:3] == [sys.executable, "-m", "pytest"]
    assert {"--nbval-lax", "--nbval-current-env", "-v"} <= set(cmd)
    assert cmd[-1] == "notebooks/01_semantic_segmentation.ipynb"  # run from the repository root

    monkeypatch.setenv("FCN_DEVICE", "cpu")
    monkeypatch.setenv("FCN_SCALE", "full")
    monkeypatch.setenv("PYTHONPATH", "/tmp/site")
    env = gc.child_env(threads=2)
    assert env["OMP_NUM_THREADS"] == "2"
    assert "FCN_DEVICE" not in env and "FCN_SCALE" not in env
    assert env["PYTHONPATH"].split(":") == [str(ROOT), "/tmp/site"]


@pytest.mark.slow
@pytest.mark.parametrize("ignores", [(), ("SIGINT",), ("SIGINT", "SIGTERM")])
def test_a_step_over_its_time_is_stopped(gc, tmp_path, monkeypatch, ignores):
    # A shell that starts the suite in the background (`make test &`, nohup) makes its children
    # ignore SIGINT; a child may ignore SIGTERM too. Each is stopped by the next signal.
    monkeypatch.setattr(gc, "GRACE_S", {gc.signal.SIGINT: 3.0, gc.signal.SIGTERM: 3.0})
    log = tmp_path / "slow.log"
    ignore = "".join(f"signal.signal(signal.{s}, signal.SIG_IGN); " for s in ignores)
    child = f"import signal, time; {ignore}print('started', flush=True); time.sleep(120)"
    # 10 s: enough for the child to start and print even on a loaded 2-core machine
    rc, seconds = gc.run_logged([sys.executable, "-c", child], gc.child_env(), log, timeout=10)
    assert rc is None and seconds < 10 + 3 * (len(ignores) + 1) + 10
    assert "started" in log.read_text()


def test_refuses_without_cuda(gc, monkeypatch, capsys):
    monkeypatch.setattr(gc.torch.cuda, "is_available", lambda: False)
    assert gc.main(["--chapters", "01"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_missing_packages_are_named_with_the_way_to_install_them(gc, monkeypatch, capsys):
    monkeypatch.setattr(gc.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gc, "missing_modules", lambda: ["nbval", "ipykernel"])
    assert gc.main([]) == 2
    err = capsys.readouterr().err
    assert "Missing Python packages: nbval, ipykernel" in err
    assert "pip download --only-binary=:all:" in err and "-d .whl nbval ipykernel" in err
    assert "--no-index --no-deps --target /tmp/site" in err


def test_unknown_chapter_is_refused(gc, monkeypatch, capsys):
    monkeypatch.setattr(gc, "missing_modules", lambda: [])
    assert gc.main(["--allow-cpu", "--chapters", "99"]) == 2
    assert "no chapter numbered 99" in capsys.readouterr().err


@pytest.mark.parametrize("chapter_output", ["16 passed in 37.00s", NBVAL_FAILED])
def test_whole_run_with_the_steps_stubbed(gc, monkeypatch, tmp_path, capsys, chapter_output):
    commands = []

    def fake_run(cmd, env, log, timeout):  # writes what pytest or the benchmark would print
        commands.append(cmd)
        chapter = "--nbval-lax" in cmd
        log.write_text(chapter_output if chapter else "variant  train img/s\n")
        return (1 if chapter and "FAILED" in chapter_output else 0), 3.0

    monkeypatch.setattr(gc, "missing_modules", lambda: [])
    monkeypatch.setattr(gc, "run_logged", fake_run)
    code = gc.main(["--allow-cpu", "--skip-unit", "--chapters", "1", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert (tmp_path / "summary.txt").read_text() == printed
    assert len(commands) == 2 and commands[1][1:4] == ["-m", "fcnlib", "bench"]
    assert "variant  train img/s" in printed
    if code == 0:
        assert "01_semantic_segmentation   PASS" in printed and "result: PASS" in printed
    else:
        assert code == 1 and "Cell 1: AssertionError" in printed
        assert "result: FAIL: 01_semantic_segmentation (logs in" in printed
