"""`make lab` opens the chapters as learners should see them: the chapters' MyST rendered by
jupyterlab-myst, and nothing of nbgrader (its menus, sidebar and server extensions are for
instructors, who use `make lab-instructor`). The Makefile points JUPYTER_CONFIG_PATH at
book/lab-config, whose settings take precedence over those of the environment."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "book" / "lab-config"
JUPYTER = [sys.executable, "-m", "jupyter"]


def _jupyter(*args: str, config: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "JUPYTER_CONFIG_PATH"}
    if config:
        env["JUPYTER_CONFIG_PATH"] = str(CONFIG)
    done = subprocess.run([*JUPYTER, *args], capture_output=True, text=True, env=env, timeout=120)
    return re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)  # no colour codes


def test_make_lab_uses_the_learners_config_and_lab_instructor_does_not():
    makefile = (ROOT / "Makefile").read_text()
    lab = makefile.split("\nlab: ", 1)[1].split("\n\n", 1)[0]
    instructor = makefile.split("\nlab-instructor: ", 1)[1].split("\n\n", 1)[0]
    assert "JUPYTER_CONFIG_PATH=$(CURDIR)/book/lab-config" in lab
    assert "JUPYTER_CONFIG_PATH" not in instructor


@pytest.mark.slow
def test_the_learners_lab_hides_nbgrader_and_renders_myst():
    listed = _jupyter("labextension", "list", config=True)
    assert re.search(r"@jupyter/nbgrader \S+ disabled", listed), listed
    assert re.search(r"jupyterlab-myst \S+ enabled OK", listed), listed
    assert "not compatible" not in listed, listed
    # the instructors' lab keeps nbgrader
    assert re.search(
        r"@jupyter/nbgrader \S+ enabled", _jupyter("labextension", "list", config=False)
    )


def test_every_nbgrader_server_extension_is_switched_off():
    enabled = {
        name
        for path in Path(sys.prefix, "etc", "jupyter", "jupyter_server_config.d").glob("*.json")
        for name, on in json.loads(path.read_text())["ServerApp"]["jpserver_extensions"].items()
        if on and name.startswith("nbgrader")
    }
    assert enabled, "nbgrader (a requirement) installs its server extensions in this environment"
    off = json.loads((CONFIG / "jupyter_server_config.json").read_text())["ServerApp"]
    assert {n for n, on in off["jpserver_extensions"].items() if not on} >= enabled
