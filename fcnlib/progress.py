"""Progress bars that move per batch wherever the code runs, with nothing loaded from the web.

:func:`progress_bar` is tqdm. In a terminal it is tqdm's own text bar. In a Jupyter kernel
(JupyterLab, Colab, VS Code, and the kernel that executes the chapters for the book) the same
text line is shown as one output that is replaced in place, at most once a second, through
IPython's display handles: no widget, no JavaScript, so it moves in every front end, and the
notebook that the book renders keeps the bar's last state (``100%|... 512/512 [01:10, ...]``),
not an empty widget placeholder.

>>> bar = progress_bar(total=3, desc="demo", disable=True)
>>> for _ in range(3):
...     bar.update()
>>> bar.close()
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.std import tqdm

# the book's text column at a 1280-pixel-wide window (76 characters); the bar shrinks
# to leave room for the numbers
WIDTH = 76
# tqdm's layout without the rate, which the elapsed and remaining times already tell
LAYOUT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


def in_notebook() -> bool:
    """True inside a Jupyter kernel (not in a terminal IPython or a plain interpreter)."""
    shell = sys.modules.get("IPython")
    if shell is None:  # IPython was never imported: not a kernel
        return False
    ip = shell.get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


class _DisplayLine:
    """A file for tqdm whose every status line replaces one IPython display output."""

    encoding = "utf-8"  # tqdm then draws the bar with Unicode blocks, not "#"

    def __init__(self) -> None:
        self._handle = None
        self._buffer = ""
        self._shown = ""

    def write(self, text: str) -> int:
        self._buffer += text
        return len(text)

    def flush(self) -> None:
        # tqdm writes "\r<status>" (and a final "\n" when the bar is left): keep the last status
        line = self._buffer.replace("\n", "\r").split("\r")
        self._buffer = ""
        status = next((s.rstrip() for s in reversed(line) if s.strip()), "")
        if not status or status == self._shown:
            return
        from IPython.display import display

        data = {"text/plain": status}
        if self._handle is None:
            self._handle = display(data, raw=True, display_id=True)
        else:
            self._handle.update(data, raw=True)
        self._shown = status


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    """tqdm's bar over ``iterable`` (or with ``total=`` and ``update()``), shown as one line
    replaced in place in a notebook and as tqdm's text bar in a terminal. Keyword arguments are
    tqdm's (``desc``, ``total``, ``unit``, ``disable``, ``leave`` ...)."""
    if in_notebook() and "file" not in kwargs:
        shown = {"file": _DisplayLine(), "mininterval": 1.0, "ncols": WIDTH, "bar_format": LAYOUT}
        kwargs = shown | kwargs
    return tqdm(iterable, **kwargs)
