"""The token table every reader and writer shares (mlkd_cli.contracts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlkd_cli.contracts import BLANK, read_token_table, read_tokens, write_tokens
from mlkd_cli.errors import DataError


def test_a_vocabulary_round_trips(tmp_path):
    path = tmp_path / "tokens.txt"
    write_tokens([BLANK, "<unk>", "a", "▁b"], path)
    assert path.read_text(encoding="utf-8") == "<blk> 0\n<unk> 1\na 2\n▁b 3\n"
    assert read_tokens(path, vocab_size=4) == [BLANK, "<unk>", "a", "▁b"]


def test_a_language_inventory_skips_ids_in_order(tmp_path):
    path = tmp_path / "tokens.en.txt"
    write_tokens({7: "z", 0: BLANK, 3: "c"}, path)
    assert path.read_text(encoding="utf-8") == "<blk> 0\nc 3\nz 7\n"
    assert read_token_table(path) == {0: BLANK, 3: "c", 7: "z"}
    with pytest.raises(DataError, match="ids must run 0..2 without gaps; missing \\[1, 2\\]"):
        read_tokens(path)


@pytest.mark.parametrize("table, message", [
    ("<blk> 0\na 1\nb 1\n", "tokens.txt:3: id 1 appears twice \\('a' and 'b'\\)"),
    ("<blk> 0\na -1\n", "tokens.txt:2: expected `symbol id`"),
    ("<blk> 0\n\na 1\n", "tokens.txt:2: expected `symbol id`"),
])
def test_a_malformed_table_names_its_line(tmp_path, table, message):
    path = tmp_path / "tokens.txt"
    path.write_text(table, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_token_table(path)


def test_the_blank_must_be_first_unless_a_foreign_table_says_otherwise(tmp_path):
    path = tmp_path / "tokens.txt"
    write_tokens(["<eps>", "a"], path)
    with pytest.raises(DataError, match="id 0 must be the CTC blank <blk>, not '<eps>'"):
        read_tokens(path)
    assert read_tokens(path, blank_first=False) == ["<eps>", "a"]
    with pytest.raises(DataError, match="token table not found"):
        read_tokens(tmp_path / "missing.txt")


def test_a_failed_write_leaves_the_old_table(tmp_path, monkeypatch):
    path = tmp_path / "tokens.txt"
    write_tokens([BLANK, "a"], path)
    real_write_text = Path.write_text

    def disk_full(self, text, *args, **kwargs):
        real_write_text(self, text[:5], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_tokens([BLANK, "b", "c"], path)
    monkeypatch.undo()
    assert path.read_text(encoding="utf-8") == "<blk> 0\na 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["tokens.txt"]
