import hashlib
import os

import pytest

from satellites.files.get_files import GetFilesConfig, get_files


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "skip").mkdir()
    files = {
        "in/a.csv": b"x\n1\n",
        "in/b.JSONL": b"{}\n",
        "in/c.txt": b"t",
        "in/sub/d.csv": b"y\n2\n",
        "in/skip/e.csv": b"z\n",
        "in/secret.csv": b"s\n",
    }
    for rel, data in files.items():
        (tmp_path / rel).write_bytes(data)
    return tmp_path, files


def _cfg(**kw):
    return GetFilesConfig.model_validate(kw)


def test_lists_top_level_with_metadata_and_hash(tree, make_ctx):
    root, files = tree
    out = get_files(make_ctx(), _cfg(**{"folder-path": "in"}))
    assert out["name"].to_list() == ["a.csv", "b.JSONL", "c.txt", "secret.csv"]
    row = out.filter(out["name"] == "a.csv").row(0, named=True)
    assert row["path"] == str(root / "in" / "a.csv")
    assert row["size"] == 4 and row["hash"] == hashlib.sha256(files["in/a.csv"]).hexdigest()
    assert row["modified"].timestamp() == pytest.approx(os.path.getmtime(root / "in" / "a.csv"), abs=1)


def test_recursive_extension_and_exclusion_filters(tree, make_ctx):
    cfg = _cfg(
        **{
            "folder-path": "in",
            "recursive": True,
            "allowed-extensions": [".CSV", "jsonl"],
            "exclude-files": ["secret.csv"],
            "exclude-folders": ["skip"],
        }
    )
    assert sorted(get_files(make_ctx(), cfg)["name"].to_list()) == ["a.csv", "b.JSONL", "d.csv"]
    blocked = _cfg(**{"folder-path": "in", "blocked-extensions": ["csv"]})
    assert get_files(make_ctx(), blocked)["name"].to_list() == ["b.JSONL", "c.txt"]


def test_single_file_and_missing_folder(tree, make_ctx):
    assert get_files(make_ctx(), _cfg(**{"file-path": "in/c.txt"}))["size"].to_list() == [1]
    with pytest.raises(FileNotFoundError, match="get-files: missing folder: .*nope$"):
        get_files(make_ctx(), _cfg(**{"folder-path": "nope"}))
