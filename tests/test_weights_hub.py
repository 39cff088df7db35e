"""`weights lock` and `weights download` against a fake hub on 127.0.0.1.

Only the network peer is replaced: HF_ENDPOINT points huggingface_hub's real client (HfApi, hf_hub_download,
snapshot_download, http_get) at a local server that speaks the hub's URL layout and headers, so redirects,
ETags, range requests, tokens and the on-disk bookkeeping all run for real.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import huggingface_hub.constants
import pytest
from typer.testing import CliRunner

from cli.main import app
from pipelines.weights.lock import lock_engines, read_lock
from pipelines.weights.store import download, resolve
from tests import weights_helpers as wh

REPO_ROOT = Path(__file__).resolve().parents[1]
EMO = "BadToBest/EchoMimicV2"


def run(*args):
    result = CliRunner().invoke(app, ["weights", *map(str, args)])
    return result, "".join(result.output.split())


def flat(text: str) -> str:
    return "".join(text.split())


@pytest.fixture
def online(monkeypatch, tmp_path):
    """Undo the suite's offline default for one test and give huggingface_hub a private HF_HOME."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)


def start_hub(monkeypatch, engines, big=None):
    hub = wh.FakeHub(wh.hub_repos(engines, big))
    monkeypatch.setenv("HF_ENDPOINT", hub.start())
    return hub


@pytest.fixture
def hub(monkeypatch, online):
    hub = start_hub(monkeypatch, ["latentsync-1.6", "echomimic-v2"])
    yield hub
    hub.stop()


def test_lock_pins_commit_size_and_sha256_of_every_file(hub, tmp_path):
    lock_path = tmp_path / "weights.lock"
    result, out = run("lock", "latentsync-1.6", "echomimic-v2", "--lock", lock_path)
    assert result.exit_code == 0, result.output
    lock = read_lock(lock_path)
    files = lock.files("echomimic-v2")
    # 4 .pth, the UNet config, the VAE (2), whisper
    assert len(files) == 8 and len(lock.files("latentsync-1.6")) == 4
    for f in files + lock.files("latentsync-1.6"):
        data = hub.repos[f.repo][f.path]
        assert f.revision == hub.commit(f.repo) and len(f.revision) == 40
        assert (f.size, f.sha256) == (len(data), wh.sha256(data))
    assert not any(f.path == "README.md" for f in files)
    # LFS files' sha256 came from paths-info; config.json (not LFS) was fetched and hashed.
    assert any(r["method"] == "POST" and "paths-info" in r["path"] for r in hub.requests)
    assert hub.gets("stabilityai/sd-vae-ft-mse", "config.json")
    assert not hub.gets(EMO, "denoising_unet.pth")
    assert "echomimic-v2:8filespinned" in out


def test_download_fetches_the_locked_revision_verifies_and_converts(hub, tmp_path):
    lock_path, weights = tmp_path / "weights.lock", tmp_path / "w"
    lock_engines(["echomimic-v2"], lock_path)
    result, out = run("download", "echomimic-v2", "--dir", weights, "--lock", lock_path)
    assert result.exit_code == 0, result.output
    assert "done:8downloaded,0alreadypresentandverified,5converted" in out
    resolves = [r for r in hub.requests if "/resolve/" in r["path"]]
    assert resolves and all("/resolve/main/" not in r["path"] for r in resolves)  # never a floating revision

    result, out = run("verify", "--dir", weights, "--lock", lock_path)  # no ENGINE: every locked engine
    assert result.exit_code == 0 and "all8filesverified" in out
    paths = resolve("echomimic-v2", weights, lock_path)
    assert paths["pose_encoder"].name == "pose_encoder.safetensors" and paths["pose_encoder"].is_file()

    before = len(hub.requests)
    result, out = run("download", "echomimic-v2", "--dir", weights, "--lock", lock_path)
    assert "done:0downloaded,8alreadypresentandverified,0converted" in out
    assert len(hub.requests) == before  # nothing to fetch: not even a HEAD


