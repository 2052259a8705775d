"""What the chapters need to tie their prose to their own outputs.

A number quoted in a chapter's text is *glued* from the cell that measured it (myst-nb's
``glue``; the text cites it as ``{glue:text}`name:.1f```), so the rendered book never
contradicts its outputs. Outside the book build (Colab, JupyterLab without myst-nb) gluing is a
no-op and the cells print their numbers as usual.

>>> glue("answer", 42)
42
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["glue"]

T = TypeVar("T")


def glue(name: str, value: T) -> T:
    """Record ``value`` under ``name`` for the book's prose and return it unchanged.

    Nothing is displayed: the cell shows the number in its own printed line. A 0-d tensor or
    NumPy scalar is stored as the Python number it holds, so the text can format it. Without
    myst-nb (e.g. in Colab) this does nothing.
    """
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # not building the book: the printed output is the record
        return value
    try:
        from IPython import get_ipython
    except ImportError:
        return value
    if get_ipython() is None:  # plain Python (tests, scripts): no notebook to store it in
        return value
    plain = value.item() if getattr(value, "ndim", None) == 0 else value  # a tensor/NumPy scalar
    myst_glue(name, plain, display=False)  # stored as its repr: "0.25", not "tensor(0.2500)"
    return value
