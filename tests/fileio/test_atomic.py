"""fileio: atomic file writes, directory publishing, temp-name ownership and digests."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from fileio.atomic import (
    is_dead_temp,
    is_temp_name,
    publish_directory,
    temp_owner,
    temp_path,
    write_atomic,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from fileio.digest import json_sha256, sha256_file


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_writes_land_complete_and_leave_no_temp(tmp_path):
    write_bytes_atomic(tmp_path / "sub" / "a.bin", b"\x00\x01")
    write_text_atomic(tmp_path / "b.txt", "héllo\n")
    write_json_atomic(tmp_path / "c.json", {"k": [1, 2]})
    assert (tmp_path / "sub" / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo\n"
    assert json.loads((tmp_path / "c.json").read_text()) == {"k": [1, 2]}
    assert sorted(p.name for p in tmp_path.rglob("*") if is_temp_name(p.name)) == []


def test_a_failing_writer_keeps_the_old_file(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")

    def half_then_crash(tmp):
        tmp.write_text("half")
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError, match="writer died"):
        write_atomic(target, half_then_crash)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_temp_names_carry_their_writer(tmp_path):
    mine = temp_path(tmp_path / "x.json")
    assert is_temp_name(mine.name) and mine.parent == tmp_path
    assert temp_owner(mine.name) is not None and not is_dead_temp(mine.name)
    dead = mine.name.replace(f".{temp_owner(mine.name)}-", f".{_dead_pid()}-")
    assert is_dead_temp(dead)
    assert temp_owner("x.json") is None and not is_dead_temp(".x.json.tmp")


def test_publish_directory_replaces_a_non_empty_directory(tmp_path):
    final, tmp, trash = tmp_path / "bundle", tmp_path / ".bundle.tmp", tmp_path / ".bundle.old"
    final.mkdir()
    (final / "old.onnx").write_text("old")
    tmp.mkdir()
    (tmp / "new.onnx").write_text("new")
    publish_directory(tmp, final, trash)
    assert [p.name for p in final.iterdir()] == ["new.onnx"]
    assert not tmp.exists() and not trash.exists()
    fresh_tmp = tmp_path / ".fresh.tmp"
    fresh_tmp.mkdir()
    publish_directory(fresh_tmp, tmp_path / "fresh", trash)
    assert (tmp_path / "fresh").is_dir() and not fresh_tmp.exists()


def test_digests(tmp_path):
    data = bytes(range(256)) * 5000  # spans several read blocks
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    assert json_sha256({"a": 1, "b": [2.5, "x"]}) == json_sha256({"b": [2.5, "x"], "a": 1})
    assert json_sha256({"a": 1}) != json_sha256({"a": 2})
