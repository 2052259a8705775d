"""A user's mistake ends in one line that says what was wrong and what to do, and a non-zero exit;
a bug keeps its traceback; --debug shows every traceback."""

import errno
import subprocess
import sys

import pytest
import torch

from fcnlib import cli
from fcnlib.cli import main

TINY = ["--size", "32", "--n-train", "8", "--n-val", "4", "--no-progress", "--device", "cpu"]


def _error(argv, capsys=None) -> str:
    """The one line a command exits with (SystemExit's message), checked to be one line."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    message = info.value.code
    if isinstance(message, int):  # argparse: printed, exit 2
        assert message == 2
        message = capsys.readouterr().err.strip()
    assert isinstance(message, str) and "\n" not in message
    assert "Traceback" not in message
    return message


def test_a_library_error_is_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch):
    missing = tmp_path / "nothere.pt"
    line = _error(["eval", str(missing), *TINY])
    assert (
        line.startswith("python -m fcnlib eval: error: no checkpoint at") or "eval: error:" in line
    )
    assert str(missing) in line and line.endswith("(--debug shows where)")
    for argv in (["eval", str(missing), "--debug"], ["--debug", "eval", str(missing)]):
        with pytest.raises(FileNotFoundError):  # the exception itself, traceback and all
            main([*argv, *TINY])
    monkeypatch.setenv("FCN_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(["eval", str(missing), *TINY])


def test_a_bug_keeps_its_traceback(monkeypatch):
    def broken(args):
        raise TypeError("a bug in fcnlib")

    monkeypatch.setattr(cli, "_data", broken)
    with pytest.raises(TypeError, match="a bug"):
        main(["data", "fetch", "sbd"])


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "no space left"),
        (OSError(errno.EFBIG, "File too large"), "file size limit"),
        (
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB\nmore"),
            "--batch-size",
        ),
        (KeyboardInterrupt(), "interrupted"),
    ],
)
def test_full_disks_memory_and_ctrl_c_say_what_to_do(monkeypatch, capsys, error, expected):
    def fails(args):
        raise error

    monkeypatch.setattr(cli, "_data", fails)
    with pytest.raises(SystemExit) as info:
        main(["data", "fetch", "sbd"])
    if isinstance(error, KeyboardInterrupt):
        assert info.value.code == 130
        assert expected in capsys.readouterr().err
    else:
        assert expected in info.value.code and "\n" not in info.value.code


def test_argparse_mistakes_are_one_line_pointing_to_help(capsys):
    for argv, expected in [
        (["train", "--model", "fcn2s"], "invalid choice: 'fcn2s'"),
        (["train", "--lr", "1e39"], "--lr must be a number above 0 and at most 1e+06"),
        (["train", "--lr", "nan"], "--lr must be a number above 0"),
        (["train", "--seed", "-1"], "--seed must be >= 0"),
        (["train", "--seed", "99999999999999999999"], "--seed must be below 2**32"),
        (["train", "--epochs", "0"], "--epochs must be >= 1"),
        ([], "the following arguments are required: COMMAND"),
    ]:
        line = _error(argv, capsys)
        assert expected in line and line.endswith("--help)"), line


@pytest.mark.parametrize("value", ["bogus", "meta", "cuda:x"])
def test_fcn_device_is_named_when_it_is_wrong(monkeypatch, value):
    monkeypatch.setenv("FCN_DEVICE", value)
    line = _error(["eval", "x.pt"])
    assert f"$FCN_DEVICE '{value}' is not a device to run on" in line


def test_a_folder_given_as_checkpoint_is_named(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "a.pt").write_bytes(b"")
    line = _error(["eval", str(tmp_path / "runs"), *TINY])
    assert "is a folder, not a checkpoint" in line and "a.pt" in line


@pytest.fixture(scope="module")
def fcn8s_checkpoint(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("init") / "a8.pt"
    main(["train", "--model", "fcn8s", "--epochs", "1", "--no-pretrained", "--checkpoint",
          str(ckpt), *TINY])  # fmt: skip
    return ckpt


def test_init_from_is_checked_against_the_run_before_any_work(
    fcn8s_checkpoint, tmp_path, monkeypatch
):
    def no_work(*args, **kwargs):
        raise AssertionError("refused options must stop before the data is read")

    monkeypatch.setattr(cli, "_datasets", no_work)
    base = ["train", "--init-from", str(fcn8s_checkpoint), "--checkpoint", str(tmp_path / "b.pt")]
    for extra, expected in [
        (["--model", "fcn32s"], "--model (it is an FCN-8s, so it can start only a finer net"),
        (["--model", "fcn4s", "--backbone", "tiny_vgg_wide"], "--backbone ("),
        (["--model", "fcn4s", "--align", "caffe"], "--align ("),
        (["--model", "fcn4s", "--data", "voc"], "--data ("),
    ]:
        line = _error([*base, *extra, *TINY])
        assert f"--init-from {fcn8s_checkpoint} cannot start this run" in line
        assert expected in line, line
    assert not (tmp_path / "b.pt").exists()


def test_a_user_mistake_prints_no_traceback_in_a_real_process(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "fcnlib", "eval", str(tmp_path / "x.pt"), "--device", "cpu"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert "no checkpoint at" in run.stderr


def test_a_process_whose_peer_failed_says_so_under_torchrun(tmp_path, monkeypatch):
    # rank 0 fails (a full disk, say); the others lose its connection in a collective
    import fcnlib.distributed

    def lost(args):
        raise torch.distributed.DistBackendError("[../gloo/transport] Connection closed by peer")

    monkeypatch.setattr(cli, "_train_here", lost)
    monkeypatch.setattr(fcnlib.distributed, "is_main_process", lambda: False)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    line = _error(["train", "--checkpoint", str(tmp_path / "c.pt"), *TINY])
    assert "process 1 of 2 stopped because another process of this run failed" in line
    monkeypatch.setattr(fcnlib.distributed, "is_main_process", lambda: True)
    line = _error(["train", "--checkpoint", str(tmp_path / "c.pt"), *TINY])
    assert "Connection closed by peer" in line  # rank 0 itself: reported as it is
