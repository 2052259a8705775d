"""fcnlib.train: the loss identities, the paper's optimizer groups, exact resumption."""

import math
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.testing import assert_close
from torch.utils.data import DataLoader, TensorDataset

from fcnlib.data import ShapesDataset
from fcnlib.metrics import ConfusionMatrix
from fcnlib.train import (
    RECIPES,
    History,
    TrainConfig,
    balanced_class_weights,
    evaluate,
    fit,
    load_checkpoint,
    make_grad_scaler,
    make_optimizer,
    make_scheduler,
    param_groups,
    prepare_model,
    recipe,
    resolve_amp,
    save_checkpoint,
    segmentation_loss,
    train_one_epoch,
)

N_CLASSES = 7


def bilinear_kernel(size: int) -> torch.Tensor:
    centre = (size - 1) / 2 if size % 2 else size / 2 - 0.5
    f = 1 - (torch.arange(size) - centre).abs() / math.ceil(size / 2)
    return f[:, None] * f[None, :]


class TinyFCN(nn.Module):
    """conv, stride-2 pool, dilated conv, 1x1 score, fixed bilinear 2x upsampling: (N, C, H, W).

    ``crash_after`` raises on that training forward pass, to simulate a power cut.
    """

    def __init__(self, n_classes: int = N_CLASSES, width: int = 16, crash_after=None):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=2, dilation=2)
        self.score = nn.Conv2d(width, n_classes, 1)
        self.upscore = nn.ConvTranspose2d(
            n_classes, n_classes, 4, stride=2, padding=1, groups=n_classes, bias=False
        )
        self.upscore.weight.data.copy_(bilinear_kernel(4).expand(n_classes, 1, 4, 4))
        self.upscore.weight.requires_grad_(False)  # fixed, as in the official FCN-32s
        self.crash_after, self.train_calls = crash_after, 0

    def forward(self, x):
        if self.training:
            self.train_calls += 1
            if self.train_calls == self.crash_after:
                raise RuntimeError("simulated power cut")
        y = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)  # (N, width, H/2, W/2)
        y = F.relu(self.conv2(y))
        return self.upscore(self.score(y))  # (N, C, H, W)


@pytest.fixture(scope="module")
def scenes():
    """48 train + 16 val scenes at 32x32, with each class also tinted its own colour.

    On the raw scenes a tiny net needs a few hundred steps to beat "all background" (classes
    differ by shape only); the tint makes it learnable in under a hundred, enough to test the
    training loop.
    """
    images, labels = ShapesDataset("train", size=32, length=64).materialize()
    palette = torch.rand(N_CLASSES, 3, generator=torch.Generator().manual_seed(0))
    tint = palette[labels.masked_fill(labels == 255, 0)].permute(0, 3, 1, 2)  # (N, 3, H, W)
    images = 0.25 * images + 0.75 * tint
    return (images[:48], labels[:48]), (images[48:], labels[48:])


def tiny_config(**changes) -> TrainConfig:
    return recipe("fast", **{"batch_size": 8, "epochs": 3, "amp": "off", **changes})


# ----------------------------------------------------------------------------- config


def test_recipes_are_the_papers():
    paper, heavy = RECIPES["paper"], RECIPES["heavy"]
    assert (paper.optimizer, paper.momentum, paper.batch_size, paper.lr) == ("sgd", 0.9, 20, 1e-4)
    assert (paper.weight_decay, paper.schedule, paper.loss_reduction) == (5e-4, "fixed", "mean")
    assert paper.bias_lr_mult == 2.0
    assert (heavy.batch_size, heavy.momentum, heavy.loss_reduction, heavy.lr) == (
        1,
        0.99,
        "sum",
        1e-10,
    )
    assert recipe("heavy", lr=1e-12).lr == 1e-12
    with pytest.raises(ValueError, match="expected one of"):
        recipe("slow")


def test_config_is_frozen_validated_and_round_trips():
    config = TrainConfig(class_weights=[1, 2.5], loss_sampling=0.25)
    assert config.class_weights == (1.0, 2.5)
    hash(config)  # frozen and hashable, class weights included
    with pytest.raises(AttributeError):
        config.lr = 1.0
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert config.to_dict()["class_weights"] == [1.0, 2.5]
    for bad in ({"schedule": "step"}, {"amp": "fp8"}, {"loss_sampling": 0.0}, {"lr": -1.0}):
        with pytest.raises(ValueError, match=r"must|need|fraction"):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({"lr": 1e-3, "warmup_epochs": 2})


