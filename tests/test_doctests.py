"""The examples in fcnlib's docstrings are tests: each module's run as doctest, one case each."""

import doctest
import importlib
import pkgutil
import socket

import pytest

import fcnlib

# Every module of the package, found on disk so that a new one is tested without a list to
# keep. __main__ runs the command line when imported; it has no examples.
SUBMODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(fcnlib.__path__, prefix="fcnlib.")
    if not info.name.endswith(".__main__")
)
MODULES = ["fcnlib", *SUBMODULES]

# Outputs are compared as written, except that "..." matches anything and runs of whitespace
# are one space: shapes and long lists may wrap.
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _no_network(*args, **kwargs):
    raise AssertionError(f"a docstring example tried to reach the network: {args}")


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, monkeypatch):
    # examples must run offline: no download of weights or data
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    module = importlib.import_module(name)
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        runner.run(test, out=report.append)
    failed = "".join(report)
    assert runner.failures == 0, f"{runner.failures} of {runner.tries} examples failed:\n{failed}"
