import hashlib
import json

from tickercast import files


def test_sha256_file_matches_hashlib(tmp_path):
    path = tmp_path / "blob"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    assert files.sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_write_json_is_sorted_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "out.json"
    files.write_json(path, {"b": 1, "a": [1, 2]})
    assert path.read_text() == json.dumps({"a": [1, 2], "b": 1}, indent=2, sort_keys=True) + "\n"
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]


def test_publish_swaps_folders_and_removes_staging(tmp_path):
    target = tmp_path / "features"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging = tmp_path / ".staging"
    (staging / "features").mkdir(parents=True)
    (staging / "features" / "new.txt").write_text("new")
    (staging / "manifest.json").write_text("{}")
    files.publish(staging, {"features": target, "manifest.json": tmp_path / "manifest.json"})
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert (tmp_path / "manifest.json").read_text() == "{}"
    assert not staging.exists()


def test_swap_replaces_a_file_and_leaves_the_old_one_at_the_staged_path(tmp_path):
    staged, target = tmp_path / "staged.json", tmp_path / "target.json"
    staged.write_text("new")
    target.write_text("old")
    files.swap_into_place(staged, target)
    assert target.read_text() == "new"
    assert staged.read_text() == "old"