def test_download_refuses_bytes_that_differ_from_the_lock(hub, tmp_path):
    lock_path, weights = tmp_path / "weights.lock", tmp_path / "w"
    lock = lock_engines(["echomimic-v2"], lock_path)
    expected = next(f.sha256 for f in lock.files("echomimic-v2") if f.path == "motion_module.pth")
    hub.corrupt.add((EMO, "motion_module.pth"))  # a tampered mirror / a corrupted CDN object
    result, out = run("download", "echomimic-v2", "--dir", weights, "--lock", lock_path)
    assert result.exit_code == 2
    assert flat(f"motion_module.pth: sha256: downloaded {EMO}@") in out
    assert flat(f"weights.lock expects {expected}; the file was removed") in out
    assert not (weights / EMO / "motion_module.pth").exists()


def test_an_interrupted_download_continues_where_it_stopped(monkeypatch, online, tmp_path):
    """Kill a `talkreel weights download` mid-file (SIGKILL), run it again: it asks only for the missing bytes."""
    big = {(EMO, "pose_encoder.pth"): 4_000_000}  # ~16 MB: more than huggingface_hub's 10 MiB write chunk
    hub = start_hub(monkeypatch, ["echomimic-v2"], big)
    try:
        lock_path, weights = tmp_path / "weights.lock", tmp_path / "w"
        locked = {f.path: f for f in lock_engines(["echomimic-v2"], lock_path).files("echomimic-v2")}
        partial = weights / ".talkreel" / "partial" / f"{locked['pose_encoder.pth'].sha256}.part"
        release = hub.stall_after(EMO, "pose_encoder.pth", 12 * 1024 * 1024)

        env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli",
                "weights",
                "download",
                "echomimic-v2",
                "--dir",
                str(weights),
                "--lock",
                str(lock_path),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not (partial.exists() and partial.stat().st_size >= 10 * 1024 * 1024):
            assert proc.poll() is None and time.monotonic() < deadline, "the download never reached the stall"
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        release.set()
        kept = partial.stat().st_size

        result, _ = run("download", "echomimic-v2", "--dir", weights, "--lock", lock_path)
        assert result.exit_code == 0, result.output
        last = hub.gets(EMO, "pose_encoder.pth")[-1]
        assert last["range"] == f"bytes={kept}-"
        data = (weights / EMO / "pose_encoder.pth").read_bytes()
        assert wh.sha256(data) == locked["pose_encoder.pth"].sha256
        assert not partial.exists()
    finally:
        hub.stop()


def test_offline_download_touches_nothing_and_points_to_import(monkeypatch, tmp_path):
    hub = wh.FakeHub(wh.hub_repos(["latentsync-1.6"]))
    lock_path = tmp_path / "weights.lock"
    monkeypatch.setenv("HF_ENDPOINT", hub.start())
    try:
        with monkeypatch.context() as m:
            m.delenv("HF_HUB_OFFLINE", raising=False)
            m.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
            lock_engines(["latentsync-1.6"], lock_path)
        n = len(hub.requests)
        assert os.environ["HF_HUB_OFFLINE"] == "1"  # the suite's default
        result, out = run("download", "latentsync-1.6", "--dir", tmp_path / "w", "--lock", lock_path)
        assert result.exit_code == 4
        assert "HF_HUB_OFFLINE is set" in result.output
        assert flat("talkreel weights import latentsync-1.6 PATH") in out
        assert len(hub.requests) == n
    finally:
        hub.stop()


