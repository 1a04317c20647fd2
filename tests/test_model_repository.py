"""The versioned model repository on real directories: layout, atomic pushes, crashes, remote protocol."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from pyarrow import fs as pafs

from kubetfx.components.common import model_repository as repo
from kubetfx.components.common.errors import ConfigError

from helpers.model_files import make_saved_model, tree


@pytest.fixture
def saved_model(tmp_path):
    return make_saved_model(tmp_path / "model")


@pytest.fixture
def base(tmp_path):
    return str(tmp_path / "repository")


def test_push_creates_increasing_versions_with_identical_files(saved_model, base, tmp_path):
    meta = tmp_path / "kubetfx_model.json"
    meta.write_text('{"problem_type": "multiclass"}')
    assert repo.list_versions(base, "penguin") == []
    assert repo.latest_version(base, "penguin", strict=True) is None

    version, path = repo.push(saved_model, base, "penguin", {"kubetfx_model.json": str(meta)})
    assert (version, path) == (1, os.path.join(base, "penguin", "1"))
    copied = tree(path)
    assert copied.pop("kubetfx_model.json") == meta.read_bytes()
    assert copied == tree(saved_model)
    assert repo.is_loadable(path)

    version2, path2 = repo.push(saved_model, base, "penguin")
    assert version2 == 2 and tree(path2) == tree(saved_model)
    assert repo.list_versions(base, "penguin") == [1, 2]
    assert repo.latest_version(base, "penguin") == 2
    assert repo.version_path(base, "penguin", 2) == path2
    # Nothing but the two versions is left in the model dir (the temp dirs were renamed).
    assert sorted(os.listdir(os.path.join(base, "penguin"))) == ["1", "2"]
    # Models are independent.
    assert repo.push(saved_model, base, "other")[0] == 1


def test_list_versions_skips_temp_hidden_non_numeric_and_corrupt_dirs(saved_model, base):
    repo.push(saved_model, base, "m")
    repo.push(saved_model, base, "m")
    root = os.path.join(base, "m")
    make_saved_model(os.path.join(root, ".tmp-push-deadbeef"))  # an interrupted local push
    make_saved_model(os.path.join(root, "latest"))              # not a number
    make_saved_model(os.path.join(root, "_5"))
    os.makedirs(os.path.join(root, "7", "variables"))           # corrupt: no saved_model.pb
    (open(os.path.join(root, "9"), "w")).close()                # a file, not a dir

    assert repo.list_versions(base, "m") == [1, 2]
    assert repo.latest_version(base, "m") == 2
    with pytest.raises(ConfigError) as err:
        repo.latest_version(base, "m", strict=True)
    assert os.path.join(root, "7") in str(err.value) and "saved_model.pb" in str(err.value)
    assert "newest loadable version is 2" in str(err.value)
    assert not repo.is_loadable(os.path.join(root, "7"))
    # A number is never reused, even a corrupt one's.
    assert repo.push(saved_model, base, "m")[0] == 8
    assert repo.latest_version(base, "m", strict=True) == 8


def test_strict_ignores_corrupt_versions_older_than_the_latest(saved_model, base):
    os.makedirs(os.path.join(base, "m", "1"))
    with pytest.raises(ConfigError, match="no version is loadable"):
        repo.latest_version(base, "m", strict=True)
    repo.push(saved_model, base, "m")
    assert repo.latest_version(base, "m", strict=True) == 2


def test_missing_or_empty_repository_has_no_versions(base):
    assert repo.list_versions(base, "m") == []
    os.makedirs(os.path.join(base, "m"))
    assert repo.latest_version(base, "m", strict=True) is None


def test_an_existing_version_is_never_overwritten(saved_model, base, tmp_path, monkeypatch):
    repo.push(saved_model, base, "m")
    before = tree(os.path.join(base, "m", "1"))
    # Another pusher's version 1 appears between our scan and our rename: we must move on to 2.
    calls = iter([1, 2])
    monkeypatch.setattr(repo, "_next_version", lambda loc, name: next(calls))
    other = make_saved_model(tmp_path / "other", seed=9)
    assert repo.push(other, base, "m")[0] == 2
    assert tree(os.path.join(base, "m", "1")) == before
    assert tree(os.path.join(base, "m", "2")) == tree(other)


def test_rename_noreplace_refuses_an_existing_empty_dir(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("x")
    (tmp_path / "dst").mkdir()  # plain os.rename would silently replace an empty dir
    assert repo._rename_noreplace(str(tmp_path / "src"), str(tmp_path / "dst")) is False
    assert (tmp_path / "src" / "f").exists()
    assert repo._rename_noreplace(str(tmp_path / "src"), str(tmp_path / "new")) is True
    assert (tmp_path / "new" / "f").read_text() == "x"


def test_concurrent_pushes_get_distinct_complete_versions(saved_model, base):
    results, errors = [], []

    def worker():
        try:
            results.append(repo.push(saved_model, base, "m")[0])
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(results) == list(range(1, 9))
    assert repo.list_versions(base, "m") == list(range(1, 9))
    for version in results:
        assert tree(os.path.join(base, "m", str(version))) == tree(saved_model)


def test_source_without_saved_model_pb_is_a_config_error(tmp_path, base):
    source = tmp_path / "not-a-model"
    (source / "variables").mkdir(parents=True)
    with pytest.raises(ConfigError, match=str(source)):
        repo.push(str(source), base, "m")
    assert not os.path.exists(base)


@pytest.mark.parametrize("name", ["", "../up", "a/b", ".hidden", "x" * 201])
def test_bad_model_names(saved_model, base, name):
    with pytest.raises(ConfigError, match="model name"):
        repo.push(saved_model, base, name)


def test_bad_extra_files(saved_model, base, tmp_path):
    with pytest.raises(ConfigError, match="clash"):
        repo.push(saved_model, base, "m", {"saved_model.pb": saved_model + "/saved_model.pb"})
    with pytest.raises(ConfigError, match="does not exist"):
        repo.push(saved_model, base, "m", {"kubetfx_model.json": str(tmp_path / "missing.json")})


def test_unwritable_destination_is_a_config_error_naming_it(saved_model, tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("I am a file")  # tests run as root: a path under a file is unwritable even for root
    with pytest.raises(ConfigError, match="not writable") as err:
        repo.push(saved_model, str(blocker / "repo"), "m")
    assert str(blocker / "repo" / "m") in str(err.value)
    assert repo.list_versions(str(blocker / "repo"), "m") == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_is_a_config_error(saved_model, tmp_path):  # pragma: no cover - non-root only
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="not writable"):
            repo.push(saved_model, str(read_only), "m")
    finally:
        read_only.chmod(0o700)


def test_unsupported_scheme_is_a_config_error(saved_model):
    with pytest.raises(ConfigError, match="pvc://"):
        repo.push(saved_model, "pvc://claim/models", "m")
    assert repo.version_path("gs://bucket/models/", "m", 3) == "gs://bucket/models/m/3"


def test_copy_failure_half_way_leaves_the_repository_unchanged(saved_model, base, monkeypatch):
    repo.push(saved_model, base, "m")
    real_copy, copied = repo._copy_file, []

    def failing_copy(src, dst):
        if len(copied) == 2:
            raise OSError(28, "No space left on device")
        copied.append(dst)
        real_copy(src, dst)

    monkeypatch.setattr(repo, "_copy_file", failing_copy)
    with pytest.raises(repo.PushError, match="No space left"):
        repo.push(saved_model, base, "m")
    assert os.listdir(os.path.join(base, "m")) == ["1"]  # the temp dir was removed too
    assert repo.latest_version(base, "m", strict=True) == 1


KILLED_PUSH = textwrap.dedent("""
    import sys, time
    from kubetfx.components.common import model_repository as repo
    source, base, signal_file = sys.argv[1:4]
    real_copy, count = repo._copy_file, [0]
    def slow_copy(src, dst):
        real_copy(src, dst)
        count[0] += 1
        if count[0] == 3:                       # half-way: 3 of 6 files copied
            open(signal_file, "w").close()
            time.sleep(60)                      # the parent SIGKILLs us here
    repo._copy_file = slow_copy
    repo.push(source, base, "m")
