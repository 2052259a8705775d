"""The command line: train -> eval -> predict on a tiny lab-bench run."""

import argparse
from pathlib import Path

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
    from torch import nn

    from fcnlib.train import fit, recipe

    torch.save({"weights": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(SystemExit, match=r"error: .* is not an fcnlib checkpoint"):
        main(["eval", str(tmp_path / "x.pt"), "--device", "cpu"])
    # an fcnlib checkpoint, but of a run started from Python with no model spec in `extra`
    data = (torch.rand(2, 3, 8, 8), torch.randint(0, 2, (2, 8, 8)))
    fit(nn.Conv2d(3, 2, 1), data, config=recipe("fast", epochs=1), n_classes=2,
        checkpoint=tmp_path / "plain.pt", progress=False, tensorboard=False)  # fmt: skip
    plain = str(tmp_path / "plain.pt")
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    for args in (
        ["eval", plain],
        ["predict", plain, str(tmp_path / "x.png"), "--out-dir", str(tmp_path / "out")],
    ):
        with pytest.raises(SystemExit, match="not written by 'python -m fcnlib train'"):
            main([*args, "--device", "cpu"])


def test_unknown_choices_are_rejected():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--model", "fcn2s"])


def test_data_fetch_calls_the_downloader_with_the_root(tmp_path, monkeypatch, capsys):
    from fcnlib.data import voc

    calls = []
    monkeypatch.setattr(voc, "fetch", lambda name, root: calls.append((name, root)) or root)
    main(["data", "fetch", "sbd", "--root", str(tmp_path)])
    assert calls == [("sbd", tmp_path)]
    assert str(tmp_path) in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["data", "fetch", "imagenet"])  # argparse names the valid choices


def _fake_paper_data(root):
    """SBD + VOC 2011 in their on-disk formats; two seg11valid images get another size."""
    import numpy as np

    from fcnlib.data.fake import write_fake_sbd, write_fake_voc

    sbd = write_fake_sbd(root, n_train=6, n_val=2, size=(40, 48), content="scenes")
    val_ids = [*sbd.splits["train"][:2], "2011_000100", "2011_000101", "2011_000102"]
    fake = write_fake_voc(root, year=2011, ids_train=["2011_000001"], ids_val=val_ids,
                              size=(40, 48), content="scenes")  # fmt: skip
    for name in ("2011_000101", "2011_000102"):  # whole VOC images differ in size
        image = Image.fromarray(fake.images[name][:33, :45])
        image.save(fake.path / "JPEGImages" / f"{name}.jpg", quality=95)
        label = Image.open(fake.path / "SegmentationClass" / f"{name}.png")
        label.crop((0, 0, 45, 33)).save(fake.path / "SegmentationClass" / f"{name}.png")
    assert np.array(Image.open(fake.path / "JPEGImages" / "2011_000101.jpg")).shape == (33, 45, 3)
    return sbd


def test_train_and_eval_on_voc_format_data(tmp_path, capsys):
    _fake_paper_data(tmp_path)
    ckpt = tmp_path / "voc32s.pt"
    voc_args = ["--data", "voc", "--root", str(tmp_path), "--no-progress", "--device", "cpu"]
    main(["train", "--model", "fcn32s", "--epochs", "1", "--no-pretrained", "--crop", "32",
          "--batch-size", "3", "--checkpoint", str(ckpt), *voc_args])  # fmt: skip
    out = capsys.readouterr().out
    assert "voc" in out and "mean IU" in out
    state = torch.load(ckpt, weights_only=True)
    assert state["config"]["eval_batch_size"] == 1  # seg11valid images differ in size
    assert state["extra"]["data"] == "voc"
    ckpt16 = tmp_path / "voc16s.pt"
    main(["train", "--model", "fcn16s", "--epochs", "1", "--no-pretrained", "--crop", "32",
          "--recipe", "heavy", "--init-from", str(ckpt), "--checkpoint", str(ckpt16),
          *voc_args])  # fmt: skip
    state = torch.load(ckpt16, weights_only=True)
    assert state["config"]["lr"] == pytest.approx(1e-12)  # the official FCN-16s stage
    main(["eval", str(ckpt16), *voc_args])
    out = capsys.readouterr().out
    assert "3 seg11valid images" in out and "aeroplane" in out


def test_voc_data_missing_says_how_to_fetch(tmp_path):
    with pytest.raises(SystemExit, match=r"(?s)data fetch voc2011.*data fetch sbd"):
        main(["train", "--data", "voc", "--root", str(tmp_path), "--no-pretrained",
              "--device", "cpu"])  # fmt: skip


def test_eval_refuses_a_checkpoint_for_other_classes(tmp_path):
    _fake_paper_data(tmp_path)
    ckpt = tmp_path / "lab.pt"
    main(["train", "--model", "fcn32s", "--epochs", "1", "--no-pretrained", "--checkpoint",
          str(ckpt), *TINY])  # fmt: skip
    with pytest.raises(SystemExit, match="7 classes"):
        main(["eval", str(ckpt), "--data", "voc", "--root", str(tmp_path), "--device", "cpu"])


@pytest.mark.slow
def test_bench_options_reach_the_benchmark(capsys):
    main(["bench", "throughput", "--size", "32", "--backbone", "tiny_vgg", "--device", "cpu",
          "--batch-size", "2", "--mode", "infer", "--no-compile"])  # fmt: skip
    out = capsys.readouterr().out
    assert (
        "FCN-8s (tiny_vgg" in out
        and "batch 2" in out
        and "torch.compile" not in out.split("variant")[-1]
    )


# ----------------------------------------------------------------------------- bad inputs


def _untrained_checkpoint(path):
    """A checkpoint as 'train' writes it, without the training (fast)."""
    from fcnlib.models import fcn
    from fcnlib.train import recipe, save_checkpoint

    spec = {"backbone": "tiny_vgg", "n_classes": 7, "stride": 32, "align": "same"}
    model = fcn("tiny_vgg", n_classes=7, stride=32, pretrained=False)
    save_checkpoint(path, model=model, epoch=1, step=1, config=recipe("fast"), history=[],
                    extra={"model": spec})  # fmt: skip
    return path


def test_zero_epochs_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import fcnlib.train

    monkeypatch.setattr(fcnlib.train, "fit", lambda *a, **k: pytest.fail("fit was called"))
    ckpt = tmp_path / "fcn.pt"
    for epochs in ("0", "-3"):
        with pytest.raises(SystemExit):
            main(["train", "--epochs", epochs, "--checkpoint", str(ckpt), *TINY])
        assert "--epochs must be >= 1" in capsys.readouterr().err
    assert not ckpt.exists()


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_a_text_file_as_checkpoint_says_what_was_expected(tmp_path, command):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello, these are my notes\n")  # torch.load: KeyError: 101
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    args = [str(image), "--out-dir", str(tmp_path)] if command == "predict" else []
    with pytest.raises(
        SystemExit, match=rf"{command}: error: .*notes\.txt is not an fcnlib checkpoint.*fcnlib's"
    ):
        main([command, str(notes), *args, "--device", "cpu"])


def test_predict_gives_every_input_its_own_outputs(tmp_path, capsys):
    import numpy as np

    ckpt = _untrained_checkpoint(tmp_path / "ck.pt")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    inputs = [tmp_path / "a" / "good.jpg", tmp_path / "a" / "good.png", tmp_path / "b" / "good.png",
              tmp_path / "a" / "other.png"]  # fmt: skip
    for i, path in enumerate(inputs):
        Image.new("RGB", (12 + i, 9), (40 * i, 0, 0)).save(path)  # sizes tell them apart
    Image.fromarray(np.full((9, 15), 40000, np.uint16)).save(inputs[-1])  # 16-bit grey
    out = tmp_path / "out"
    main(["predict", str(ckpt), *map(str, inputs), "--out-dir", str(out), "--device", "cpu"])
    names = ["good_jpg", "good_png_2", "good_png_3", "other"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{n}_{kind}.png" for n in names for kind in ("mask", "overlay")
    )
    for i, name in enumerate(names):
        mask = Image.open(out / f"{name}_mask.png")
        assert mask.mode == "P" and mask.size == (12 + i, 9)  # class ids, VOC's palette
        assert np.array(mask).max() < 7
        assert Image.open(out / f"{name}_overlay.png").size == (12 + i, 9)
    assert capsys.readouterr().out.count(" -> ") == 4
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "photo_jpg_mask.png" in " ".join(capsys.readouterr().out.split())  # documented


def _photo(path, width=12, height=9, colour=(200, 30, 30)):
    Image.new("RGB", (width, height), colour).save(path)
    return path


def _no_work(monkeypatch):
    """Fail the test if predict loads the checkpoint or an image's pixels."""
    import fcnlib.cli
    import fcnlib.infer

    monkeypatch.setattr(fcnlib.cli, "_model_from_checkpoint", lambda *a: pytest.fail("work"))
    monkeypatch.setattr(fcnlib.infer, "load_image", lambda *a, **k: pytest.fail("work"))


def _predict(ckpt, *args):
    main(["predict", str(ckpt), *map(str, args), "--device", "cpu"])


def test_predict_never_overwrites_an_input(tmp_path, monkeypatch):
    ckpt = _untrained_checkpoint(tmp_path / "ck.pt")
    folder = tmp_path / "a"
    folder.mkdir()
    inputs = [_photo(folder / "photo.png"), _photo(folder / "photo_mask.png", colour=(1, 2, 3))]
    before = [p.read_bytes() for p in inputs]
    _no_work(monkeypatch)
    for more in ([], ["--overwrite"]):
        with pytest.raises(
            SystemExit, match=r"overwrite its own input.*photo_mask\.png.*--out-dir"
        ):
            _predict(ckpt, *inputs, "--out-dir", folder, *more)
    assert [p.read_bytes() for p in inputs] == before
    assert sorted(p.name for p in folder.iterdir()) == ["photo.png", "photo_mask.png"]


def test_predict_replaces_no_file_unless_told_and_writes_atomically(tmp_path, monkeypatch, capsys):
    ckpt = _untrained_checkpoint(tmp_path / "ck.pt")
    photos = [_photo(tmp_path / f"{name}.png") for name in ("first", "photo")]
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "photo_overlay.png"
    mine.write_bytes(b"the user's own drawing")
    with pytest.raises(SystemExit, match=r"1 output file.*photo_overlay\.png.*--overwrite"):
        _predict(ckpt, *photos, "--out-dir", out)
    assert mine.read_bytes() == b"the user's own drawing"
    assert sorted(p.name for p in out.iterdir()) == ["photo_overlay.png"]  # all checked first
    _predict(ckpt, *photos, "--out-dir", out, "--overwrite")
    assert Image.open(mine).size == (12, 9)
    with pytest.raises(SystemExit, match=r"4 output files.*first_mask\.png.*--overwrite"):
        _predict(ckpt, *photos, "--out-dir", out)  # a second predict into the same folder

    written = {p.name: p.read_bytes() for p in out.iterdir()}
    save = Image.Image.save
    for kind in ("P", "RGB"):  # the disk fills up halfway through a mask, then an overlay

        def crash(self, fp, *args, kind=kind, **kwargs):
            if self.mode != kind:
                return save(self, fp, *args, **kwargs)
            fp.write(b"half") if hasattr(fp, "write") else Path(fp).write_bytes(b"half")
            raise OSError("No space left on device")

        monkeypatch.setattr(Image.Image, "save", crash)
        with pytest.raises(SystemExit, match=r"predict: error: could not write .*No space left"):
            _predict(ckpt, *photos, "--out-dir", out, "--overwrite")
        assert {p.name: p.read_bytes() for p in out.iterdir()} == written  # no half a file


def test_predict_refuses_an_out_dir_it_cannot_write_before_any_work(tmp_path, monkeypatch):
    import fcnlib.cli

    ckpt = _untrained_checkpoint(tmp_path / "ck.pt")
    photo = _photo(tmp_path / "photo.png")
    _no_work(monkeypatch)
    (tmp_path / "notes").write_text("x")
    with pytest.raises(SystemExit, match=r"--out-dir .*notes is a file, not a folder"):
        _predict(ckpt, photo, "--out-dir", tmp_path / "notes")
    with pytest.raises(SystemExit, match=r"--out-dir .*notes/new: .*notes is a file"):
        _predict(ckpt, photo, "--out-dir", tmp_path / "notes" / "new")
    locked = tmp_path / "locked"
    locked.mkdir()
    import fcnlib._io

    def read_only(folder):  # root writes anywhere: stand in for a read-only folder
        if Path(folder) == locked:
            raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fcnlib._io, "check_writable", read_only)
    with pytest.raises(SystemExit, match=r"--out-dir .*locked/new: cannot write in .*locked"):
        _predict(ckpt, photo, "--out-dir", locked / "new")