def test_hf_token_is_sent_to_the_hub(hub, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", "hf_testtoken")
    lock_path = tmp_path / "weights.lock"
    lock_engines(["echomimic-v2"], lock_path)
    assert run("download", "echomimic-v2", "--dir", tmp_path / "w", "--lock", lock_path)[0].exit_code == 0
    assert {r["authorization"] for r in hub.requests} == {"Bearer hf_testtoken"}


def test_unlocked_download_takes_only_the_manifest_files(hub, tmp_path):
    weights = tmp_path / "w"
    events: list[str] = []
    report = download(
        ["latentsync-1.6"],
        weights,
        read_lock(tmp_path / "none.lock"),
        expected_keys=lambda e, role: wh.TINY_UNET_KEYS if role == "unet" else None,
        on_event=events.append,
    )
    assert report.unlocked == ["latentsync-1.6"]
    assert any("not in weights.lock" in e for e in events)
    assert not (weights / "ByteDance/LatentSync-1.6/README.md").exists()  # allow_patterns kept it out
    paths = resolve("latentsync-1.6", weights, tmp_path / "none.lock")
    assert paths["unet"].is_file() and paths["whisper"].is_file()


def test_engines_sharing_a_repo_must_lock_the_same_revision(monkeypatch, online, tmp_path):
    hub = start_hub(monkeypatch, ["latentsync-1.5", "latentsync-1.6"])
    try:
        lock_path = tmp_path / "weights.lock"
        assert run("lock", "latentsync-1.5", "--lock", lock_path)[0].exit_code == 0
        hub.repos["stabilityai/sd-vae-ft-mse"]["config.json"] = (
            b'{"_class_name": "AutoencoderKL", "new": true}'
        )
        result, out = run("lock", "latentsync-1.6", "--lock", lock_path)
        assert result.exit_code == 2
        assert flat("lock them together: talkreel weights lock latentsync-1.6 latentsync-1.5") in out
        assert run("lock", "latentsync-1.6", "latentsync-1.5", "--lock", lock_path)[0].exit_code == 0
        revs = {
            f.revision
            for e in ("latentsync-1.5", "latentsync-1.6")
            for f in read_lock(lock_path).files(e)
            if f.repo.startswith("stabilityai")
        }
        assert revs == {hub.commit("stabilityai/sd-vae-ft-mse")}
    finally:
        hub.stop()


def test_an_unreachable_hub_is_one_line_with_what_to_do(online, monkeypatch, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    hub = wh.FakeHub(wh.hub_repos(["latentsync-1.6"]))
    lock_path = tmp_path / "weights.lock"
    from pipelines.weights.lock import Lock, LockedFile, write_lock

    files = [
        LockedFile(
            "unet",
            "ByteDance/LatentSync-1.6",
            hub.commit("ByteDance/LatentSync-1.6"),
            "latentsync_unet.pt",
            10,
            "0" * 64,
        )
    ]
    write_lock(Lock({"latentsync-1.6": files}, lock_path))
    result, out = run("download", "latentsync-1.6", "--dir", tmp_path / "w", "--lock", lock_path)
    assert result.exit_code == 2, result.output  # the lock lacks whisper and vae: refused before any request
    assert (
        flat("has no files for whisper, vae; a maintainer re-runs: talkreel weights lock latentsync-1.6")
        in out
    )

    result, out = run("lock", "latentsync-1.6", "--lock", tmp_path / "other.lock")
    assert result.exit_code == 4
    assert (
        flat(f"could not fetch ByteDance/LatentSync-1.6@main from http://127.0.0.1:{port} (ConnectError")
        in out
    )
    assert "Traceback" not in result.output


def test_lfs_files_follow_a_cdn_redirect_without_the_token(hub, monkeypatch, tmp_path):
    """The hub redirects LFS downloads to a CDN host: metadata comes from the redirect, the token stays home."""
    hub.cdn_host = "localhost"
    monkeypatch.setenv("HF_TOKEN", "hf_testtoken")
    lock_path, weights = tmp_path / "weights.lock", tmp_path / "w"
    lock_engines(["echomimic-v2"], lock_path)
    result, _ = run("download", "echomimic-v2", "--dir", weights, "--lock", lock_path)
    assert result.exit_code == 0, result.output
    cdn = [r for r in hub.requests if r["path"].startswith("/cdn/")]
    assert len(cdn) == 6 and {r["authorization"] for r in cdn} == {None}  # 4 .pth, tiny.pt, the VAE
    assert {r["authorization"] for r in hub.requests if not r["path"].startswith("/cdn/")} == {
        "Bearer hf_testtoken"
    }
    assert run("verify", "echomimic-v2", "--dir", weights, "--lock", lock_path)[0].exit_code == 0
