"""An attempt's scratch folder: its own, gone when the attempt leaves it however it leaves, and a killed attempt's
folders of the same prefix (taken literally) cleared first, no other."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.scratch import work_folder


def folders(parent: Path) -> set[str]:
    return {path.name for path in parent.iterdir()}


def test_a_new_folder_under_the_parent_is_removed_on_leaving(tmp_path: Path) -> None:
    with work_folder(tmp_path, "job1.") as folder:
        assert folder.parent == tmp_path and folder.is_dir() and folder.name.startswith("job1.")
        (folder / "nested").mkdir()
        (folder / "nested" / "input").write_bytes(b"video")
    assert folders(tmp_path) == set()


def test_two_attempts_get_folders_of_their_own(tmp_path: Path) -> None:
    with work_folder(tmp_path, "job1.") as first, work_folder(tmp_path, "job1.") as second:
        assert first != second
    assert folders(tmp_path) == set()


def test_the_folder_is_removed_when_the_attempt_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="ffmpeg died"), work_folder(tmp_path, "job1.") as folder:
        (folder / "input").write_bytes(b"video")
        raise RuntimeError("ffmpeg died")
    assert folders(tmp_path) == set()


def test_clear_stale_removes_the_same_prefix_only(tmp_path: Path) -> None:
    for name in ("job1.killed", "job1.other-killed", "job10.live", "job2.live", "unrelated"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "input").write_bytes(b"left behind")
    with work_folder(tmp_path, "job1.", clear_stale=True) as folder:
        assert folders(tmp_path) == {"job10.live", "job2.live", "unrelated", folder.name}
    assert folders(tmp_path) == {"job10.live", "job2.live", "unrelated"}


def test_without_clear_stale_earlier_folders_stay(tmp_path: Path) -> None:
    (tmp_path / "job1.killed").mkdir()
    with work_folder(tmp_path, "job1."):
        pass
    assert folders(tmp_path) == {"job1.killed"}


def test_a_prefix_with_glob_characters_is_taken_literally(tmp_path: Path) -> None:
    prefix = "a[b]?*."
    # Each of these matches the prefix read as a glob pattern (`a`, `b`, any character, anything, `.`).
    lookalikes = {"abc.x", "abXYZ.y", "ab!.z"}
    for name in (*lookalikes, f"{prefix}killed"):
        (tmp_path / name).mkdir()
    with work_folder(tmp_path, prefix, clear_stale=True) as folder:
        assert folder.name.startswith(prefix)
        assert folders(tmp_path) == {*lookalikes, folder.name}
    assert folders(tmp_path) == lookalikes


def test_what_a_killed_process_left_is_cleared_once_per_process(tmp_path: Path) -> None:
    """At a function's start (its module loaded); loaded again in the same process (a test's app per request), it
    leaves the folders of its own running uploads alone."""
    from storage.scratch import clear_left_behind

    for name in ("upload.a.1", "upload.b.2", "x.convert.3"):
        (tmp_path / name).mkdir()
    assert clear_left_behind(tmp_path, "upload.") == 2
    assert folders(tmp_path) == {"x.convert.3"}
    (tmp_path / "upload.c.running").mkdir()
    assert clear_left_behind(tmp_path, "upload.") == 0
    assert folders(tmp_path) == {"x.convert.3", "upload.c.running"}


def test_the_scratch_budget_refuses_past_its_limit_and_gives_back_on_leaving() -> None:
    from storage.scratch import ScratchBudget, ScratchFull

    budget = ScratchBudget(100)
    with budget.held() as first:
        first.at_least(60)
        first.at_least(40)  # already held: nothing more taken
        assert budget.used == 60
        with budget.held() as second:
            second.take(40)
            with pytest.raises(ScratchFull):
                second.take(1)
            assert budget.used == 100
        assert budget.used == 60
        with pytest.raises(ScratchFull), budget.held() as third:
            third.take(41)
    assert budget.used == 0
