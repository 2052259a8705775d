"""Progress bars: one line replaced in place in a notebook (no widget, nothing from the web), its
last state kept in the executed notebook; tqdm's text bar in a terminal."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from fcnlib.progress import in_notebook, progress_bar

CELLS = [
    """
import time
from fcnlib.progress import progress_bar
for _ in progress_bar(range(6), desc="demo"):
    time.sleep(0.4)  # longer than the bar's 1 s between updates, in all
print("after the bar")
""",
    """
import torch
from torch import nn
from fcnlib.recipes import recipe
from fcnlib.train import fit
data = (torch.rand(32, 3, 8, 8), torch.randint(0, 2, (32, 8, 8)))
history = fit(nn.Conv2d(3, 2, 1), data, data, config=recipe("fast", epochs=3, batch_size=4),
              n_classes=2, progress="a 1x1 conv")
""",
    """
history = fit(nn.Conv2d(3, 2, 1), data, data, config=recipe("fast", epochs=2, batch_size=4),
              n_classes=2, progress=False)
""",
]


@pytest.fixture(scope="module")
def executed() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    return nb


def _displays(cell: nbformat.NotebookNode) -> list[str]:
    return [o["data"]["text/plain"] for o in cell.outputs if o["output_type"] == "display_data"]


@pytest.mark.slow
def test_a_bar_in_a_notebook_is_one_plain_text_output_left_at_its_last_state(executed):
    cell = executed.cells[0]
    assert _displays(cell) == [_displays(cell)[0]], cell.outputs  # one output, updated in place
    (line,) = _displays(cell)
    assert line.startswith("demo: 100%") and "6/6" in line, line
    assert len(line) <= 76, line  # the book's text column
    for output in cell.outputs:  # no widget (it needs JavaScript from the web) and no "\r" text
        assert set(output.get("data", {})) <= {"text/plain"}, output
    assert [o["text"] for o in cell.outputs if o["output_type"] == "stream"] == ["after the bar\n"]


def test_fit_shows_one_bar_for_the_whole_run_with_its_epoch_and_score(executed):
    (line,) = _displays(executed.cells[1])
    assert line.startswith("a 1x1 conv: 100%"), line
    assert "24/24" in line  # 3 epochs of 8 batches: the bar counts batches, not epochs
    assert "epoch=3/3" in line and "mIU=" in line, line  # the validation score
    assert not [o for o in executed.cells[1].outputs if o["output_type"] == "stream"]


def test_fit_without_progress_shows_nothing(executed):
    assert executed.cells[2].outputs == []


def test_outside_a_notebook_the_bar_is_tqdm_text_on_stderr(capsys):
    assert not in_notebook()
    for _ in progress_bar(range(3), desc="terminal", mininterval=0):
        pass
    err = capsys.readouterr().err
    assert "terminal: 100%" in err and "3/3" in err, err
