"""What the chapters need to tie their prose to their own outputs.

A number quoted in a chapter's text is *glued* from the cell that measured it (myst-nb's
``glue``; the text cites it as ``{glue:text}`name:.1f```), so the rendered book never
contradicts its outputs. Outside the book build (Colab, JupyterLab without myst-nb) gluing is a
no-op and the cells print their numbers as usual.

>>> glue("answer", 42)
42

The chapters also keep one *results ledger*: every net a chapter trains on the lab bench and
scores on the shared validation scenes is recorded (:func:`record_result`), so that one table can
put the whole course side by side (:func:`recorded_results`). The ledger is a JSON file under
``$FCN_CACHE/results`` (``$FCN_RESULTS`` names another file); each chapter rewrites its own rows
every time it runs, and each row says which scenes it was scored on.

Each chapter ends with *quick checks*: a few questions answered with a number or a letter, which
:func:`quiz` marks at once against a key of fingerprints (so the key does not give the answers
away) and which nbgrader grades with a point per right answer.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "LAB_VALIDATION",
    "answer_key",
    "glue",
    "quiz",
    "record_result",
    "recorded_results",
    "results_path",
]

# The scenes every lab-bench result in the ledger is scored on: ShapesDataset("val", **this).
LAB_VALIDATION = {"split": "val", "size": 128, "length": 128, "seed": 0}

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


def results_path() -> Path:
    """The results ledger: ``$FCN_RESULTS``, else ``$FCN_CACHE/results/lab.json``."""
    from fcnlib.config import cache_dir

    return Path(os.environ.get("FCN_RESULTS") or cache_dir() / "results" / "lab.json")


def record_result(
    name: str,
    scores: Any,
    *,
    chapter: int,
    seconds_per_image: float | None = None,
    scenes: dict[str, Any] | None = None,
    path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write one trained net's scores to the results ledger (replacing an older row of that name).

    Args:
        name: the row's name, e.g. ``"FCN-8s"``.
        scores: :class:`fcnlib.metrics.Scores` (its four metrics and per-class IU are kept).
        chapter: the chapter that trained and scored it.
        seconds_per_image: inference time of one validation scene, if measured.
        scenes: what it was scored on (default :data:`LAB_VALIDATION`); only rows scored on the
            same scenes belong in one table.

    Returns the row as written. The file is replaced atomically.
    """
    from fcnlib._io import atomic_write_text

    row = {
        "chapter": int(chapter),
        **{k: float(v) for k, v in scores.as_dict().items()},
        "iu": [float(v) for v in scores.iu.tolist()],
        "seconds_per_image": None if seconds_per_image is None else float(seconds_per_image),
        "scenes": dict(scenes or LAB_VALIDATION),
        "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    target = Path(path) if path is not None else results_path()
    ledger = recorded_results(target)
    ledger[name] = row
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(ledger, indent=1) + "\n", target)
    return row


def recorded_results(path: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """The results ledger as ``{name: row}`` (empty if no chapter has recorded anything yet).

    >>> import tempfile, types, torch
    >>> scores = types.SimpleNamespace(as_dict=lambda: {"mean_iu": 0.5}, iu=torch.tensor([0.5]))
    >>> path = Path(tempfile.mkdtemp()) / "lab.json"
    >>> _ = record_result("demo", scores, chapter=1, path=path)
    >>> recorded_results(path)["demo"]["mean_iu"]
    0.5
    """
    target = Path(path) if path is not None else results_path()
    if not target.exists():
        return {}
    try:
        ledger = json.loads(target.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"the results ledger {target} is not valid JSON ({err}); delete it and re-run the "
            f"chapters to record their results again"
        ) from err
    if not isinstance(ledger, dict):
        raise ValueError(f"the results ledger {target} should hold a JSON object, not {ledger!r}")
    return ledger


def _normalized(question: str, answer: object) -> str:
    """A quick check's answer as the key holds it: a whole number or a word, in lower case."""
    if isinstance(answer, bool) or answer is None:
        raise TypeError(f"{question}: answer with a number or a letter, not {answer!r}")
    if isinstance(answer, (int, float)) or hasattr(answer, "item"):  # a tensor or NumPy number
        value = float(answer)
        if not value.is_integer():
            raise ValueError(
                f"{question}: {answer!r} is not a whole number; the quick checks ask for whole "
                "numbers (round as the question says)"
            )
        return str(int(value))
    if isinstance(answer, str) and answer.strip():
        return answer.strip().lower()
    raise TypeError(f"{question}: answer with a number or a letter, not {answer!r}")


def _fingerprint(chapter: str, question: str, answer: object) -> str:
    text = f"{chapter}/{question}/{_normalized(question, answer)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def answer_key(chapter: str, answers: Mapping[str, object]) -> dict[str, str]:
    """The key that :func:`quiz` checks ``answers`` against: one fingerprint per question.

    >>> answer_key("ch0", {"q1": 3})
    {'q1': '57d27b2d2ca8b00c'}
    """
    return {q: _fingerprint(chapter, q, a) for q, a in answers.items()}


def quiz(answers: Mapping[str, object], key: Mapping[str, str], *, chapter: str) -> int:
    """Mark a chapter's quick checks: print one line per question and return how many are right.

    Answers are whole numbers (``3``, ``3.0``) or letters (``"b"``, ``" B "``); an unanswered
    question (``None``) counts as not right. The number returned is what nbgrader awards when
    the call ends a graded cell (its partial credit: a point per right answer).

    >>> quiz({"q1": 3, "q2": None}, {"q1": "57d27b2d2ca8b00c", "q2": "0"}, chapter="ch0")
    q1: right
    q2: no answer yet
    1
    """
    unknown = set(answers) - set(key)
    if unknown:
        raise KeyError(f"no question {sorted(unknown)} in this chapter; it has {sorted(key)}")
    right = 0
    for question in key:
        answer = answers.get(question)
        if answer is None:
            print(f"{question}: no answer yet")
        elif _fingerprint(chapter, question, answer) == key[question]:
            right += 1
            print(f"{question}: right")
        else:
            print(f"{question}: not right yet ({answer!r})")
    return right
