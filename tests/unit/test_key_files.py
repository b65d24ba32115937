"""Generated secrets: created once, owner-only, and never replaced."""

import stat
import threading

from carmenta.key_files import write_once


def test_the_file_is_created_owner_only_and_never_replaced(tmp_path):
    path = tmp_path / "keys" / "secret"
    assert write_once(path, b"first") is True
    assert write_once(path, b"second") is False
    assert path.read_bytes() == b"first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [entry.name for entry in path.parent.iterdir()] == ["secret"]


def test_concurrent_writers_leave_exactly_one_winner(tmp_path):
    path = tmp_path / "keys" / "secret"
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def writer(index: int) -> None:
        barrier.wait()
        results.append(write_once(path, f"writer {index}".encode()))

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    assert path.read_bytes().startswith(b"writer ")
