"""C2PA manifests (c2pa-python): build the claim for one output, embed it signed, read it back and judge it.

Everything here works offline. What does not: timestamping (no TSA is contacted, so a signature is only valid
while the signer's certificate is), OCSP revocation checks (reported as skipped), and the official C2PA trust
list (not fetched; a signer is "trusted" only against anchors the caller passes, e.g. `verify --trust`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import RenderError
from pipelines.provenance.identity import SigningIdentity

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
TRAINED = "trainedAlgorithmicMedia"
COMPOSITE = "compositeWithTrainedAlgorithmicMedia"
TALKREEL_ASSERTION = "org.talkreel.render"
UNTRUSTED = "signingCredential.untrusted"


def talkreel_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("talkreel")
    except PackageNotFoundError:
        return "0+unknown"


def digital_source_type(persona_is_video: bool) -> str:
    """A lip-synced persona video keeps recorded pixels around the mouth: a composite; a photo is all generated."""
    return IPTC + (COMPOSITE if persona_is_video else TRAINED)


def build_manifest(
    title: str,
    engine: str,
    weights: list[dict[str, Any]],
    persona_name: str,
    persona_is_video: bool,
    consent: dict[str, Any],
    applied: dict[str, Any],
) -> dict[str, Any]:
    """The manifest definition: a c2pa.created action plus talkreel's own assertion of how the file was made."""
    version = talkreel_version()
    return {
        "claim_generator_info": [{"name": "talkreel", "version": version}],
        "title": title,
        "format": "video/mp4",
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": digital_source_type(persona_is_video),
                            "softwareAgent": {"name": f"talkreel ({engine} engine)", "version": version},
                        }
                    ]
                },
            },
            {
                "label": TALKREEL_ASSERTION,
                "data": {
                    "engine": engine,
                    "weights": weights,
                    "persona": {"name": persona_name, "source": "video" if persona_is_video else "image"},
                    "consent": consent,
                    "disclosure": applied,
                },
            },
        ],
    }


def embed_manifest(mp4: Path, manifest: dict[str, Any], identity: SigningIdentity) -> None:
    """Sign `manifest` into `mp4` in place (through a temp file beside it and an atomic replace)."""
    import c2pa

    temp = mp4.with_name(f".{mp4.name}.c2pa-{os.getpid()}.mp4")
    try:
        info = c2pa.C2paSignerInfo(identity.alg, identity.chain.read_bytes(), identity.key.read_bytes(), None)
        with c2pa.Signer.from_info(info) as signer, c2pa.Builder(json.dumps(manifest)) as builder:
            builder.sign_file(mp4, temp, signer)
        os.replace(temp, mp4)
    except c2pa.C2paError as exc:
        raise RenderError(f"{mp4}: C2PA signing with {identity.chain} failed: {exc}") from None
    finally:
        temp.unlink(missing_ok=True)


@dataclass
class ManifestReport:
    present: bool
    verdict: str  # "absent" | "trusted" | "valid signature, untrusted signer" | "invalid"
    validation_state: str | None = None  # c2pa's own: Trusted / Valid / Invalid
    failures: list[str] = field(default_factory=list)
    signer: str | None = None
    claim_generator: str | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    talkreel: dict[str, Any] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_manifest(path: Path, trust_anchors: list[Path] | None = None) -> ManifestReport:
    """Read and validate the active manifest of `path`; `trust_anchors` are PEM CA files to trust."""
    import c2pa

    context = None
    if trust_anchors:
        anchors = "".join(Path(p).read_text(encoding="utf-8") for p in trust_anchors)
        context = c2pa.Context.from_dict({"trust": {"user_anchors": anchors}})
    try:
        reader = c2pa.Reader(str(path), context=context) if context else c2pa.Reader(str(path))
    except c2pa.C2paError as exc:
        if (
            "ManifestNotFound" in type(exc).__name__
            or "no JUMBF" in str(exc)
            or "not found" in str(exc).lower()
        ):
            return ManifestReport(False, "absent")
        return ManifestReport(True, "invalid", error=f"{type(exc).__name__}: {exc}")
    with reader:
        store = json.loads(reader.json())
        state = reader.get_validation_state()
    active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    failures = [f["code"] for f in results.get("failure", [])]
    if state == "Trusted":
        verdict = "trusted"
    elif state == "Valid" or (failures and set(failures) == {UNTRUSTED}):
        # c2pa reports "Valid" when every check passed except the signer's trust (no anchor vouches for it).
        verdict = "valid signature, untrusted signer"
    else:
        verdict = "invalid"
    actions, own = [], None
    for assertion in active.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            actions.extend(assertion.get("data", {}).get("actions", []))
        elif assertion.get("label") == TALKREEL_ASSERTION:
            own = assertion.get("data")
    signature = active.get("signature_info") or {}
    generator = (active.get("claim_generator_info") or [{}])[0]
    return ManifestReport(
        present=True,
        verdict=verdict,
        validation_state=state,
        failures=failures,
        signer=" / ".join(x for x in (signature.get("common_name"), signature.get("issuer")) if x) or None,
        claim_generator=f"{generator.get('name', '?')} {generator.get('version', '')}".strip()
        if generator
        else None,
        actions=[
            {"action": a.get("action"), "digitalSourceType": a.get("digitalSourceType")} for a in actions
        ],
        talkreel=own,
    )


def sign_output(
    mp4: Path,
    engine: str,
    weights: list[dict[str, Any]],
    persona_name: str,
    persona_is_video: bool,
    consent: dict[str, Any],
    applied: dict[str, Any],
    identity: SigningIdentity | None = None,
) -> dict[str, Any]:
    """Embed a signed manifest when a signing identity is configured; the dict says what happened (job record)."""
    from pipelines.provenance.identity import configured_identity

    identity = identity if identity is not None else configured_identity()
    if identity is None:
        return {
            "manifest": False,
            "reason": "no signing identity configured (TALKREEL_C2PA_CERT/KEY or TALKREEL_C2PA_DIR)",
        }
    manifest = build_manifest(mp4.name, engine, weights, persona_name, persona_is_video, consent, applied)
    embed_manifest(mp4, manifest, identity)
    test_identity = _is_test_chain(identity.chain)
    return {
        "manifest": True,
        "digital_source_type": digital_source_type(persona_is_video).rsplit("/", 1)[-1],
        "signer_config": identity.source,
        "alg": identity.alg,
        "test_identity": test_identity,
    }


def _is_test_chain(chain: Path) -> bool:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from pipelines.provenance.identity import TEST_ORG

    certs = x509.load_pem_x509_certificates(chain.read_bytes())
    return any(
        attr.value == TEST_ORG
        for cert in certs
        for attr in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    )