def test_predict_takes_folders_and_checks_every_input_first(tmp_path, monkeypatch, capsys):
    import fcnlib.infer

    ckpt = _untrained_checkpoint(tmp_path / "ck.pt")
    folder = tmp_path / "holiday"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.png", "A.JPG", "c.webp", "d.tiff", "sub/e.png", "f_mask.png",
                 "f_overlay.png", ".g.png"):  # fmt: skip
        _photo(folder / name)
    (folder / "notes.txt").write_text("not an image")
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    Image.new("RGB", (30, 20)).save(folder / "portrait.jpg", exif=exif)
    calls = []
    real_load, real_predict = fcnlib.infer.load_image, fcnlib.infer.predict

    def load(path, **kwargs):
        calls.append(path.name)
        return real_load(path, **kwargs)

    def predict(model, images, **kwargs):
        calls.append(len(images))
        return real_predict(model, images, **kwargs)

    monkeypatch.setattr(fcnlib.infer, "load_image", load)
    monkeypatch.setattr(fcnlib.infer, "predict", predict)
    out = tmp_path / "out"
    _predict(ckpt, folder, "--out-dir", out)
    labelled = ["A.JPG", "b.png", "c.webp", "d.tiff", "portrait.jpg"]  # sorted, not recursive
    assert calls == [x for name in labelled for x in (name, 1)]  # one image at a time
    assert capsys.readouterr().out.count(" -> ") == 5
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{Path(n).stem}_{kind}.png" for n in labelled for kind in ("mask", "overlay")
    )
    assert Image.open(out / "portrait_mask.png").size == (20, 30)  # as displayed

    _no_work(monkeypatch)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match=r"empty holds no images.*\.png.*\.jpg"):
        _predict(ckpt, tmp_path / "empty", "--out-dir", tmp_path / "o2")
    with pytest.raises(SystemExit, match=r"no such file or folder: .*missing1\.png, .*missing2"):
        _predict(ckpt, tmp_path / "missing1.png", folder / "b.png", tmp_path / "missing2.png",
                 "--out-dir", tmp_path / "o2")  # fmt: skip
    assert not (tmp_path / "o2").exists()


