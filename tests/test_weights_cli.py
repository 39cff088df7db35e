"""`talkreel weights` offline: import, list, path, verify, the exit-4 path, and resolve() for engines.

A temporary folder laid out like the hub repos stands in for an air-gapped copy; nothing here needs the network.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from pipelines.errors import InputError, WeightsMissingError
from pipelines.weights import resolve
from pipelines.weights.lock import Lock, LockedFile, read_lock, write_lock
from pipelines.weights.manifest import MANIFEST, entries
from pipelines.weights.store import import_files, status
from tests import weights_helpers as wh


def run(*args):
    result = CliRunner().invoke(app, ["weights", *map(str, args)])
    return result, " ".join(result.output.split())


def has(output: str, text: str) -> bool:
    """Rich folds long lines (paths, hashes) anywhere on stderr: compare with all whitespace removed."""
    return "".join(text.split()) in "".join(output.split())


@pytest.fixture
def snapshot(tmp_path):
    repos = wh.hub_repos(["latentsync-1.6", "echomimic-v2"])
    return repos, wh.write_snapshot(repos, tmp_path / "airgap")


def lock_for(engine_id, repos, path):
    """A weights.lock for an engine written from the bytes of the fake hub (what `weights lock` would record)."""
    files = []
    for w in entries(engine_id):
        for pattern in w.patterns:
            data = repos[w.repo][pattern]
            files.append(LockedFile(w.role, w.repo, "a" * 40, pattern, len(data), wh.sha256(data)))
    lock = Lock(engines={engine_id: files}, path=path)
    write_lock(lock)
    return read_lock(path)


def test_manifest_lists_every_engine_with_repos_and_licences():
    assert set(MANIFEST) == {
        "latentsync-1.5",
        "latentsync-1.6",
        "echomimic-v2",
        "echomimic-v2-acc",
        "echomimic-v3-flash",
        "echomimic-v3-preview",
        "syncnet",
        "musetalk-1.5",
    }
    (sync,) = entries("syncnet")
    assert sync.repo == "ByteDance/LatentSync-1.6" and sync.patterns == ("stable_syncnet.pt",)
    mt = {w.role: w for w in entries("musetalk-1.5")}
    assert mt["unet"].patterns == ("musetalkV15/unet.pth",) and mt["unet"].repo == "TMElyralab/MuseTalk"
    assert mt["unet_config"].patterns == ("musetalkV15/musetalk.json",)
    # the card's licence tag and the README's wording differ: both are recorded
    assert "creativeml-openrail-m" in mt["unet"].licence and "even commercially" in mt["unet"].licence
    assert mt["whisper"].repo == "openai/whisper-tiny"
    ls = {w.role: w for w in entries("latentsync-1.6")}
    assert ls["unet"].repo == "ByteDance/LatentSync-1.6" and ls["unet"].patterns == ("latentsync_unet.pt",)
    assert ls["whisper"].patterns == ("whisper/tiny.pt",)
    assert ls["vae"].repo == "stabilityai/sd-vae-ft-mse"
    assert set(ls["vae"].patterns) == {"config.json", "diffusion_pytorch_model.safetensors"}
    assert "openrail++" in ls["unet"].licence
    for ws in MANIFEST.values():
        for w in ws:
            assert w.licence and "/" in w.repo
            assert "insightface" not in w.repo.lower()


def test_missing_weights_exit_4_with_the_exact_command(tmp_path):
    empty = tmp_path / "empty"
    result, out = run("path", "latentsync-1.6", "--dir", empty)
    assert result.exit_code == 4
    assert has(out, f"run: talkreel weights download latentsync-1.6 --dir {empty}")
    assert "latentsync_unet.pt missing" in out

    with pytest.raises(WeightsMissingError, match="run: talkreel weights download latentsync-1.5$"):
        resolve("latentsync-1.5")  # the default dir ($TALKREEL_WEIGHTS): no --dir in the command


def test_list_without_engines_shows_every_engine(tmp_path):
    result, _ = run("list", "--dir", tmp_path, "--lock", tmp_path / "none.lock", "--json")
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert {r["engine"] for r in payload["files"]} == set(MANIFEST)
    assert {r["state"] for r in payload["files"]} == {"missing"}
    assert payload["weights_dir"] == str(tmp_path)


def test_unknown_engine_is_an_input_error(tmp_path):
    result, out = run("list", "latentsync-9", "--dir", tmp_path)
    assert result.exit_code == 2
    assert "unknown engine 'latentsync-9'" in out and "latentsync-1.6" in out


def test_import_then_resolve_latentsync_with_a_tiny_key_list(snapshot, tmp_path):
    repos, airgap = snapshot
    weights = tmp_path / "w"
    lock = Lock({}, tmp_path / "none.lock")
    report = import_files(
        "latentsync-1.6",
        [airgap],
        weights,
        lock,
        expected_keys=lambda e, role: wh.TINY_UNET_KEYS if role == "unet" else None,
    )
    assert len(report.placed) == 4 and not report.still_missing
    assert {p.name for p in report.converted} == {"latentsync_unet.safetensors", "whisper_tiny.safetensors"}

    paths = resolve("latentsync-1.6", weights, tmp_path / "none.lock")
    assert paths["unet"] == weights / "ByteDance/LatentSync-1.6/latentsync_unet.safetensors"
    assert paths["whisper"].name == "whisper_tiny.safetensors" and paths["whisper_dims"].is_file()
    assert paths["vae"] == weights / "stabilityai/sd-vae-ft-mse"

    from diffusers import AutoencoderKL
    from safetensors.torch import load_file

    vae = AutoencoderKL.from_pretrained(paths["vae"])  # a real diffusers folder, loaded locally
    assert vae.config.latent_channels == 4
    assert set(load_file(str(paths["unet"]))) == set(wh.TINY_UNET_KEYS)


def test_cli_import_refuses_a_unet_that_is_not_latentsyncs(snapshot, tmp_path):
    """Through the CLI the key list is the LatentSync engine's own (1,246 keys): a tiny UNet is refused, exit 2."""
    pytest.importorskip("pipelines.engines.latentsync.unet")
    _, airgap = snapshot
    weights = tmp_path / "w"
    result, out = run("import", "latentsync-1.6", airgap, "--dir", weights, "--lock", tmp_path / "none.lock")
    assert result.exit_code == 2, out
    assert has(out, "latentsync_unet.pt: state_dict: keys do not match the engine's model")
    assert "missing (e.g." in out and "with the wrong shape" in out
    assert not (weights / "ByteDance/LatentSync-1.6/latentsync_unet.safetensors").exists()


