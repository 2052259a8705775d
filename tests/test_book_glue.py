"""fcnlib.book.glue: numbers reach the prose through myst-nb; nothing breaks without it."""

import builtins
import sys
import types

import pytest

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


def test_results_ledger_keeps_one_row_per_net_and_refuses_a_damaged_file(tmp_path, monkeypatch):
    import torch

    from fcnlib.book import LAB_VALIDATION, record_result, recorded_results, results_path
    from fcnlib.metrics import ConfusionMatrix

    monkeypatch.setenv("FCN_RESULTS", str(tmp_path / "ledger.json"))
    assert results_path() == tmp_path / "ledger.json" and recorded_results() == {}
    target = torch.tensor([[0, 1], [1, 1]])
    first = ConfusionMatrix(2).update(torch.zeros_like(target), target).compute()
    better = ConfusionMatrix(2).update(target, target).compute()
    record_result("FCN-32s", first, chapter=2, seconds_per_image=0.01)
    record_result("patchwise", first, chapter=1)
    record_result("FCN-32s", better, chapter=5)  # a re-run replaces its row
    ledger = recorded_results()
    assert set(ledger) == {"FCN-32s", "patchwise"}
    assert ledger["FCN-32s"]["chapter"] == 5 and ledger["FCN-32s"]["mean_iu"] == 1.0
    assert ledger["patchwise"]["mean_iu"] == first.mean_iu
    assert ledger["patchwise"]["iu"] == first.iu.tolist()
    assert ledger["patchwise"]["scenes"] == LAB_VALIDATION
    (tmp_path / "ledger.json").write_text("{not json")
    with pytest.raises(ValueError, match="delete it and re-run"):
        recorded_results()


def test_quiz_marks_numbers_and_letters_by_fingerprint(capsys):
    from fcnlib.book import answer_key, quiz

    key = answer_key("chX", {"q1": 85, "q2": "b"})
    assert "85" not in str(key) and key["q1"] != answer_key("chY", {"q1": 85})["q1"]
    assert quiz({"q1": 85.0, "q2": " B "}, key, chapter="chX") == 2  # 85.0 is 85, case ignored
    assert quiz({"q1": 84, "q2": "b"}, key, chapter="chX") == 1
    assert quiz({"q1": 85}, key, chapter="chX") == 1  # q2 unanswered
    assert capsys.readouterr().out.splitlines()[-1] == "q2: no answer yet"
    with pytest.raises(ValueError, match="not a whole number"):
        quiz({"q1": 85.5}, key, chapter="chX")
    with pytest.raises(TypeError, match="a number or a letter"):
        quiz({"q1": True}, key, chapter="chX")
    with pytest.raises(KeyError, match="no question"):
        quiz({"q9": 1}, key, chapter="chX")