def test_predict_checks_every_image_header_before_any_work(tmp_path, monkeypatch):
    ckpt = _untrained_checkpoint(tmp_path / "ck.pt")
    good = _photo(tmp_path / "good.png", 20, 10)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    _no_work(monkeypatch)
    with pytest.raises(
        SystemExit, match=r"2 of 3 images.*empty\.jpg is empty.*text\.png is not an"
    ):
        _predict(ckpt, good, tmp_path / "empty.jpg", tmp_path / "text.png", "--out-dir", tmp_path)
    with pytest.raises(SystemExit, match=r"good\.png is 20x10 = 200 pixels.*--max-pixels"):
        _predict(ckpt, good, "--max-pixels", "199", "--out-dir", tmp_path)
    for bad in ("-1", "1.5", "lots"):
        with pytest.raises(SystemExit):
            _predict(ckpt, good, "--max-pixels", bad)
    monkeypatch.undo()
    _predict(ckpt, good, "--max-pixels", "0", "--out-dir", tmp_path / "o")
    _predict(ckpt, good, "--max-pixels", "200", "--out-dir", tmp_path / "o2")
    assert (tmp_path / "o2" / "good_mask.png").is_file()


def test_inputs_whose_names_differ_in_case_get_their_own_outputs(tmp_path):
    ckpt = _untrained_checkpoint(tmp_path / "ck.pt")
    inputs = [_photo(tmp_path / "Photo.png", 12), _photo(tmp_path / "photo.jpg", 13)]
    _predict(ckpt, *inputs, "--out-dir", tmp_path / "out")  # one file on macOS or Windows
    names = sorted(p.name.casefold() for p in (tmp_path / "out").iterdir())
    assert len(set(names)) == 4