def test_cli_import_list_path_verify_echomimic(snapshot, tmp_path):
    repos, airgap = snapshot
    weights = tmp_path / "w"
    lock_path = tmp_path / "weights.lock"
    lock_for("echomimic-v2", repos, lock_path)

    result, out = run("import", "echomimic-v2", airgap, "--dir", weights, "--lock", lock_path)
    assert result.exit_code == 0, out
    assert "imported 8" in out and "converted 5" in out

    result, _ = run("list", "echomimic-v2", "--dir", weights, "--lock", lock_path, "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)["files"]
    assert {r["state"] for r in rows} == {"verified"}
    assert all(r["converted"] for r in rows if r["path"].endswith(".pth") or r["path"].endswith(".pt"))

    result, human = run("list", "echomimic-v2", "--dir", weights, "--lock", lock_path)
    assert result.exit_code == 0 and "echomimic-v2 (locked" in human and "verified" in human

    result, _ = run("path", "echomimic-v2", "--dir", weights, "--lock", lock_path, "--json")
    assert result.exit_code == 0
    paths = json.loads(result.stdout)
    assert paths["denoising_unet"].endswith("BadToBest/EchoMimicV2/denoising_unet.safetensors")
    assert paths["whisper"].endswith("ByteDance/LatentSync-1.6/whisper/whisper_tiny.safetensors")
    result, _ = run("path", "echomimic-v2", "--role", "vae", "--dir", weights, "--lock", lock_path)
    assert result.stdout.strip() == str(weights / "stabilityai/sd-vae-ft-mse")

    result, out = run("verify", "echomimic-v2", "--dir", weights, "--lock", lock_path)
    assert result.exit_code == 0, out
    assert "all 8 files verified" in out

    # Import again: nothing is copied twice.
    result, out = run("import", "echomimic-v2", airgap, "--dir", weights, "--lock", lock_path)
    assert "imported 0, already present 8, converted 0" in out


def test_verify_names_corrupted_truncated_and_missing_files(snapshot, tmp_path):
    repos, airgap = snapshot
    weights = tmp_path / "w"
    lock_path = tmp_path / "weights.lock"
    lock_for("echomimic-v2", repos, lock_path)
    assert run("import", "echomimic-v2", airgap, "--dir", weights, "--lock", lock_path)[0].exit_code == 0

    # Same size, one flipped byte: only the sha256 sees it.
    pose = weights / "BadToBest/EchoMimicV2/pose_encoder.pth"
    data = bytearray(pose.read_bytes())
    data[100] ^= 0x01
    pose.write_bytes(bytes(data))
    result, out = run("verify", "echomimic-v2", "--dir", weights, "--lock", lock_path)
    assert result.exit_code == 2
    want = wh.sha256(repos["BadToBest/EchoMimicV2"]["pose_encoder.pth"])
    assert has(out, f"error: {pose}: corrupt: sha256 {wh.sha256(bytes(data))}, expected sha256 {want}")

    # An interrupted copy: shorter than locked.
    vae = weights / "stabilityai/sd-vae-ft-mse/diffusion_pytorch_model.safetensors"
    full = vae.read_bytes()
    vae.write_bytes(full[:1000])
    result, out = run("verify", "echomimic-v2", "--dir", weights, "--lock", lock_path, "--json")
    assert result.exit_code == 2
    states = {r["path"]: r["state"] for r in json.loads(result.stdout)["files"]}
    assert states["diffusion_pytorch_model.safetensors"] == "truncated"
    assert states["pose_encoder.pth"] == "corrupt"
    assert has(result.output, f"error: {vae}: truncated: 1000 bytes, expected {len(full)} bytes")

    # resolve() (what a render calls) refuses the truncated file without hashing gigabytes: exit 4 path.
    with pytest.raises(WeightsMissingError, match="diffusion_pytorch_model.safetensors truncated"):
        resolve("echomimic-v2", weights, lock_path)

    # Restore both, delete one: missing -> exit 4 with the command.
    pose.write_bytes(repos["BadToBest/EchoMimicV2"]["pose_encoder.pth"])
    vae.write_bytes(full)
    (weights / "lambdalabs/sd-image-variations-diffusers/unet/config.json").unlink()
    result, out = run("verify", "echomimic-v2", "--dir", weights, "--lock", lock_path)
    assert result.exit_code == 4
    assert "run: talkreel weights download echomimic-v2" in out


def test_import_with_a_lock_refuses_a_corrupted_copy(snapshot, tmp_path):
    repos, airgap = snapshot
    lock_path = tmp_path / "weights.lock"
    lock_for("echomimic-v2", repos, lock_path)
    bad = airgap / "BadToBest/EchoMimicV2/motion_module.pth"
    data = bytearray(bad.read_bytes())
    data[-5] ^= 0xFF
    bad.write_bytes(bytes(data))
    weights = tmp_path / "w"
    result, out = run("import", "echomimic-v2", airgap, "--dir", weights, "--lock", lock_path)
    assert result.exit_code == 2
    assert has(out, f"error: {bad}: sha256: {wh.sha256(bytes(data))}, weights.lock expects")
    assert not (weights / "BadToBest/EchoMimicV2/motion_module.pth").exists()
    assert not list(weights.rglob("*.importing"))

    bad.write_bytes(bytes(data[:-10]))
    result, out = run("import", "echomimic-v2", airgap, "--dir", weights, "--lock", lock_path)
    assert result.exit_code == 2 and "(truncated)" in out


def test_import_matches_hub_cache_layout_and_single_files(tmp_path):
    """A huggingface_hub cache (models--org--name/snapshots/<rev>/...) and loose files both match by path tail."""
    repos = wh.hub_repos(["latentsync-1.5"])
    cache = tmp_path / "hub"
    for repo, files in repos.items():
        snap = cache / ("models--" + repo.replace("/", "--")) / "snapshots" / ("b" * 40)
        for path, data in files.items():
            (snap / path).parent.mkdir(parents=True, exist_ok=True)
            (snap / path).write_bytes(data)
    weights = tmp_path / "w"
    keys = lambda e, role: wh.TINY_UNET_KEYS if role == "unet" else None  # noqa: E731
    report = import_files("latentsync-1.5", [cache], weights, Lock({}, tmp_path / "x"), keys)
    assert len(report.placed) == 4
    assert resolve("latentsync-1.5", weights, tmp_path / "x")["unet"].is_file()

    loose = tmp_path / "loose"
    loose.mkdir()
    (loose / "latentsync_unet.pt").write_bytes(repos["ByteDance/LatentSync-1.5"]["latentsync_unet.pt"])
    report = import_files(
        "latentsync-1.5", [loose / "latentsync_unet.pt"], tmp_path / "w2", Lock({}, tmp_path / "x"), keys
    )
    assert [p.name for p in report.placed] == ["latentsync_unet.pt"]
    assert len(report.still_missing) == 3


def test_ambiguous_unlocked_import_is_refused(tmp_path):
    """Two config.json that could both be the VAE's, and no lock to tell them apart: refuse, do not guess."""
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        (d / "config.json").write_text("{}")
    with pytest.raises(InputError, match="2 files could be stabilityai/sd-vae-ft-mse/config.json"):
        import_files("latentsync-1.6", [a, b], tmp_path / "w", Lock({}, tmp_path / "x"))


def test_import_of_an_unrelated_folder_says_what_was_expected(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("hi")
    result, out = run("import", "latentsync-1.6", tmp_path / "src", "--dir", tmp_path / "w")
    assert result.exit_code == 2
    assert "no file here matches the weights of latentsync-1.6" in out and "latentsync_unet.pt" in out


def test_verify_without_a_lock_entry_is_an_error(tmp_path):
    result, out = run("verify", "latentsync-1.6", "--dir", tmp_path, "--lock", tmp_path / "weights.lock")
    assert result.exit_code == 2
    assert "not locked" in out and "talkreel weights lock latentsync-1.6" in out


def test_list_unlocked_status(snapshot, tmp_path):
    _, airgap = snapshot
    weights = tmp_path / "w"
    import_files("echomimic-v2", [airgap], weights, Lock({}, tmp_path / "x"))
    rows = status(["echomimic-v2"], weights, Lock({}, tmp_path / "x"))
    assert {r.state for r in rows} == {"unlocked"}
    assert all(r.actual_sha256 for r in rows)  # hashed while importing, remembered for list


def test_resolve_never_loads_the_hub_client(snapshot, tmp_path):
    """What a render calls reads the disk only: huggingface_hub is not even imported."""
    _, airgap = snapshot
    weights = tmp_path / "w"
    import_files("echomimic-v2", [airgap], weights, Lock({}, tmp_path / "x"))
    code = (
        "import sys; from pathlib import Path; from pipelines.weights import resolve; "
        f"p = resolve('echomimic-v2', Path({str(weights)!r}), Path({str(tmp_path / 'x')!r})); "
        "print(p['vae'].is_dir(), 'huggingface_hub' in sys.modules)"
    )
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=wh.REPO_ROOT, check=True
    )
    assert out.stdout.split() == ["True", "False"]
