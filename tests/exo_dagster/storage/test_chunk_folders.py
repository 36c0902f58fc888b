"""Fan-out clean-up deletes only what the fan-out wrote: a crafted or stale reference is refused, not followed.

The replaced reference (`<key>.parquet.ref.json`) is a file any step could write. Each case below names
something that is not this asset's own marked chunk folder of a finished run, beside one that is: the
legitimate folder goes, everything else stays (files checked on disk, or in a real S3 server on loopback).
"""

from __future__ import annotations

import json
import os
import random
import uuid
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
from upath import UPath

from exo_dagster.storage import chunk_folders
from exo_dagster.storage.chunk_folders import MARKER, drop_superseded, owned_folder, run_folder

KEY = ["test", "chunks", "tagged"]
OTHER = ["test", "chunks", "other"]
FILES = ("000000.parquet", "000001.parquet")


def _run(instance, status=dg.DagsterRunStatus.SUCCESS) -> str:
    run_id = str(uuid.uuid4())
    instance.add_run(dg.DagsterRun(job_name="j", run_id=run_id, status=status))
    return run_id


def _folder(folder: Path, key=KEY, run_id: str | None = None, *, marker: bool = True, files=FILES) -> Path:
    """A chunk folder as the fan-out leaves it: its marker (for `key` and `run_id`: the folder name unless
    given) and chunk files."""
    folder.mkdir(parents=True, exist_ok=True)
    if marker:
        chunk_folders.mark(UPath(str(folder)), key, run_id or folder.name)
    for name in files:
        (folder / name).write_bytes(b"PAR1" + name.encode())
    return folder


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every file, folder and link under `root` (links not followed), with file contents."""
    seen: dict[str, bytes | str] = {}
    for here, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = os.path.join(here, name)
            seen[path] = (
                ("link:" + os.readlink(path))
                if os.path.islink(path)
                else ("dir" if os.path.isdir(path) else Path(path).read_bytes())
            )
    return seen


@pytest.fixture
def env(tmp_path, monkeypatch):
    data = tmp_path / "home" / "exo"
    monkeypatch.setenv("EXO_DATA_DIR", str(data))
    instance = dg.DagsterInstance.ephemeral()
    base = UPath(str(data / "outputs"))
    own = lambda run_id: Path(str(run_folder(base, KEY, run_id)))  # noqa: E731
    old, current = _run(instance), _run(instance, dg.DagsterRunStatus.STARTED)
    legit, new = _folder(own(old)), _folder(own(current))
    warnings: list[str] = []

    def drop(paths: list) -> list[str]:
        return drop_superseded(
            base.fs,
            base,
            KEY,
            [str(legit / f) for f in FILES] + paths,
            [str(new / f) for f in FILES],
            run_over=lambda r: chunk_folders.run_is_over(instance, r),
            warn=warnings.append,
        )

    return SimpleNamespace(
        tmp=tmp_path,
        data=data,
        root=data / "chunks",
        base=base,
        instance=instance,
        own=own,
        legit=legit,
        new=new,
        drop=drop,
        warnings=warnings,
        done=_run(instance),
    )


def _dotdot_out_of_the_root(e):
    victim = _folder(e.data.parent / "storage" / e.done, KEY)  # a run's own storage (compute logs) beside the data
    return [f"{e.root}/../../storage/{e.done}/000000.parquet"], victim


def _dotdot_inside_the_root(e):
    victim = _folder(Path(str(run_folder(e.base, OTHER, e.done))), OTHER)
    return [f"{e.root}/test/chunks/tagged/../other/{e.done}/000000.parquet"], victim


def _absolute_path_elsewhere(e):
    victim = _folder(e.tmp / "elsewhere" / e.done, KEY)  # even with a marker that claims this asset and run
    return [f"{victim}/000000.parquet", f"/{victim}/000000.parquet"], victim


def _another_assets_live_chunks(e):
    victim = _folder(Path(str(run_folder(e.base, OTHER, e.done))), KEY)  # marker forged for this asset
    return [str(victim / "000000.parquet"), str(victim / "000001.parquet")], victim


def _symlinked_run_folder(e):
    run_id = e.done
    outside = _folder(e.tmp / "outside" / run_id, KEY, run_id)
    e.own(run_id).parent.mkdir(parents=True, exist_ok=True)
    e.own(run_id).symlink_to(outside, target_is_directory=True)  # spelled exactly right, resolves out
    return [str(e.own(run_id) / "000000.parquet")], outside


def _percent_encoded(e):
    victim = _folder(Path(str(run_folder(e.base, OTHER, e.done))), OTHER)
    return [
        f"{e.root}/test/chunks/tagged/%2e%2e/other/{e.done}/000000.parquet",
        f"{e.root}/test/chunks/tagged%2f..%2fother/{e.done}/000000.parquet",
        f"{e.root}/test/chunks/tagged/%2E%2E/%2E%2E/../other/{e.done}/000000.parquet",
    ], victim


def _url_forms_of_an_own_folder(e):
    victim = _folder(e.own(e.done))
    return [f"{scheme}{victim}/000000.parquet" for scheme in ("file://", "file:", "local://")], victim


def _trailing_slash_and_dot_tricks(e):
    victim = _folder(e.own(e.done))
    parent = victim.parent
    return [
        f"{victim}/./000000.parquet",
        f"{parent}//{e.done}/000000.parquet",
        f"{victim}/",
        f"{victim}//",
        f"{victim}/000000.parquet/",
        f"{victim}/000000.parquet/.",
        f"{victim}./000000.parquet",
        f"{parent}/{e.done.upper()}/000000.parquet",
        f"{victim}/000000.parquet ",
        f"{victim}/0.parquet",
        f"{victim}/000000.parquet\x00",
        f"{victim}\\000000.parquet",
        f"{parent}/./{e.done}/000000.parquet",
    ], victim


def _a_still_running_run(e):
    running = _run(e.instance, dg.DagsterRunStatus.STARTED)
    victim = _folder(e.own(running))  # its downstream steps may be reading it
    return [str(victim / "000000.parquet")], victim


def _a_run_this_instance_never_saw(e):
    victim = _folder(e.own(str(uuid.uuid4())))
    return [str(victim / "000000.parquet")], victim


def _not_a_run_id(e):
    victim = _folder(e.own(e.done).parent / "storage", KEY, "storage")
    return [str(victim / "000000.parquet")], victim


def _no_marker(e):
    victim = _folder(e.own(e.done), marker=False)  # not made by the fan-out (or by a version before markers)
    return [str(victim / "000000.parquet")], victim


def _a_marker_of_another_run(e):
    victim = _folder(e.own(e.done), KEY, _run(e.instance))
    return [str(victim / "000000.parquet")], victim


def _not_strings(e):
    return [None, 5, 1.5, {"path": str(e.legit)}, [str(e.legit)], True], None


CRAFTED = [
    _dotdot_out_of_the_root,
    _dotdot_inside_the_root,
    _absolute_path_elsewhere,
    _another_assets_live_chunks,
    _symlinked_run_folder,
    _percent_encoded,
    _url_forms_of_an_own_folder,
    _trailing_slash_and_dot_tricks,
    _a_still_running_run,
    _a_run_this_instance_never_saw,
    _not_a_run_id,
    _no_marker,
    _a_marker_of_another_run,
    _not_strings,
]


@pytest.mark.parametrize("craft", CRAFTED, ids=[c.__name__.strip("_") for c in CRAFTED])
def test_a_crafted_reference_leaves_its_target_intact_and_the_legitimate_folder_still_goes(env, craft):
    crafted, victim = craft(env)
    before = _tree(env.tmp)
    cleared = env.drop(crafted)
    after = _tree(env.tmp)
    gone = set(before) - set(after)
    assert cleared == [str(env.legit)] and not env.legit.exists()  # the superseded run's own folder, and only it
    assert gone == {p for p in before if p == str(env.legit) or p.startswith(str(env.legit) + "/")}, sorted(gone)
    assert all(after[p] == before[p] for p in after)  # nothing else changed, either
    assert victim is None or victim.exists()
    assert sorted(os.listdir(env.new)) == [chunk_folders.MARKER, *FILES]  # the new run's chunks are untouched


def test_refusals_are_logged_with_the_path_escaped(env):
    # the escape early in the path: the log line cuts a path at 160 characters, and tmp_path is longer under xdist
    env.drop([f"{env.root}/../../storage\x1b[2J/{env.done}/000000.parquet"])
    folder = _folder(env.own(env.done), marker=False)
    env.drop([str(folder / "000000.parquet")])
    assert len(env.warnings) == 2, env.warnings
    assert "1 path(s) that are not chunk files of this asset's fan-out" in env.warnings[0]
    assert "\\x1b[2J" in env.warnings[0] and "\x1b" not in env.warnings[0]
    assert f"kept the superseded chunk folder '{folder}'" in env.warnings[1] and "no marker" in env.warnings[1]


def test_only_names_the_fan_out_writes_are_deleted(env):
    folder = _folder(env.own(env.done), files=(*FILES, ".000001.parquet.123-" + "a" * 32 + ".tmp"))
    (folder / "notes.txt").write_text("someone else's")
    (folder / "sub").mkdir()
    (env.tmp / "precious.parquet").write_bytes(b"precious")
    (folder / "000002.parquet").symlink_to(env.tmp / "precious.parquet")  # a chunk name, but never written as a link
    env.drop([str(folder / "000000.parquet")])
    # chunk files, the marker and a killed write's leftover went; the rest stays
    assert sorted(os.listdir(folder)) == ["000002.parquet", "notes.txt", "sub"]
    assert (env.tmp / "precious.parquet").read_bytes() == b"precious"
    assert "3 name(s) there the fan-out did not write are kept" in env.warnings[-1]


def test_fuzz_only_the_exact_spelling_of_this_assets_run_folder_is_owned(env):
    """5000 mutations of a real chunk path (`..`, `.`, `//`, %-escapes, case, schemes, other assets and runs,
    links): every one accepted is exactly the fan-out's spelling of a folder in this asset's chunk root, and
    clean-up over all of them changes nothing outside that root."""
    rng = random.Random(21)
    asset_root = env.own(env.done).parent
    _folder(Path(str(run_folder(env.base, OTHER, env.done))), KEY)
    _folder(env.data.parent / "storage" / env.done, KEY)
    _folder(env.tmp / "outside" / env.done, KEY)
    (asset_root / "link").symlink_to(env.tmp / "outside", target_is_directory=True)
    _folder(env.own(env.done))
    running = _run(env.instance, dg.DagsterRunStatus.STARTED)
    _folder(env.own(running))
    runs = [env.done, running, str(uuid.uuid4()), env.done.upper(), env.done[:-1], "storage", "link"]
    inserts = ["..", ".", "", "%2e%2e", "%2E", "..%2f..", "%2fstorage", "link", "．．", "..\\..", " ", "\x00", "other"]

    def mutate(path: str) -> str:
        parts = path.split("/")
        op = rng.randrange(9)
        i = rng.randrange(1, len(parts))
        if op == 0:
            parts.insert(i, rng.choice(inserts))
        elif op == 1:
            parts[i] = rng.choice(inserts)
        elif op == 2:
            parts[-2] = rng.choice(runs)
        elif op == 3:
            parts[-3] = rng.choice(["other", "tagged", "TAGGED", "tagged.", ".", ".."])
        elif op == 4:
            return rng.choice(["file://", "file:", "s3://", "local://", "/", "./"]) + path
        elif op == 5:
            return path + rng.choice(["/", ".", "/.", "%00", "\n", "?x", "#x"])
        elif op == 6:
            parts[-1] = rng.choice(["000000.parquet", "000002.parquet", "0.parquet", "000000.PARQUET", MARKER])
        elif op == 7:
            del parts[i]
        else:
            parts[i] = parts[i].swapcase() if parts[i] else parts[i]
        return "/".join(parts)

    start = str(env.own(env.done) / "000000.parquet")
    generated = []
    for _ in range(5000):
        path = start
        for _ in range(rng.randint(1, 3)):
            path = mutate(path)
        generated.append(path)
    real_root = os.path.realpath(asset_root)
    wrong = [
        p
        for p in generated
        if (owned := owned_folder(p, env.base, KEY))
        and not (
            p == str(run_folder(env.base, KEY, owned[1]) / p.rpartition("/")[2])
            and os.path.dirname(os.path.realpath(owned[0])) == real_root
        )
    ]
    accepted = [p for p in generated if owned_folder(p, env.base, KEY)]
    assert wrong == [] and len(set(generated) - set(accepted)) > 1000, (wrong[:5], len(accepted))
    outside = {p: v for p, v in _tree(env.tmp).items() if not p.startswith(str(asset_root) + "/")}
    env.drop(generated)
    after = _tree(env.tmp)
    assert all(after.get(p) == v for p, v in outside.items()), [p for p, v in outside.items() if after.get(p) != v]
    assert (env.own(running) / "000000.parquet").exists()
    assert (env.tmp / "outside" / env.done / "000000.parquet").exists()


def test_the_fan_out_marks_its_folder_before_writing_and_the_marker_names_asset_and_run(env):
    run_id = str(uuid.uuid4())
    folder = run_folder(env.base, KEY, run_id)
    os.makedirs(str(folder))
    chunk_folders.mark(folder, KEY, run_id)
    chunk_folders.mark(folder, KEY, run_id)  # each chunk op marks; the second finds it there
    assert json.loads((Path(str(folder)) / chunk_folders.MARKER).read_text()) == {"asset": KEY, "run_id": run_id}
    assert sorted(os.listdir(str(folder))) == [chunk_folders.MARKER]


# --- the same against S3 (moto's server on loopback) --------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint():
    from s3fs import S3FileSystem

    from tests.loopback import s3_server

    with s3_server() as endpoint:
        S3FileSystem.clear_instance_cache()  # s3fs keeps a filesystem (and its endpoint) per process:
        yield endpoint
        S3FileSystem.clear_instance_cache()  # no other module's tests may get this server's, once it is gone


@pytest.fixture
def s3(s3_endpoint, monkeypatch, tmp_path):
    import boto3

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("EXO_DATA_DIR", str(tmp_path / "exo"))
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket, other = (f"exo-{tag}-{uuid.uuid4().hex[:12]}" for tag in ("own", "other"))
    for name in (bucket, other):
        client.create_bucket(Bucket=name)
    return client, bucket, other


@pytest.mark.slow
def test_s3_crafted_references_leave_their_objects_and_the_legitimate_folder_still_goes(s3):
    client, bucket, other_bucket = s3
    instance = dg.DagsterInstance.ephemeral()
    base = UPath(f"s3://{bucket}/outputs")
    old, done = _run(instance), _run(instance)
    current, running = (_run(instance, dg.DagsterRunStatus.STARTED) for _ in range(2))

    def put(bucket_name: str, prefix: str, run_id: str, key=KEY, marker=True) -> str:
        if marker:
            client.put_object(
                Bucket=bucket_name,
                Key=f"{prefix}/{chunk_folders.MARKER}",
                Body=json.dumps(chunk_folders.marker_record(key, run_id)).encode(),
            )
        for name in FILES:
            client.put_object(Bucket=bucket_name, Key=f"{prefix}/{name}", Body=b"PAR1")
        return f"s3://{bucket_name}/{prefix}"

    def keys(name: str) -> set[str]:
        return {o["Key"] for o in client.list_objects_v2(Bucket=name).get("Contents", [])}

    own = f"outputs/_chunks/{'__'.join(KEY)}"
    legit = put(bucket, f"{own}/{old}", old)
    new = put(bucket, f"{own}/{current}", current)
    put(other_bucket, f"{own}/{done}", done)  # same key, another bucket
    put(bucket, f"outputs/_chunks/test__chunks__other/{done}", done)  # another asset's live chunks (forged marker)
    put(bucket, f"outputs/test__chunks/{done}", done)  # outputs themselves
    put(bucket, f"{own}/{running}", running)  # a run still going
    put(bucket, f"{own}/{done}", done, marker=False)  # not marked by the fan-out
    spare = _run(instance)
    put(bucket, f"{own}/{spare}", spare)  # a marked folder of a finished run, named only in forms that are not ours
    crafted = [
        f"s3://{other_bucket}/{own}/{done}/000000.parquet",
        f"s3://{bucket}/{own}/../test__chunks__other/{done}/000000.parquet",
        f"s3://{bucket}/{own}/%2e%2e/test__chunks__other/{done}/000000.parquet",
        f"s3://{bucket}/outputs/_chunks/test__chunks__other/{done}/000000.parquet",
        f"s3://{bucket}/outputs/test__chunks/{done}/000000.parquet",
        f"s3://{bucket}/outputs/_chunks/{'__'.join(KEY)}/../../test__chunks/{done}/000000.parquet",
        f"gs://{bucket}/{own}/{spare}/000000.parquet",
        f"s3a://{bucket}/{own}/{spare}/000000.parquet",
        f"S3://{bucket}/{own}/{spare}/000000.parquet",
        f"s3://{bucket}//{own}/{spare}/000000.parquet",
        f"s3://{bucket}/{own}/{spare}/",
        f"s3://{bucket}/{own}/{spare}/./000000.parquet",
        f"s3://{bucket}/{own}//{spare}/000000.parquet",
        f"s3://{bucket.upper()}/{own}/{spare}/000000.parquet",
        f"s3://{bucket}/{own}/{running}/000000.parquet",
        f"s3://{bucket}/{own}/{done}/000000.parquet",
    ]
    before = {name: keys(name) for name in (bucket, other_bucket)}
    warnings: list[str] = []
    cleared = drop_superseded(
        base.fs,
        base,
        KEY,
        [f"{legit}/{f}" for f in FILES] + crafted,
        [f"{new}/{f}" for f in FILES],
        run_over=lambda r: chunk_folders.run_is_over(instance, r),
        warn=warnings.append,
    )
    after = {name: keys(name) for name in (bucket, other_bucket)}
    assert cleared == [legit]
    assert before[bucket] - after[bucket] == {k for k in before[bucket] if k.startswith(f"{own}/{old}/")}
    assert after[other_bucket] == before[other_bucket] and after[bucket] <= before[bucket]
    assert f"{own}/{done}/000000.parquet" in after[bucket]  # unmarked: kept (and said so)
    assert any("14 path(s) that are not chunk files" in w for w in warnings), warnings
    assert any("no marker" in w for w in warnings), warnings