def test_predict_help_says_what_it_writes_and_refuses(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for words in ("--overwrite", "never an input", "folder", "EXIF", "--max-pixels",
                  "40 megapixels", "one image at a time"):  # fmt: skip
        assert words in text, words


# ----------------------------------------------------------------------------- runs


def _train(ckpt, *more):
    main(["train", "--model", "fcn32s", "--no-pretrained", "--checkpoint", str(ckpt), *TINY,
          *more])  # fmt: skip


def test_train_again_resume_longer_and_change_the_lr(tmp_path, capsys):
    from fcnlib.checkpoint import run_files
    from fcnlib.train import load_checkpoint

    ckpt = tmp_path / "run.pt"
    _train(ckpt, "--epochs", "1")
    before = ckpt.read_bytes()
    # train again: refused, whatever else changed (it used to train at the old lr, say the new)
    for more in ([], ["--lr", "1e4"], ["--size", "64"]):
        with pytest.raises(SystemExit, match=r"already holds a run \(1 of 1 epochs.*--resume"):
            _train(ckpt, "--epochs", "1", *more)
    assert ckpt.read_bytes() == before
    # resumed with nothing new: finished, says so, trains nothing
    capsys.readouterr()
    _train(ckpt, "--resume")
    assert "has finished its 1 epochs; nothing to train" in capsys.readouterr().out
    assert ckpt.read_bytes() == before
    # resumed longer (the one-cycle schedule is rebuilt; it used to crash) with a new lr
    _train(ckpt, "--resume", "--epochs", "2", "--lr", "1e-3")
    out = capsys.readouterr().out
    assert "lr 0.001), 2 epochs" in out
    state = load_checkpoint(ckpt)
    assert state["epoch"] == 2 and state["config"]["lr"] == 1e-3
    assert {g["max_lr"] for g in state["optimizer"]["param_groups"]} == {1e-3}  # one-cycle peak
    lines = run_files(ckpt)["metrics"].read_text().splitlines()
    assert len(lines) == 2 and run_files(ckpt)["best"].is_file()
    # resumed without --lr or --epochs: the run's own values, not the defaults
    _train(ckpt, "--resume")
    assert "has finished its 2 epochs" in capsys.readouterr().out


def test_resume_refuses_other_options_in_flags(tmp_path):
    ckpt = tmp_path / "run.pt"
    _train(ckpt, "--epochs", "1")
    with pytest.raises(SystemExit) as info:
        _train(ckpt, "--resume", "--epochs", "2", "--size", "64", "--batch-size", "3",
               "--recipe", "paper")  # fmt: skip
    message = str(info.value)
    assert "--size (the run has size 32, now 64)" in message
    assert "--batch-size (the run has batch_size" in message
    assert "--recipe (the run has optimizer 'adamw', now 'sgd')" in message
    assert "only --epochs" in message
    with pytest.raises(SystemExit, match=r"--model \(the run has stride 32, now 8\)"):
        main(["train", "--model", "fcn8s", "--no-pretrained", "--checkpoint", str(ckpt),
              "--resume", *TINY])  # fmt: skip
    with pytest.raises(SystemExit, match="there is no run at --checkpoint"):
        _train(tmp_path / "none.pt", "--resume")


def test_resume_keeps_the_runs_precision_in_flags(tmp_path, monkeypatch):
    from fcnlib.train import load_checkpoint

    monkeypatch.delenv("FCN_CPU_BF16", raising=False)
    ckpt = tmp_path / "run.pt"
    _train(ckpt, "--epochs", "1", "--amp", "auto")  # float32 on this CPU
    monkeypatch.setenv("FCN_CPU_BF16", "1")  # a machine where --amp auto means bf16
    message = r"--amp \(the run computed in float32; --amp auto means bf16 here: pass --amp off\)"
    with pytest.raises(SystemExit, match=message):
        _train(ckpt, "--resume", "--epochs", "2", "--amp", "auto")
    _train(ckpt, "--resume", "--epochs", "2", "--amp", "off")  # the same precision: accepted
    state = load_checkpoint(ckpt)
    assert (state["epoch"], state["precision"]) == (2, "float32")


def test_paths_and_numbers_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    import fcnlib.cli

    monkeypatch.setattr(fcnlib.cli, "_datasets", lambda *a, **k: pytest.fail("data was read"))
    with pytest.raises(SystemExit, match="is a folder"):
        _train(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match="is a file, not a folder"):
        _train(tmp_path / "file" / "run.pt")
    with pytest.raises(SystemExit, match=r"--init-from .*no such file"):
        _train(tmp_path / "run.pt", "--init-from", str(tmp_path / "missing.pt"))
    bad = [
        ("--batch-size", "0", "must be >= 1"),
        ("--lr", "0", "above 0"),
        ("--lr", "-1", "above 0"),
        ("--lr", "nan", "above 0"),
        ("--lr", "1e39", "at most 1e+06"),
        ("--workers", "-1", "must be >= 0"),
        ("--size", "8", ">= 32"),
    ]
    for flag, value, why in bad:
        with pytest.raises(SystemExit):
            _train(tmp_path / "run.pt", flag, value)
        assert why in capsys.readouterr().err


def test_a_checkpoint_name_too_long_is_refused_before_any_work(tmp_path, monkeypatch):
    import fcnlib.cli

    monkeypatch.setattr(fcnlib.cli, "_datasets", lambda *a, **k: pytest.fail("data was read"))
    long = tmp_path / ("x" * 245 + ".pt")  # used to fail at the first save, after an epoch
    too_long = r"train: error: --checkpoint .*x\.pt: the name is too long.*at most"
    with pytest.raises(SystemExit, match=too_long):
        _train(long)
    assert list(tmp_path.iterdir()) == []


def test_a_new_run_never_replaces_another_runs_files_in_flags(tmp_path, monkeypatch):
    import fcnlib.cli

    ckpt = tmp_path / "run.pt"
    _train(ckpt, "--epochs", "1")
    whole = r"delete the run's whole record, .*run\.pt, .*run\.best\.pt, .*run\.metrics\.jsonl"
    with pytest.raises(SystemExit, match=whole):
        _train(ckpt, "--epochs", "1")
    monkeypatch.setattr(fcnlib.cli, "_datasets", lambda *a, **k: pytest.fail("data was read"))
    kept = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    others = r"files of another run's record are there \(.*run\.best\.pt, .*run\.metrics\.jsonl"
    with pytest.raises(SystemExit, match=others + r".*Delete them"):
        _train(tmp_path / "run", "--epochs", "1")  # shares run.best.pt and run.metrics.jsonl
    ckpt.unlink()  # what the refusal used to advise
    for more in ([], ["--resume"]):
        with pytest.raises(SystemExit, match=others):
            _train(ckpt, "--epochs", "1", *more)
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == {
        p: b for p, b in kept.items() if p != ckpt
    }


def test_resume_refuses_a_best_weights_file_and_another_number_of_processes(tmp_path):
    from fcnlib.train import load_checkpoint

    ckpt = tmp_path / "run.pt"
    _train(ckpt, "--epochs", "1")
    best = tmp_path / "run.best.pt"
    wrong_file = r"run\.best\.pt: it is a best-weights file.*Resume from .*run\.pt, .*--init-from"
    with pytest.raises(SystemExit, match=wrong_file):
        _train(best, "--resume", "--epochs", "2")  # used to reset the optimizer and train on
    state = load_checkpoint(ckpt)
    state["world_size"] = 2  # as a run under torchrun --nproc_per_node=2 saves it
    torch.save(state, ckpt)
    wrong_size = (
        r"trained by 2 processes and this is 1 process.*Resume it with the same number: "
        r"torchrun --standalone --nproc_per_node=2 -m fcnlib train \.\.\. --checkpoint .*run\.pt "
        "--resume"
    )
    with pytest.raises(SystemExit, match=wrong_size):
        _train(ckpt, "--resume", "--epochs", "2")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "run.tb") == [
        "run.best.pt", "run.metrics.jsonl", "run.pt"
    ]  # fmt: skip


