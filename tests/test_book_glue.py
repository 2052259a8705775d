"""fcnlib.book.glue: numbers reach the prose through myst-nb; nothing breaks without it."""

import builtins
import sys
import types

from fcnlib.book import glue


def test_glue_returns_the_value_outside_a_notebook():
    assert glue("x", 1.5) == 1.5


def test_glue_hands_the_value_to_myst_nb_in_a_kernel(monkeypatch):
    calls = []
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display=True: calls.append((name, value, display))
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: object()  # inside a kernel
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    assert glue("speedup", 3.25) == 3.25
    import torch

    glue("iu", torch.tensor(0.5, dtype=torch.float64))
    assert calls == [("speedup", 3.25, False), ("iu", 0.5, False)]
    assert type(calls[1][1]) is float


def test_glue_is_a_no_op_without_myst_nb(monkeypatch):
    real_import = builtins.__import__

    def no_myst(name, *args, **kwargs):
        if name == "myst_nb":
            raise ImportError("No module named 'myst_nb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_myst)
    assert glue("x", "text") == "text"