@pytest.mark.parametrize(("bad", "error"), [(3.5, TypeError), (True, TypeError), (300, ValueError)])
def test_ignore_index_that_is_not_a_label_value_is_refused(bad, error):
    # 3.5 equals no integer label, so it would ignore nothing; True would ignore class 1
    expected = rf"ignore_index must be .*got {bad!r}"
    with pytest.raises(error, match=expected):
        TrainConfig(ignore_index=bad)
    with pytest.raises(error, match=expected):
        recipe("fast", ignore_index=bad)
    logits, target = random_batch()
    with pytest.raises(error, match=expected):
        segmentation_loss(logits, target, ignore_index=bad)
    loader = DataLoader(TensorDataset(torch.rand(1, 3, 8, 8), torch.zeros(1, 8, 8).long()))
    with pytest.raises(error, match=expected):
        evaluate(TinyFCN(), loader, n_classes=N_CLASSES, ignore_index=bad)
    assert TrainConfig(ignore_index=-100).ignore_index == -100  # torch's default is allowed


# ----------------------------------------------------------------------------- loss


def random_batch(n=2, c=4, h=6, w=5, void=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g)
    target = torch.randint(0, c, (n, h, w), generator=g)
    target[torch.rand(n, h, w, generator=g) < void] = 255
    return logits, target


@pytest.mark.parametrize("weights", [None, [0.5, 1.0, 2.0, 3.0]])
def test_loss_is_cross_entropy_and_sum_is_mean_times_labelled_pixels(weights):
    logits, target = random_batch()
    w = None if weights is None else torch.tensor(weights)
    mean = segmentation_loss(logits, target, class_weights=weights)
    assert_close(mean, F.cross_entropy(logits, target, weight=w, ignore_index=255))
    total = segmentation_loss(logits, target, class_weights=weights, reduction="sum")
    labelled = target[target != 255]
    n_labelled = labelled.numel() if w is None else w[labelled].sum()
    assert_close(total, mean * n_labelled)


def test_loss_sampling_keeps_the_fraction_of_labelled_positions():
    # uniform logits: every kept pixel costs exactly log(C), so sum / log(C) counts them
    target = random_batch(n=4, h=64, w=64, void=0.25)[1]
    logits, labelled = torch.zeros(4, 4, 64, 64), int((target != 255).sum())
    for p in (0.1, 0.5, 1.0):
        g = torch.Generator().manual_seed(1)
        kept = segmentation_loss(logits, target, reduction="sum", sample_fraction=p, generator=g)
        fraction = kept.item() / math.log(4) / labelled
        assert fraction == pytest.approx(p, abs=0.02)
    # seeded sampling is reproducible; the mean is over the kept pixels, still log(C)
    a, b = (
        segmentation_loss(
            torch.randn(4, 4, 64, 64, generator=torch.Generator().manual_seed(2)),
            target,
            sample_fraction=0.3,
            generator=torch.Generator().manual_seed(3),
        )
        for _ in range(2)
    )
    assert torch.equal(a, b)
    assert_close(segmentation_loss(logits, target, sample_fraction=0.3), torch.tensor(math.log(4)))


