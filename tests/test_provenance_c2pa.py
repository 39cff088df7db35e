"""C2PA end to end through the CLI: a test identity, a signed MP4, `talkreel verify` on it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from pipelines.media.audio import OUTPUT_RATE
from pipelines.media.video_out import encode_final
from pipelines.provenance.c2pa_manifest import COMPOSITE, TRAINED, read_manifest, sign_output
from pipelines.provenance.identity import SigningIdentity, configured_identity
from pipelines.provenance.watermark import Watermarker
from tests.compose_helpers import clip_frame, tone, write_wav

SIZE = (320, 256)
CONSENT = {"granted_by": "Ada Lovelace", "granted_on": "2026-01-05", "scope": "company intro videos"}


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    folder = tmp_path_factory.mktemp("c2pa") / "id"
    result = CliRunner().invoke(app, ["provenance", "init", "--dir", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    paths = json.loads(result.stdout)
    assert paths["test_identity"] is True
    return folder, SigningIdentity(folder / "signer-chain.pem", folder / "signer.key")


def _mp4(path, wm_id="3fa2c901"):
    marker = Watermarker(wm_id)
    frames = [marker.embed(clip_frame(i, SIZE)) for i in range(10)]
    wav = write_wav(path.with_suffix(".wav"), tone(0.4, OUTPUT_RATE), OUTPUT_RATE)
    return encode_final(iter(frames), 10, 25.0, SIZE, wav, path)


def _verify(*args):
    result = CliRunner().invoke(app, ["verify", *map(str, args), "--json"])
    return result.exit_code, (json.loads(result.stdout) if result.stdout.strip() else None), result


def test_init_refuses_to_overwrite_without_force(identity):
    folder, _ = identity
    again = CliRunner().invoke(app, ["provenance", "init", "--dir", str(folder)])
    assert again.exit_code == 2 and "--force" in again.output
    assert (folder / "signer.key").stat().st_mode & 0o077 == 0


def test_signed_output_verifies_as_valid_signature_untrusted_signer(identity, tmp_path):
    folder, ident = identity
    mp4 = _mp4(tmp_path / "out.mp4")
    applied = {"label": {"text": "AI-generated"}, "watermark_id": "3fa2c901"}
    record = sign_output(mp4, "preview", [], "Ada Lovelace", False, CONSENT, applied, identity=ident)
    assert record["manifest"] and record["test_identity"] and record["digital_source_type"] == TRAINED

    code, report, _ = _verify(mp4)
    assert code == 0
    c2 = report["c2pa"]
    assert c2["present"] and c2["validation_state"] == "Valid"
    assert c2["verdict"] == "valid signature, untrusted signer"
    assert c2["failures"] == ["signingCredential.untrusted"]
    assert c2["actions"] == [
        {
            "action": "c2pa.created",
            "digitalSourceType": f"http://cv.iptc.org/newscodes/digitalsourcetype/{TRAINED}",
        }
    ]
    assert c2["talkreel"]["consent"] == CONSENT and c2["talkreel"]["engine"] == "preview"
    assert "TEST" in c2["signer"]
    assert report["watermark"]["id"] == "3fa2c901"  # signing did not touch the frames

    code, trusted, _ = _verify(mp4, "--trust", folder / "test-ca.pem")
    assert code == 0 and trusted["c2pa"]["verdict"] == "trusted"


def test_lip_synced_persona_video_is_a_composite(identity, tmp_path):
    _, ident = identity
    mp4 = _mp4(tmp_path / "video.mp4")
    sign_output(
        mp4,
        "latentsync-1.6",
        [{"file": "unet.safetensors", "sha256": "0" * 64}],
        "Ada",
        True,
        CONSENT,
        {},
        ident,
    )
    report = read_manifest(mp4)
    assert report.actions[0]["digitalSourceType"].endswith(COMPOSITE)
    assert report.talkreel["weights"][0]["file"] == "unet.safetensors"


def test_a_changed_file_is_invalid(identity, tmp_path):
    _, ident = identity
    mp4 = _mp4(tmp_path / "t.mp4")
    sign_output(mp4, "preview", [], "Ada", False, CONSENT, {}, ident)
    data = bytearray(mp4.read_bytes())
    data[-500] ^= 0xFF  # inside the media data, covered by the manifest's hash
    mp4.write_bytes(bytes(data))
    code, report, _ = _verify(mp4)
    assert report["c2pa"]["verdict"] == "invalid"
    assert "assertion.bmffHash.mismatch" in report["c2pa"]["failures"]


def test_unsigned_unmarked_file_reports_neither_and_exits_3(tmp_path):
    wav = write_wav(tmp_path / "a.wav", np.zeros(OUTPUT_RATE // 2, np.float32), OUTPUT_RATE)
    plain = encode_final(
        iter([clip_frame(i, SIZE) for i in range(10)]), 10, 25.0, SIZE, wav, tmp_path / "plain.mp4"
    )
    code, report, result = _verify(plain)
    assert code == 3
    assert report["c2pa"] == read_manifest(plain).as_dict() and not report["c2pa"]["present"]
    assert not report["watermark"]["found"]
    human = CliRunner().invoke(app, ["verify", str(plain)])
    assert human.exit_code == 3 and "no manifest" in human.output and "not found" in human.output


def test_no_identity_configured_means_no_manifest(tmp_path, monkeypatch):
    monkeypatch.delenv("TALKREEL_C2PA_CERT", raising=False)
    monkeypatch.delenv("TALKREEL_C2PA_KEY", raising=False)
    monkeypatch.delenv("TALKREEL_C2PA_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "empty-config"))
    assert configured_identity() is None
    mp4 = _mp4(tmp_path / "n.mp4")
    record = sign_output(mp4, "preview", [], "Ada", False, CONSENT, {})
    assert record["manifest"] is False and "TALKREEL_C2PA" in record["reason"]


def test_identity_from_environment(identity, monkeypatch):
    folder, _ = identity
    monkeypatch.setenv("TALKREEL_C2PA_DIR", str(folder))
    assert configured_identity().chain == folder / "signer-chain.pem"
    monkeypatch.setenv("TALKREEL_C2PA_CERT", str(folder / "signer-chain.pem"))
    from pipelines.errors import InputError

    with pytest.raises(InputError, match="TALKREEL_C2PA_KEY"):
        configured_identity()
    monkeypatch.setenv("TALKREEL_C2PA_KEY", str(folder / "signer.key"))
    found = configured_identity()
    assert found.source == "environment" and found.alg == "es256"


def test_verify_missing_file_is_an_input_error(tmp_path):
    result = CliRunner().invoke(app, ["verify", str(tmp_path / "nope.mp4")])
    assert result.exit_code == 2 and "file not found" in result.output


def test_verify_a_file_that_is_not_a_video_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video", encoding="utf-8")
    result = CliRunner().invoke(app, ["verify", str(bad)])
    assert result.exit_code == 2 and "not a readable video" in result.output
