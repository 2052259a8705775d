"""The command line: train -> eval -> predict on a tiny lab-bench run."""

import pytest
import torch
from PIL import Image

from fcnlib.cli import build_parser, main

TINY = ["--size", "32", "--n-train", "8", "--n-val", "4", "--no-progress", "--device", "cpu"]


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("train", "eval", "predict", "bench"):
        assert command in out


def test_train_eval_predict_round_trip(tmp_path, capsys):
    ckpt = tmp_path / "fcn32s.pt"
    main(["train", "--model", "fcn32s", "--epochs", "1", "--no-pretrained", "--checkpoint",
          str(ckpt), *TINY])  # fmt: skip
    assert ckpt.is_file()
    ckpt8 = tmp_path / "fcn8s.pt"
    main(["train", "--model", "fcn8s", "--epochs", "1", "--no-pretrained", "--init-from",
          str(ckpt), "--checkpoint", str(ckpt8), *TINY])  # fmt: skip
    main(["eval", str(ckpt8), "--size", "32", "--n-val", "4", "--device", "cpu"])
    out = capsys.readouterr().out
    assert "mean IU" in out and "background" in out

    image = tmp_path / "scene.png"
    Image.fromarray((torch.rand(20, 30, 3) * 255).byte().numpy()).save(image)
    main(["predict", str(ckpt8), str(image), "--out-dir", str(tmp_path / "out"), "--device", "cpu"])
    mask = Image.open(tmp_path / "out" / "scene_mask.png")
    assert mask.size == (30, 20)
    assert (tmp_path / "out" / "scene_overlay.png").is_file()


def test_checkpoint_without_model_spec_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(RuntimeError, match="not an fcnlib checkpoint"):
        main(["eval", str(tmp_path / "x.pt"), "--device", "cpu"])


def test_unknown_choices_are_rejected():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--model", "fcn2s"])


def test_data_fetch_calls_the_downloader_with_the_root(tmp_path, monkeypatch, capsys):
    from fcnlib import voc

    calls = []
    monkeypatch.setattr(voc, "fetch", lambda name, root: calls.append((name, root)) or root)
    main(["data", "fetch", "sbd", "--root", str(tmp_path)])
    assert calls == [("sbd", tmp_path)]
    assert str(tmp_path) in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["data", "fetch", "imagenet"])  # argparse names the valid choices