@pytest.mark.parametrize("cell", [4, 32])
def test_loss_sampling_drops_whole_final_layer_cells(cell):
    # The paper ignores each final-layer cell with probability 1 - p: within a cell every pixel
    # is kept or dropped together, and about p of the cells survive.
    h, w = 2 * cell + 3, 3 * cell  # a partial row of cells at the bottom
    target = torch.randint(0, 4, (16, h, w))
    logits = torch.zeros(16, 4, h, w, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    loss = segmentation_loss(
        logits, target, reduction="sum", sample_fraction=0.5, sample_cell=cell, generator=g
    )
    loss.backward()
    kept = (logits.grad.abs().sum(1) > 0).float().unsqueeze(1)  # pixels whose loss counted
    most = F.max_pool2d(kept, cell, ceil_mode=True)  # per cell: any pixel kept
    least = -F.max_pool2d(-kept, cell, ceil_mode=True)  # per cell: every pixel kept
    assert torch.equal(most, least), "a cell is kept or dropped whole"
    assert most.mean().item() == pytest.approx(0.5, abs=0.08)
    with pytest.raises(ValueError, match="sample_cell"):
        segmentation_loss(logits, target, sample_fraction=0.5, sample_cell=0)


def test_class_weights():
    counts = torch.tensor([600, 300, 0, 100])
    weights = balanced_class_weights(counts)
    # every present class carries the same total weight; the mean weight per pixel is 1
    assert_close(weights * counts, torch.tensor([1000 / 3, 1000 / 3, 0, 1000 / 3]))
    assert_close((weights * counts).sum() / counts.sum(), torch.tensor(1.0))
    # weight 0 for a class is the same as labelling its pixels void
    logits, target = random_batch()
    zeroed = segmentation_loss(logits, target, class_weights=[1.0, 0.0, 1.0, 1.0])
    assert_close(zeroed, segmentation_loss(logits, target.masked_fill(target == 1, 255)))


def test_all_void_gives_zero_not_nan():
    loss = segmentation_loss(torch.randn(1, 3, 4, 4), torch.full((1, 4, 4), 255))
    assert loss.item() == 0.0


def test_loss_errors_say_what_to_do():
    logits, target = random_batch(h=6, w=6)
    with pytest.raises(ValueError, match="Upsample the logits to the label size"):
        segmentation_loss(logits[..., :3, :3], target)
    with pytest.raises(ValueError, match=r"target contains \[7\].*\[0, 3\].*ignore label 255"):
        segmentation_loss(logits, target.masked_fill(target == 0, 7))
    with pytest.raises(ValueError, match=r"expected logits \(N, C, H, W\)"):
        segmentation_loss(logits[0], target)


# ----------------------------------------------------------------------------- optimisation


def test_param_groups_double_bias_lr_without_decay_and_skip_frozen():
    model = TinyFCN()
    groups = {g["name"]: g for g in param_groups(model, lr=1e-4, weight_decay=5e-4)}
    assert set(groups) == {"weights", "biases", "other"}
    assert (groups["biases"]["lr"], groups["biases"]["weight_decay"]) == (2e-4, 0.0)
    assert (groups["weights"]["lr"], groups["weights"]["weight_decay"]) == (1e-4, 5e-4)
    assert groups["other"]["weight_decay"] == 0.0  # the BatchNorm scale
    ids = {id(p) for g in groups.values() for p in g["params"]}
    assert id(model.upscore.weight) not in ids  # fixed bilinear upsampling is not trained
    assert ids == {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in groups["biases"]["params"]} == {
        id(model.conv1.bias),
        id(model.bn1.bias),
        id(model.conv2.bias),
        id(model.score.bias),
    }


@pytest.mark.parametrize("schedule", ["fixed", "poly", "cosine", "onecycle"])
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_schedules_keep_the_bias_ratio(schedule, optimizer):
    config = TrainConfig(optimizer=optimizer, schedule=schedule, lr=1e-2, warmup_steps=3)
    opt = make_optimizer(TinyFCN(), config)
    sched = make_scheduler(opt, config, total_steps=20)
    lrs = []
    for _ in range(20):
        weights, biases = (g["lr"] for g in opt.param_groups[:2])
        assert biases == pytest.approx(2 * weights)
        lrs.append(weights)
        opt.step()
        sched.step()
    assert max(lrs) == pytest.approx(1e-2, rel=1e-6)
    if schedule == "fixed":
        assert lrs[0] == pytest.approx(1e-2 / 3)  # linear warm-up
        assert lrs[3:] == [1e-2] * 17
    else:
        assert lrs[-1] < lrs[5]


# ----------------------------------------------------------------------------- training


def test_tiny_run_learns(scenes):
    (train_x, train_y), val = scenes
    background = ConfusionMatrix(N_CLASSES).update(torch.zeros_like(val[1]), val[1]).compute()
    torch.manual_seed(0)
    history = fit(
        TinyFCN(),
        (train_x, train_y),
        val,
        config=tiny_config(epochs=8, batch_size=4, lr=1e-2),
        n_classes=N_CLASSES,
        device="cpu",
        progress=False,
    )
    columns = history.as_columns()
    assert columns["epoch"] == list(range(1, 9))
    assert columns["step"][-1] == 8 * 48 // 4
    assert columns["loss"][-1] < 0.5 * columns["loss"][0]
    # measured: mean IU 0.30 against 0.12 for "all background"
    assert history[-1]["mean_iu"] > background.mean_iu + 0.1
    assert len(history[-1]["iu"]) == N_CLASSES
    assert history.best("loss")["loss"] == min(columns["loss"])
    assert history.best("mean_iu")["mean_iu"] == max(columns["mean_iu"])


def test_nan_loss_stops_with_advice():
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, x):
            return self.w * torch.full((len(x), 2, *x.shape[-2:]), math.nan)

    model = Broken()
    opt = make_optimizer(model, tiny_config())
    loader = DataLoader(TensorDataset(torch.rand(4, 3, 8, 8), torch.zeros(4, 8, 8).long()))
    with pytest.raises(FloatingPointError, match=r"nan at epoch 3, step 0 \(lr .*lower learning"):
        train_one_epoch(
            model, loader, opt, config=tiny_config(), device="cpu", epoch=3, progress=False
        )
    assert model.w.item() == 1.0  # stopped before the update


