"""nbval runs every chapter as a test; this adds one check to each cell it runs: the text the cell
prints fits the book's column, so the rendered page shows it without a scroll bar.

Measured in the built book (sphinx-book-theme, 14 px monospace) in a 1280-pixel-wide window, the
narrowest in which both sidebars stay open: a cell's output holds 76 characters, and 104 in a cell
tagged ``full-width`` (which also takes the right margin). Wider windows hold more.
"""

import pytest

COLUMN = 76
FULL_WIDTH = 104
RICH = {"image/png", "image/svg+xml", "text/html", "application/vnd.jupyter.widget-view+json"}


def _printed_text(output: dict) -> str:
    """What the book shows as plain text for one output: a stream, or a text/plain
    representation that nothing richer replaces."""
    if output.get("output_type") == "stream":
        # warnings on stderr: the book leaves them out (stderr_output: remove-warn)
        return output.get("text", "") if output.get("name") != "stderr" else ""
    data = output.get("data", {})
    if "text/plain" in data and not RICH & set(data):
        text = data["text/plain"]
        return "".join(text) if isinstance(text, list) else text
    return ""


def too_wide(outputs: list[dict], limit: int, source: str = "") -> list[str]:
    """The printed lines of ``outputs`` longer than ``limit`` characters. A cell ``source``
    whose last expression ends in ";" shows no result in the book: nbval runs cells outside
    IPython's history, which is where IPython looks for that ";", so nbval still gets one."""
    from IPython.core.displayhook import DisplayHook

    quiet = bool(source) and DisplayHook.semicolon_at_end_of_expression(source)
    lines = []
    for output in outputs:
        if quiet and output.get("output_type") == "execute_result":
            continue
        for line in _printed_text(output).replace("\r", "\n").split("\n"):
            if len(line) > limit:
                lines.append(line)
    return lines


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield  # a failing cell fails here, before this check
    outputs = getattr(item, "test_outputs", None)  # set by nbval for each notebook cell
    cell = getattr(item, "cell", None)
    if outputs is not None and cell is not None:
        full = "full-width" in cell.get("metadata", {}).get("tags", [])
        limit = FULL_WIDTH if full else COLUMN
        wide = too_wide(outputs, limit, cell.get("source", ""))
        if wide:
            longest = max(wide, key=len)
            raise AssertionError(
                f"this cell prints {len(wide)} line(s) wider than the book's column "
                f"({limit} characters{' in a full-width cell' if full else ''}), the longest "
                f"{len(longest)}: {longest!r}. Break the line, print a table with narrower "
                "columns (fcnlib.metrics.scores_table), or tag the cell full-width (104)."
            )
    return result


@pytest.fixture(scope="session")
def scored_lab_net():
    """A factory of lab FCNs (tiny_vgg, the lab's classes) whose score layers are random rather
    than zero, so that every skip counts: ``scored_lab_net(stride)``, seeded by the stride."""

    def build(stride: int):
        import torch

        from fcnlib.data import CLASSES
        from fcnlib.models import fcn

        torch.manual_seed(stride)
        net = fcn("tiny_vgg", n_classes=len(CLASSES), stride=stride, pretrained=True).eval()
        with torch.no_grad():
            for name, layer in net.named_children():
                if name.startswith("score_"):
                    layer.weight.normal_(0, 0.05)
        return net

    return build


@pytest.fixture(scope="session")
def driver():
    """Headless Chromium (tests/_browser.py), one for the whole run; skipped without it."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "tests"))
    import _browser

    if _browser.missing():
        pytest.skip(f"needs headless Chromium: {', '.join(_browser.missing())} not found")
    chrome = _browser.chrome()
    yield chrome
    chrome.quit()
