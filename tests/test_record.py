"""fcnlib.record: the lock of a run's record, on its own (fit's use of it: tests/test_runs.py)."""

import threading

import pytest

from fcnlib import record
from fcnlib.record import RecordInUseError, hold_record, lock_path


def _held_elsewhere(path, body):
    """Run ``body`` while another thread holds the lock of ``path``."""
    held, done = threading.Event(), threading.Event()

    def other():
        with hold_record(path):
            held.set()
            done.wait(30)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert held.wait(30)
        body()
    finally:
        done.set()
        thread.join()


def test_the_holder_may_enter_again_and_others_are_refused(tmp_path):
    path = tmp_path / "c.pt"
    with hold_record(path) as lock:
        assert lock.name == "c.lock" and lock.read_text().startswith('{"pid": ')
        with hold_record(tmp_path / "c"):  # the same record: c and c.pt share c.lock
            pass
        assert lock.exists()  # still held by the outer block
    assert not lock.exists()

    def refused():
        in_use = r"c\.pt is in use.*pid \d+ on host"
        with pytest.raises(RecordInUseError, match=in_use), hold_record(path):
            pass

    _held_elsewhere(path, refused)


def test_a_lock_in_a_new_folder_leaves_no_empty_folder(tmp_path):
    with hold_record(tmp_path / "runs" / "a" / "c.pt"):
        assert lock_path(tmp_path / "runs" / "a" / "c.pt").is_file()
    assert list(tmp_path.iterdir()) == []
    with hold_record(tmp_path / "runs" / "c.pt"):
        (tmp_path / "runs" / "c.pt").write_bytes(b"saved")
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["c.pt"]


def test_without_flock_the_lock_is_a_file_created_exclusively(tmp_path, monkeypatch):
    monkeypatch.setattr(record, "fcntl", None)  # as on Windows
    path = tmp_path / "c.pt"

    def refused():
        stale_advice = r"in use.*If that run is no longer running, delete .*c\.lock"
        with pytest.raises(RecordInUseError, match=stale_advice), hold_record(path):
            pass

    _held_elsewhere(path, refused)
    assert not lock_path(path).exists()