def test_evaluate_matches_confusion_matrix_and_restores_modes(scenes):
    _, (images, labels) = scenes
    model = TinyFCN().train()
    model.bn1.eval()  # e.g. frozen BatchNorm statistics: must stay as they were
    loader = DataLoader(TensorDataset(images, labels), batch_size=5)
    s = evaluate(model, loader, n_classes=N_CLASSES)
    assert model.training and model.conv1.training and not model.bn1.training
    model.eval()
    with torch.no_grad():
        expected = ConfusionMatrix(N_CLASSES).update(model(images).argmax(1), labels).compute()
    assert torch.equal(s.confusion, expected.confusion)


def test_resumed_run_is_bit_identical(scenes, tmp_path):
    train_data, val = scenes
    # loss sampling draws from torch's global generator: resuming must restore it too
    config, path = tiny_config(loss_sampling=0.7), tmp_path / "run" / "ckpt.pt"
    run = dict(config=config, n_classes=N_CLASSES, device="cpu", progress=False)
    torch.manual_seed(1)
    straight = TinyFCN()
    expected = fit(straight, train_data, val, **run)

    torch.manual_seed(1)
    with pytest.raises(RuntimeError, match="power cut"):  # in epoch 3 of 3 (6 steps each)
        fit(TinyFCN(crash_after=2 * 6 + 4), train_data, val, checkpoint=path, **run)
    assert load_checkpoint(path)["epoch"] == 2

    torch.manual_seed(99)  # a different initialisation: everything must come from the file
    resumed = TinyFCN()
    history = fit(resumed, train_data, val, checkpoint=path, resume=True, **run)

    state, want = resumed.state_dict(), straight.state_dict()
    assert state.keys() == want.keys()
    for key in want:
        assert torch.equal(state[key], want[key]), key
    timing = {"seconds", "images_per_s"}
    strip = [{k: v for k, v in r.items() if k not in timing} for r in history]
    assert strip == [{k: v for k, v in r.items() if k not in timing} for r in expected]

    # a finished run returns its history without training another step
    done = fit(TinyFCN(crash_after=1), train_data, val, checkpoint=path, resume=True, **run)
    assert [r["loss"] for r in done] == [r["loss"] for r in history]


def test_fit_saves_the_uncompiled_model(scenes, tmp_path, monkeypatch):
    class Compiled(nn.Module):  # stands in for torch.compile's wrapper, which keeps _orig_mod
        def __init__(self, model):
            super().__init__()
            self._orig_mod = model

        def forward(self, x):
            return self._orig_mod(x)

    monkeypatch.setattr(torch, "compile", Compiled)
    model, (images, labels) = TinyFCN(), scenes[1]
    config = tiny_config(compile=True, epochs=1)
    fit(
        model,
        (images, labels),
        config=config,
        n_classes=N_CLASSES,
        device="cpu",
        checkpoint=tmp_path / "c.pt",
        progress=False,
        extra={"model": {"width": 16}},
    )
    saved = load_checkpoint(tmp_path / "c.pt", model=TinyFCN())
    assert saved["model"].keys() == model.state_dict().keys()
    assert saved["extra"] == {"model": {"width": 16}}  # e.g. how to rebuild the model


# ----------------------------------------------------------------------------- checkpoints


