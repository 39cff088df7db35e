import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from pipelines.cache import DiskArrayCache, FileHasher, code_version, hash_payload, sha256_file
from pipelines.locks import OutputLock


def test_hash_payload_is_canonical():
    assert hash_payload({"a": 1, "b": [1, 2]}) == hash_payload({"b": [1, 2], "a": 1})
    assert hash_payload({"a": 1}) != hash_payload({"a": 2})


def test_file_hasher_memo_follows_content(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"one")
    memo = tmp_path / "memo.json"
    hasher = FileHasher(memo)
    first = hasher(f)
    assert first == sha256_file(f)
    f.write_bytes(b"two!")  # size changes -> the memo must not answer
    assert FileHasher(memo)(f) == sha256_file(f) != first


def test_code_version_names_the_package_version():
    import pipelines

    assert code_version().startswith(pipelines.__version__ + "+")


def test_array_cache_computes_once_and_loads_without_pickle(tmp_path):
    cache = DiskArrayCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"landmarks": np.arange(6, dtype=np.float32).reshape(2, 3), "found": np.array([True, False])}

    a = cache.get_or_compute("faces", "abc", compute)
    b = cache.get_or_compute("faces", "abc", compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(a["landmarks"], b["landmarks"])
    np.testing.assert_array_equal(b["found"], [True, False])


def test_array_cache_recomputes_a_torn_file(tmp_path):
    cache = DiskArrayCache(tmp_path)
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "k.npz").write_bytes(b"not a zip")
    out = cache.get_or_compute("faces", "k", lambda: {"x": np.ones(3)})
    np.testing.assert_array_equal(out["x"], np.ones(3))


def test_output_lock_excludes_a_second_process(tmp_path):
    out = tmp_path / "clip.mp4"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from pipelines.locks import OutputLock
                lock = OutputLock(Path({str(out)!r}))
                assert lock.acquire(wait=False)
                print("held", flush=True)
                time.sleep(30)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.getcwd(),
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert OutputLock(out).acquire(wait=False) is False
        holder.kill()  # the kernel drops a dead holder's lock, even after SIGKILL
        holder.wait()
        lock = OutputLock(out)
        assert lock.acquire(wait=False) is True
        lock.release()
    finally:
        if holder.poll() is None:
            holder.kill()


@pytest.mark.parametrize("text", ["0/2", "3/2", "a/b", "2"])
def test_bad_shard_is_an_input_error(text):
    from cli.batch import parse_shard
    from pipelines.errors import InputError

    with pytest.raises(InputError, match="--shard"):
        parse_shard(text)


def test_shard_parses():
    from cli.batch import parse_shard

    assert parse_shard("2/3") == (2, 3)
    assert parse_shard(None) is None


def test_file_hasher_keys_relative_to_root_survive_a_move(tmp_path):
    root = tmp_path / "weights"
    (root / "repo").mkdir(parents=True)
    f = root / "repo" / "w.bin"
    f.write_bytes(b"weights")
    FileHasher(root / "hashes.json", root=root)(f)
    moved = tmp_path / "moved"
    root.rename(moved)
    hasher = FileHasher(moved / "hashes.json", root=moved)
    assert hasher.known(moved / "repo" / "w.bin") == sha256_file(moved / "repo" / "w.bin")
    hasher.forget(moved / "repo" / "w.bin")
    assert hasher.known(moved / "repo" / "w.bin") is None