def test_a_record_in_use_is_refused_before_any_work(tmp_path, monkeypatch):
    import threading

    import fcnlib.cli
    from fcnlib.record import hold_record

    monkeypatch.setattr(fcnlib.cli, "_datasets", lambda *a, **k: pytest.fail("data was read"))
    held, done = threading.Event(), threading.Event()

    def other_run():  # another thread holds it as another process would
        with hold_record(tmp_path / "run.pt"):
            held.set()
            done.wait(30)

    thread = threading.Thread(target=other_run)
    thread.start()
    try:
        held.wait(30)
        with pytest.raises(SystemExit, match=r"error: .*run\.pt is in use.*pid \d+ on host"):
            _train(tmp_path / "run.pt", "--epochs", "1")
    finally:
        done.set()
        thread.join()


def test_resume_repairs_the_record_and_the_summary_names_what_is_there(
    tmp_path, monkeypatch, capsys
):
    import dataclasses

    import fcnlib.train
    from fcnlib.train import load_checkpoint

    ckpt, best = tmp_path / "run.pt", tmp_path / "run.best.pt"
    real_save, real_evaluate = fcnlib.train.save_checkpoint, fcnlib.train.evaluate

    def full_disk_at_best(path, **kwargs):
        if path == best:
            raise OSError(28, "No space left on device")
        return real_save(path, **kwargs)

    monkeypatch.setattr(fcnlib.train, "save_checkpoint", full_disk_at_best)
    with pytest.raises(SystemExit, match="No space left on device: no space left"):
        _train(ckpt, "--epochs", "1")
    monkeypatch.undo()
    assert not best.exists()
    capsys.readouterr()
    _train(ckpt, "--resume")  # used to leave no run.best.pt, and say it was saved
    assert "has finished its 1 epochs; nothing to train" in capsys.readouterr().out
    assert load_checkpoint(best)["epoch"] == 1
    assert len((tmp_path / "run.metrics.jsonl").read_text().splitlines()) == 1
    # later epochs score worse; epoch 1's best weights, lost for good, are not claimed as saved
    worse = lambda *a, **k: dataclasses.replace(real_evaluate(*a, **k), mean_iu=-1.0)  # noqa: E731
    monkeypatch.setattr(fcnlib.train, "evaluate", worse)
    _train(ckpt, "--resume", "--epochs", "2")
    assert load_checkpoint(best)["epoch"] == 1
    best.unlink()
    capsys.readouterr()
    with pytest.warns(UserWarning, match=r"run\.best\.pt is missing.*those weights are lost"):
        _train(ckpt, "--resume", "--epochs", "3")
    assert capsys.readouterr().out.strip().endswith(f"saved {ckpt} (run.metrics.jsonl beside it)")
    assert not best.exists()


