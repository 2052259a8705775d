"""``import fcnlib`` stays light: submodules and re-exported names load on first use (PEP 562).

Each check runs in a fresh interpreter, since this one has long imported everything. Wall times
are not asserted (they depend on the machine); the modules loaded are.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fcnlib

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("matplotlib", "torchvision")

# Prints, as the last line, the heavy modules loaded so far.
_REPORT = (
    "import json, sys; "
    f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {set(HEAVY)!r})))"
)


def _run(code: str) -> str:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _heavy_modules(stdout: str) -> list[str]:
    return json.loads(stdout.strip().splitlines()[-1])


def test_import_fcnlib_loads_neither_matplotlib_nor_torchvision():
    out = _run(f"import fcnlib, sys; assert fcnlib.__file__.startswith({str(ROOT)!r}); {_REPORT}")
    assert _heavy_modules(out) == []


def test_cli_parser_and_help_load_neither_matplotlib_nor_torchvision():
    code = (
        "import fcnlib.cli\n"
        "fcnlib.cli.build_parser()\n"
        "try:\n"
        "    fcnlib.cli.main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "try:\n"
        "    fcnlib.cli.main(['train', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        f"{_REPORT}\n"
    )
    out = _run(code)
    assert "COMMAND" in out and "--checkpoint" in out  # the two help texts were printed
    assert _heavy_modules(out) == []


def test_every_public_name_resolves_in_a_fresh_interpreter():
    code = (
        "import json, types, fcnlib\n"
        "from fcnlib import *\n"
        "from fcnlib import fcn8s, viz\n"
        "kinds = {n: type(getattr(fcnlib, n)).__name__ for n in fcnlib.__all__}\n"
        "same = all(getattr(fcnlib, n) is globals()[n] for n in fcnlib.__all__)\n"
        "print(json.dumps({'kinds': kinds, 'same': same, 'dir': dir(fcnlib)}))\n"
    )
    result = json.loads(_run(code).strip().splitlines()[-1])
    assert sorted(result["kinds"]) == sorted(fcnlib.__all__)
    assert result["same"]
    assert set(fcnlib.__all__) <= set(result["dir"])
    for name in ("viz", "models", "data"):
        assert result["kinds"][name] == "module"
    assert result["kinds"]["fcn8s"] == "function"


def test_lazy_names_are_the_modules_objects():
    from fcnlib import config, metrics, models

    assert fcnlib.fcn8s is models.fcn8s
    assert fcnlib.Scores is metrics.Scores
    assert fcnlib.seed_everything is config.seed_everything
    assert fcnlib.infer.__name__ == "fcnlib.infer"  # a public module outside __all__, as before
    assert set(fcnlib.__all__) <= set(dir(fcnlib))
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = fcnlib.no_such_name
