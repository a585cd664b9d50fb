"""Atomic single-file writes and content digests."""

import pytest

from mlkd_cli.fsutil import atomic_path, path_digest


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "m.jsonl.gz"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.name.endswith(".jsonl.gz")
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl.gz"]


def test_path_digest_tracks_content(tmp_path):
    (tmp_path / "text").write_text("u1 hello\n")
    d1 = path_digest(tmp_path)
    (tmp_path / "text").write_text("u1 hullo\n")
    assert path_digest(tmp_path) != d1