def test_version_and_console_script_name(capsys, monkeypatch):
    import fcnlib

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith(f"fcnlib {fcnlib.__version__} (torch ")
    monkeypatch.setattr("sys.argv", ["/usr/bin/fcnlib"])
    assert build_parser().prog == "fcnlib"
    monkeypatch.setattr("sys.argv", ["/x/fcnlib/__main__.py"])
    assert build_parser().prog == "python -m fcnlib"


def test_every_option_has_help():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse keeps them here
    for name, sub in {"": parser, **commands}.items():
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue  # the commands: each has its help
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"


def test_a_diverging_run_stops_with_a_message_in_flags(tmp_path):
    ckpt = tmp_path / "run.pt"
    with pytest.raises(SystemExit) as info:
        _train(ckpt, "--epochs", "2", "--lr", "1e4")  # used to end with loss 2e26, "saved"
    where, message = str(info.value).split(": error: ")
    assert where.endswith(" train")
    # one step per epoch: caught at epoch 2's first step, against epoch 1's starting loss
    assert message.startswith("training diverged: loss") and "at epoch 2, step 0" in message
    assert "run.pt keeps the last good epoch." in message
    assert "Try a lower --lr (this run: 1e+04)" in message and "divergence=None" not in message


def test_workers_auto_feeds_a_gpu_on_voc_only(monkeypatch):
    import fcnlib.cli
    from fcnlib.cli import _auto_workers

    parser = build_parser()
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    voc = parser.parse_args(["train", "--data", "voc"])
    assert voc.workers is None  # 'auto' by default
    for cores, expected in ((2, 1), (16, 8), (1, 1), (64, 8)):  # Colab's 2 vCPUs: one worker
        monkeypatch.setattr(fcnlib.cli, "cpu_cores", lambda n=cores: n)
        assert _auto_workers(voc, gpu) == expected
    assert _auto_workers(voc, cpu) == 0  # CPU training keeps its cores
    assert _auto_workers(parser.parse_args(["train"]), gpu) == 0  # lab scenes are in memory
    assert _auto_workers(parser.parse_args(["train", "--data", "voc", "--workers", "3"]), gpu) == 3
    assert parser.parse_args(["train", "--workers", "auto"]).workers is None