""")


def test_push_killed_mid_copy_leaves_only_a_hidden_temp_dir(saved_model, base, tmp_path):
    repo.push(saved_model, base, "m")
    big = make_saved_model(tmp_path / "big", variables_bytes=2 << 20, seed=1)
    for index in range(2):
        with open(os.path.join(big, "variables", f"extra-{index}"), "wb") as handle:
            handle.write(os.urandom(1 << 20))
    signal_file = tmp_path / "half-way"
    process = subprocess.Popen([sys.executable, "-c", KILLED_PUSH, big, base, str(signal_file)])
    try:
        deadline = time.time() + 20
        while not signal_file.exists():
            assert process.poll() is None, "the push subprocess exited early"
            assert time.time() < deadline, "the push subprocess never got half-way"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL

    root = os.path.join(base, "m")
    leftovers = [name for name in os.listdir(root) if name.startswith(repo.TEMP_PREFIX)]
    assert sorted(os.listdir(root)) == sorted(["1"] + leftovers) and len(leftovers) == 1
    assert len(tree(os.path.join(root, leftovers[0]))) == 3  # really interrupted half-way
    assert repo.list_versions(base, "m") == [1]
    assert repo.latest_version(base, "m", strict=True) == 1

    assert repo.cleanup_stale_temp_dirs(base, "m", older_than_s=3600) == []  # too fresh: maybe still running
    assert repo.cleanup_stale_temp_dirs(base, "m", older_than_s=0) == [os.path.join(root, leftovers[0])]
    assert os.listdir(root) == ["1"]
    version, path = repo.push(big, base, "m")
    assert version == 2 and tree(path) == tree(big)


# ---------------------------------------------------------------------------
# Object-store protocol, exercised on a pyarrow filesystem over a local directory


@pytest.fixture
def remote(tmp_path):
    (tmp_path / "bucket").mkdir()
    return pafs.SubTreeFileSystem(str(tmp_path / "bucket"), pafs.LocalFileSystem()), tmp_path / "bucket"


def test_remote_push_uploads_saved_model_pb_last(saved_model, remote, tmp_path, monkeypatch):
    filesystem, root = remote
    meta = tmp_path / "kubetfx_model.json"
    meta.write_text("{}")
    order, real_write, listed_before_last_write = [], repo._write_object, []

    def recording_write(fs, path, src):
        order.append(path)
        if path.endswith("saved_model.pb"):  # the version may not be loadable before this last write
            listed_before_last_write.append(repo.list_versions("models", "m", filesystem=filesystem))
        real_write(fs, path, src)

    monkeypatch.setattr(repo, "_write_object", recording_write)
    version, path = repo.push(saved_model, "models", "m", {"kubetfx_model.json": str(meta)}, filesystem=filesystem)
    assert (version, path) == (1, "models/m/1")
    assert os.path.basename(order[0]).startswith(repo.CLAIM_PREFIX)
    assert order[-1] == "models/m/1/saved_model.pb"
    copied = tree(root / "models" / "m" / "1")  # the claim is gone: only the model files remain
    assert copied.pop("kubetfx_model.json") == b"{}"
    assert copied == tree(saved_model)
    assert repo.push(saved_model, "models", "m", filesystem=filesystem)[0] == 2
    assert listed_before_last_write == [[], [1]]
    assert repo.list_versions("models", "m", filesystem=filesystem) == [1, 2]
    assert repo.is_loadable("models/m/2", filesystem=filesystem)


def test_remote_upload_failure_is_discarded(saved_model, remote, monkeypatch):
    filesystem, root = remote
    repo.push(saved_model, "models", "m", filesystem=filesystem)
    real_write = repo._write_object

    def failing_write(fs, path, src):
        if path.endswith("variables.index"):
            raise OSError("connection reset")
        real_write(fs, path, src)

    monkeypatch.setattr(repo, "_write_object", failing_write)
    with pytest.raises(repo.PushError, match="connection reset"):
        repo.push(saved_model, "models", "m", filesystem=filesystem)
    assert os.listdir(root / "models" / "m") == ["1"]


def test_remote_upload_killed_is_in_progress_not_corrupt(saved_model, remote, monkeypatch):
    filesystem, root = remote
    repo.push(saved_model, "models", "m", filesystem=filesystem)
    monkeypatch.setattr(repo, "_discard_partial_upload", lambda loc, path: None)  # a killed process cleans nothing
    real_write, writes = repo._write_object, []

    def failing_write(fs, path, src):
        writes.append(path)
        if len(writes) == 3:
            raise OSError("connection reset")
        real_write(fs, path, src)

    monkeypatch.setattr(repo, "_write_object", failing_write)
    with pytest.raises(repo.PushError, match="connection reset"):
        repo.push(saved_model, "models", "m", filesystem=filesystem)
    monkeypatch.setattr(repo, "_write_object", real_write)
    assert any(name.startswith(repo.CLAIM_PREFIX) for name in os.listdir(root / "models" / "m" / "2"))
    assert (root / "models" / "m" / "2").is_dir()  # partial upload, no saved_model.pb
    assert not (root / "models" / "m" / "2" / "saved_model.pb").exists()
    assert repo.list_versions("models", "m", filesystem=filesystem) == [1]
    assert repo.latest_version("models", "m", strict=True, filesystem=filesystem) == 1  # in progress, not corrupt
    assert repo.push(saved_model, "models", "m", filesystem=filesystem)[0] == 3  # 2 is not reused
    assert repo.cleanup_stale_temp_dirs("models", "m", 0, filesystem=filesystem) == ["models/m/2"]
    assert sorted(os.listdir(root / "models" / "m")) == ["1", "3"]


def test_remote_push_backs_off_when_another_pusher_claims_the_same_version(saved_model, remote, monkeypatch):
    filesystem, root = remote
    real_write = repo._write_object

    def racing_write(fs, path, src):
        real_write(fs, path, src)
        if os.path.basename(path).startswith(repo.CLAIM_PREFIX) and path.startswith("models/m/1/"):
            real_write(fs, "models/m/1/.kubetfx-push-someone-else", None)  # the rival's claim lands too

    monkeypatch.setattr(repo, "_write_object", racing_write)
    monkeypatch.setattr(repo.time, "sleep", lambda s: None)
    version, _ = repo.push(saved_model, "models", "m", filesystem=filesystem)
    assert version == 2
    assert os.listdir(root / "models" / "m" / "1") == [".kubetfx-push-someone-else"]  # ours withdrawn
    assert repo.list_versions("models", "m", filesystem=filesystem) == [2]


def test_remote_unwritable_destination(saved_model, tmp_path):
    (tmp_path / "afile").write_text("x")
    filesystem = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    with pytest.raises(ConfigError, match="not writable"):
        repo.push(saved_model, "afile/models", "m", filesystem=filesystem)