def test_atomic_save_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    model, path = TinyFCN(), tmp_path / "ckpt.pt"
    save_checkpoint(path, model=model, epoch=1, step=6, config=tiny_config(), history=[])
    before = path.read_bytes()

    def failing_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, model=model, epoch=2, step=12, config=tiny_config(), history=[])
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temporary file left behind


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_saved_files_get_the_mode_a_plain_open_gives(tmp_path, umask, mode):
    from fcnlib.checkpoint import write_metrics

    old = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "c.pt", model=TinyFCN(), epoch=1, step=6, config=tiny_config(),
                        history=[])  # fmt: skip
        write_metrics(tmp_path / "c.metrics.jsonl", [{"epoch": 1}])
    finally:
        os.umask(old)
    for name in ("c.pt", "c.metrics.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name  # was 0o600


def test_a_full_disk_mid_save_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    model, path = TinyFCN(), tmp_path / "ckpt.pt"
    save_checkpoint(path, model=model, epoch=1, step=6, config=tiny_config(), history=[])
    before = path.read_bytes()

    def full_disk(obj, f, *args, **kwargs):  # what torch.save raises when a write fails
        f.write(b"PK\x03\x04 half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", full_disk)
    message = (
        rf"could not write {re.escape(str(path))} \(RuntimeError: \[enforce fail at "
        rf"inline_container.*so {re.escape(str(path))} still holds its previous version\. A full "
        r"disk is the usual cause: free space on the disk of .*, then try again"
    )
    with pytest.raises(OSError, match=message):
        save_checkpoint(path, model=model, epoch=2, step=12, config=tiny_config(), history=[])
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ckpt.pt"]
    with pytest.raises(OSError, match=r"new\.pt \(RuntimeError: .* so .*new\.pt was not created"):
        save_checkpoint(tmp_path / "new.pt", model=model, epoch=1, step=6, config=tiny_config(),
                        history=[])  # fmt: skip


def test_a_file_size_limit_mid_save_is_an_os_error_naming_the_file(tmp_path):
    pytest.importorskip("resource")  # POSIX: a file size limit (ulimit -f)
    script = """
import resource, signal, sys
import torch
from torch import nn
from fcnlib.train import recipe, save_checkpoint

path = sys.argv[1]
save_checkpoint(path, model=nn.Linear(2, 2), epoch=1, step=1, config=recipe("fast"), history=[])
before = open(path, "rb").read()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel stops the process at the limit
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
try:
    save_checkpoint(path, model=nn.Linear(512, 512), epoch=2, step=2, config=recipe("fast"),
                    history=[])
except OSError as e:
    assert open(path, "rb").read() == before, "the previous checkpoint changed"
    print(e)
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    path = tmp_path / "c.pt"
    done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                          text=True, env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"could not write {path} (" in done.stdout
    assert "still holds its previous version" in done.stdout
    assert "The file size limit was reached: raise it (ulimit -f)" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temporary file left


def test_checkpoint_loads_weights_only_and_errors_are_clear(tmp_path):
    model, path = TinyFCN(), tmp_path / "ckpt.pt"
    opt = make_optimizer(model, tiny_config())
    history = History([{"epoch": 1, "loss": 1.5, "iu": [0.5, math.nan]}])
    save_checkpoint(
        path,
        model=model,
        optimizer=opt,
        epoch=1,
        step=6,
        config=tiny_config(),
        history=history,
        extra={"note": "lab bench"},
    )
    raw = torch.load(path, weights_only=True)  # no pickled classes inside
    assert raw["config"] == tiny_config().to_dict() and raw["extra"] == {"note": "lab bench"}

    fresh = TinyFCN()
    state = load_checkpoint(path, model=fresh, optimizer=make_optimizer(fresh, tiny_config()))
    assert all(
        torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters(), strict=True)
    )
    assert (state["epoch"], state["step"], state["history"][0]["loss"]) == (1, 6, 1.5)

    with pytest.raises(FileNotFoundError, match=r"no checkpoint at .*missing\.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    whole = path.read_bytes()
    for cut in (1000, 5000, len(whole) // 2):  # a truncated write (at 5000 bytes torch raises
        # a bare OSError, errno 22, with no file name)
        path.write_bytes(whole[:cut])
        with pytest.raises(RuntimeError, match=rf"{path.name} is corrupt.*delete it"):
            load_checkpoint(path)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(RuntimeError, match="not an fcnlib checkpoint"):
        load_checkpoint(tmp_path / "weights.pt")
    save_checkpoint(path, model=model, epoch=1, step=6, config=tiny_config(), history=[])
    other = nn.Module()
    other.bn = nn.BatchNorm2d(3)
    with pytest.raises(
        RuntimeError, match=r"missing keys \['bn.bias'.*unexpected keys \['bn1.bias'"
    ):
        load_checkpoint(path, model=other)


# ----------------------------------------------------------------------------- device options


def test_amp_choices():
    assert resolve_amp("cpu", "off") is None and resolve_amp("cuda", "off") is None
    assert resolve_amp("cpu", "fp16") is torch.float16
    assert resolve_amp("mps", "auto") is None
    assert make_grad_scaler("cpu", "bf16") is None  # only fp16 needs loss scaling
    with pytest.raises(ValueError, match="amp must be one of"):
        resolve_amp("cpu", "half")


@pytest.fixture
def fake_cuda(monkeypatch):
    """A CUDA GPU of the given compute capability, on a machine without one.

    ``is_bf16_supported`` says True, as it does on a T4 (it counts emulation), so a rule that
    still asked it would pick bf16. Returns the list of device indices the capability was
    asked for.
    """
    asked, capability = [], [(7, 5)]

    def get_device_capability(device=None):
        asked.append(device)
        return capability[0]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", get_device_capability)

    def set_capability(major_minor):
        capability[0] = major_minor
        asked.clear()
        return asked

    return set_capability


def test_auto_amp_on_a_t4_is_fp16_with_a_grad_scaler(fake_cuda):
    fake_cuda((7, 5))  # Tesla T4: emulates bf16, its tensor cores do fp16
    assert resolve_amp("cuda", "auto") is torch.float16
    assert isinstance(make_grad_scaler("cuda", "auto"), torch.amp.GradScaler)
    assert resolve_amp("cuda", "bf16") is torch.bfloat16  # forced stays forced


@pytest.mark.parametrize("capability", [(8, 0), (8, 6), (9, 0)])
def test_auto_amp_on_ampere_and_later_is_bf16_without_scaler(fake_cuda, capability):
    fake_cuda(capability)
    assert resolve_amp("cuda", "auto") is torch.bfloat16
    assert make_grad_scaler("cuda", "auto") is None


def test_auto_amp_asks_the_capability_of_the_given_device(fake_cuda):
    asked = fake_cuda((8, 0))
    assert resolve_amp("cuda:1", "auto") is torch.bfloat16 and asked == [1]
    asked = fake_cuda((7, 5))
    assert resolve_amp(torch.device("cuda", 1), "auto") is torch.float16 and asked == [1]
    asked = fake_cuda((8, 0))
    resolve_amp("cuda", "auto")
    assert asked == [None]  # no index: the current device


def test_cpu_auto_is_float32_unless_fcn_cpu_bf16_asks_for_bf16(monkeypatch):
    # float32 on every CPU, AMX or not: bf16 autocast was slower there for the course's nets,
    # and a result must not depend on which CPU runs it
    monkeypatch.delenv("FCN_CPU_BF16", raising=False)
    assert resolve_amp("cpu", "auto") is None
    monkeypatch.setenv("FCN_CPU_BF16", "")
    assert resolve_amp("cpu", "auto") is None
    monkeypatch.setenv("FCN_CPU_BF16", "0")
    assert resolve_amp("cpu", "auto") is None
    assert resolve_amp("cpu", "bf16") is torch.bfloat16  # forced stays forced
    monkeypatch.setenv("FCN_CPU_BF16", "1")
    assert resolve_amp("cpu", "auto") is torch.bfloat16  # make test-bf16's run of Chapter 6
    assert make_grad_scaler("cpu", "auto") is None
    assert resolve_amp("cpu", "off") is None  # only "auto" is affected
    assert resolve_amp("cpu", "fp16") is torch.float16
    assert resolve_amp("mps", "auto") is None

    monkeypatch.setenv("FCN_CPU_BF16", "yes")
    with pytest.raises(ValueError, match=r"FCN_CPU_BF16 must be '1'.*'0'.*got 'yes'"):
        resolve_amp("cpu", "auto")
    assert resolve_amp("cpu", "off") is None  # a bad value only matters to "auto"


@pytest.mark.parametrize("progress", [False, True, "iterator"])
def test_one_epochs_loss_is_the_mean_of_its_steps_losses(scenes, progress):
    # lr 1e-30 leaves the float32 weights as they are, so each step's loss can be recomputed; the
    # loader is a DataLoader (with and without its own bar) or a plain iterator (no length)
    (images, labels), _ = scenes
    torch.manual_seed(0)
    model, config = TinyFCN(), tiny_config(lr=1e-30, weight_decay=0.0)
    loader = DataLoader(TensorDataset(images[:24], labels[:24]), batch_size=8)
    batches = iter(list(loader)) if progress == "iterator" else loader
    opt = make_optimizer(model, config)
    stats = train_one_epoch(model, batches, opt, config=config, device="cpu",
                            progress=progress is True)  # fmt: skip
    model.train()
    with torch.no_grad():
        expected = [segmentation_loss(model(x), y).item() for x, y in loader]
    assert stats["steps"] == 3 and stats["first_loss"] == pytest.approx(expected[0], rel=1e-5)
    assert stats["loss"] == pytest.approx(sum(expected) / 3, rel=1e-5)


def test_bf16_autocast_step_on_cpu(scenes):
    # Asked for explicitly, bf16 autocast runs on any CPU ("auto" keeps float32 there).
    (images, labels), _ = scenes
    model, seen = TinyFCN(), []
    model.score.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    config = tiny_config(amp="bf16")
    loader = DataLoader(TensorDataset(images[:8], labels[:8]), batch_size=8)
    opt = make_optimizer(model, config)
    stats = train_one_epoch(model, loader, opt, config=config, device="cpu", progress=False)
    assert seen == [torch.bfloat16] and math.isfinite(stats["loss"]) and stats["steps"] == 1
    assert model.conv1.weight.dtype == torch.float32  # autocast leaves the weights in fp32


def test_fit_and_evaluate_score_alike_in_the_precision_auto_picks(scenes, monkeypatch):
    # Chapter 6's rule, on the path a GPU takes (FCN_CPU_BF16=1 makes "auto" bf16 here): fit's
    # own validation and a later evaluate() with the run's amp and memory layout agree exactly.
    monkeypatch.setenv("FCN_CPU_BF16", "1")
    (images, labels), val = scenes
    model, seen = TinyFCN(), []
    config = tiny_config(amp="auto", channels_last=True, epochs=2)
    history = fit(model, (images[:16], labels[:16]), val, config=config, n_classes=N_CLASSES,
                  device="cpu", progress=False)  # fmt: skip
    model.score.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    again = evaluate(model, DataLoader(TensorDataset(*val), batch_size=8),
                     n_classes=N_CLASSES, amp=config.amp, channels_last=True)  # fmt: skip
    assert set(seen) == {torch.bfloat16}  # the bf16 path was taken
    assert abs(again.mean_iu - history[-1]["mean_iu"]) < 1e-6


def test_channels_last_runs(scenes):
    (images, labels), val = scenes
    model = TinyFCN()
    history = fit(
        model,
        (images[:16], labels[:16]),
        val,
        config=tiny_config(channels_last=True, epochs=2),
        n_classes=N_CLASSES,
        device="cpu",
        eval_every=2,
        progress=False,
    )
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    mean_iu = history.as_columns()["mean_iu"]
    assert math.isnan(mean_iu[0]) and 0 <= mean_iu[1] <= 1  # evaluated every second epoch


def test_grad_clip_bounds_the_norm_of_every_steps_gradient(scenes):
    (images, labels), _ = scenes
    loader = DataLoader(TensorDataset(images[:16], labels[:16]), batch_size=8)
    norms = {}
    for clip in (None, 1e-3):
        torch.manual_seed(0)
        model, config = TinyFCN(), tiny_config(grad_clip=clip, epochs=1)
        optimizer, seen = make_optimizer(model, config), []
        step = optimizer.step

        def record(*args, step=step, optimizer=optimizer, seen=seen, **kwargs):
            grads = [
                p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None
            ]
            seen.append(float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))))
            return step(*args, **kwargs)

        optimizer.step = record
        train_one_epoch(model, loader, optimizer, config=config, device="cpu", progress=False)
        norms[clip] = seen
    assert len(norms[None]) == len(norms[1e-3]) == 2
    assert min(norms[None]) > 1e-2  # unclipped, the gradients are far larger ...
    assert max(norms[1e-3]) <= 1e-3 * (1 + 1e-5)  # ... and clipped, each step's is at the bound
    assert min(norms[1e-3]) > 1e-3 * (1 - 1e-5)


def test_fp16_with_grad_scaler_and_clipping_runs(scenes, tmp_path):
    (images, labels), _ = scenes
    model, config = TinyFCN(), tiny_config(amp="fp16", grad_clip=1.0, epochs=1)
    history = fit(
        model,
        (images[:16], labels[:16]),
        config=config,
        n_classes=N_CLASSES,
        device="cpu",
        checkpoint=tmp_path / "fp16.pt",
        progress=False,
    )
    assert math.isfinite(history[-1]["loss"])
    assert load_checkpoint(tmp_path / "fp16.pt")["scaler"]["scale"] > 0  # the scaler is saved


def test_fit_says_what_data_it_expects():
    images, labels = torch.rand(4, 3, 8, 8), torch.zeros(4, 8, 8, dtype=torch.int64)
    run = dict(config=tiny_config(), n_classes=2, device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"same N, got tensors of shapes \[\(4, 3, 8, 8\), \(3, 8"):
        fit(nn.Conv2d(3, 2, 1), (images, labels[:3]), **run)
    with pytest.raises(TypeError, match="must be a Dataset or a pair"):
        fit(nn.Conv2d(3, 2, 1), [images.numpy(), labels.numpy()], **run)


def test_cudnn_autotuning_is_a_switch_used_on_cuda_only(monkeypatch):
    model = nn.Conv2d(3, 2, 1)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    prepare_model(model, config=recipe("fast"), device=torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False  # CPU runs leave cuDNN alone
    if torch.cuda.is_available():
        prepare_model(model, config=recipe("fast"), device=torch.device("cuda"))
        assert torch.backends.cudnn.benchmark is True
        prepare_model(model, config=recipe("fast", cudnn_benchmark=False), device="cuda")
        assert torch.backends.cudnn.benchmark is False
    restored = TrainConfig.from_dict({k: v for k, v in recipe("fast").to_dict().items()
                                      if k != "cudnn_benchmark"})  # fmt: skip
    assert restored.cudnn_benchmark is True  # checkpoints from before the switch still load


# ----------------------------------------------------------------------------- stage recipes


def test_stage_recipe_follows_the_official_stages_and_the_paper_backbones():
    from fcnlib.train import PAPER_LR, stage_recipe

    heavy = [stage_recipe("heavy", stride=s, staged=s < 32).lr for s in (32, 16, 8)]
    assert heavy == pytest.approx([1e-10, 1e-12, 1e-14])  # voc-fcn32s/16s/8s solvers
    for backbone, lr in PAPER_LR.items():
        assert stage_recipe("paper", backbone=backbone).lr == lr
    assert stage_recipe("paper", backbone="tiny_vgg").lr == recipe("paper").lr
    assert stage_recipe("fast", stride=8, staged=True).lr == pytest.approx(recipe("fast").lr / 9)
    assert stage_recipe("fast", backbone="tiny_vgg").lr == recipe("fast").lr
    imagenet = stage_recipe("fast", backbone="vgg16", stride=16, staged=True)
    assert imagenet.lr == pytest.approx(1e-4 / 3) and imagenet.batch_size == 8
    # trained at once from the backbone: no stage, no lowering
    assert stage_recipe("heavy", stride=8).lr == 1e-10
    config = stage_recipe("heavy", stride=16, staged=True, whole_images=True, lr=3e-11)
    assert config.lr == 3e-11 and config.eval_batch_size == 1 and config.momentum == 0.99
    with pytest.raises(ValueError, match="stride"):
        stage_recipe("fast", stride=2)
    with pytest.raises(ValueError, match="eval_batch_size"):
        recipe("fast", eval_batch_size=0)


def test_the_paper_lr_table_names_exactly_the_imagenet_backbones():
    """recipes tells ImageNet backbones from the lab's by PAPER_LR alone (no model code)."""
    from fcnlib.backbones import BACKBONES
    from fcnlib.recipes import PAPER_LR

    assert set(PAPER_LR) == {name for name, spec in BACKBONES.items() if not spec.lab}


class _Sizes(torch.utils.data.Dataset):
    """Images of two sizes, as whole VOC images."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        h, w = (12, 16) if i % 2 else (16, 12)
        return torch.rand(3, h, w), torch.randint(0, 2, (h, w))


def test_whole_images_of_different_sizes_evaluate_one_at_a_time():
    model = nn.Conv2d(3, 2, 1)
    config = recipe("fast", epochs=1, batch_size=2)
    data = (torch.rand(4, 3, 8, 8), torch.randint(0, 2, (4, 8, 8)))
    with pytest.raises(ValueError, match="eval_batch_size=1"):
        fit(model, data, _Sizes(), config=config, n_classes=2, progress=False)
    history = fit(model, data, _Sizes(), config=config.replace(eval_batch_size=1), n_classes=2,
                  progress=False)  # fmt: skip
    assert 0 <= history[-1]["mean_iu"] <= 1


def test_a_model_left_on_another_device_is_named_not_crashed_into():
    # a net on the "meta" device stands in for one left on the CPU while the data go to CUDA
    net = nn.Conv2d(3, 2, 1, device="meta")
    batches = [(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))]
    with pytest.raises(ValueError, match=r"weights are on meta but the data goes to cpu.*\.to\("):
        evaluate(net, batches, n_classes=2, device="cpu")
    optimizer = torch.optim.SGD(nn.Conv2d(3, 2, 1).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="weights are on meta"):
        train_one_epoch(net, batches, optimizer, config=TrainConfig(), device="cpu", progress=False)


def test_fit_refuses_zero_epochs_before_any_work(tmp_path):
    data = (torch.rand(2, 3, 8, 8), torch.randint(0, 2, (2, 8, 8)))
    with pytest.raises(ValueError, match=r"config\.epochs must be >= 1.*evaluate"):
        fit(TinyFCN(), data, config=tiny_config(epochs=0), n_classes=N_CLASSES,
            checkpoint=tmp_path / "c.pt", progress=False)  # fmt: skip
    assert not (tmp_path / "c.pt").exists()


def test_non_checkpoint_files_name_the_path_and_what_was_expected(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello, these are my notes\n")  # torch.load alone: KeyError: 101
    with pytest.raises(
        RuntimeError, match=r"notes\.txt is not an fcnlib checkpoint.*fcnlib's train"
    ):
        load_checkpoint(notes)
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))  # torch.load: "drop weights_only"
    with pytest.raises(RuntimeError, match="not a PyTorch save at all") as info:
        load_checkpoint(image)
    assert "weights_only" not in str(info.value)  # no advice to load untrusted pickles
    torch.save(nn.Linear(2, 2), tmp_path / "whole_model.pt")  # pickled classes
    with pytest.raises(
        RuntimeError, match=r"whole_model\.pt is not an fcnlib checkpoint.*torch\.save\(model\)"
    ):
        load_checkpoint(tmp_path / "whole_model.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"empty\.pt is not an fcnlib checkpoint"):
        load_checkpoint(tmp_path / "empty.pt")
