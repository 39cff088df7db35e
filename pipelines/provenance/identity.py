"""Signing identities for C2PA: where the user's certificate and key come from, and a local TEST identity.

Configuration, first match wins:
  1. TALKREEL_C2PA_CERT + TALKREEL_C2PA_KEY: a PEM certificate chain (signer first, then intermediates) and
     the signer's PEM private key;
  2. TALKREEL_C2PA_DIR, else <config>/talkreel/c2pa (XDG_CONFIG_HOME or ~/.config): a folder with
     `signer-chain.pem` and `signer.key` (what `talkreel provenance init` writes).

`create_test_identity` makes a self-signed CA and an end-entity signing certificate issued by it (EC P-256,
ES256, extended key usage emailProtection + documentSigning, as C2PA requires of a signer). Validators will
report its signatures as valid but the signer as untrusted: that identity proves nothing about who made a
file and is named "TEST" in every field a viewer shows.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import InputError

ENV_CERT = "TALKREEL_C2PA_CERT"
ENV_KEY = "TALKREEL_C2PA_KEY"
ENV_DIR = "TALKREEL_C2PA_DIR"
CHAIN_FILE = "signer-chain.pem"
KEY_FILE = "signer.key"
CA_FILE = "test-ca.pem"
CA_KEY_FILE = "test-ca.key"
TEST_ORG = "talkreel TEST identity (self-signed, not trusted)"
# OID 1.3.6.1.5.5.7.3.36 id-kp-documentSigning; not in cryptography's ExtendedKeyUsageOID table.
DOCUMENT_SIGNING = "1.3.6.1.5.5.7.3.36"


@dataclass(frozen=True)
class SigningIdentity:
    chain: Path  # PEM: signer certificate first, then intermediates
    key: Path
    alg: str = "es256"
    source: str = ""  # where the configuration came from, for the record


def default_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "talkreel" / "c2pa"


def configured_identity() -> SigningIdentity | None:
    """The user's signing identity, or None when none is configured (then outputs carry no manifest)."""
    cert, key = os.environ.get(ENV_CERT), os.environ.get(ENV_KEY)
    if cert or key:
        if not (cert and key):
            missing = ENV_KEY if cert else ENV_CERT
            raise InputError(None, missing, f"set both {ENV_CERT} and {ENV_KEY} (only one is set)")
        for var, value in ((ENV_CERT, cert), (ENV_KEY, key)):
            if not Path(value).is_file():
                raise InputError(value, var, "file not found")
        return SigningIdentity(Path(cert), Path(key), _alg_of(Path(key)), source="environment")
    folder = Path(os.environ[ENV_DIR]) if os.environ.get(ENV_DIR) else default_dir()
    chain, key_path = folder / CHAIN_FILE, folder / KEY_FILE
    if chain.is_file() and key_path.is_file():
        return SigningIdentity(chain, key_path, _alg_of(key_path), source=str(folder))
    if os.environ.get(ENV_DIR):
        raise InputError(folder, ENV_DIR, f"expected {CHAIN_FILE} and {KEY_FILE} in this folder")
    return None


def _alg_of(key_path: Path) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(key_path, "key", f"not an unencrypted PEM private key ({exc})") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {256: "es256", 384: "es384", 521: "es512"}.get(key.curve.key_size, "es256")
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise InputError(
        key_path, "key", f"unsupported key type {type(key).__name__}; use EC P-256/384, RSA or Ed25519"
    )


@dataclass(frozen=True)
class TestIdentity:
    folder: Path
    chain: Path
    key: Path
    ca: Path


def create_test_identity(folder: Path, overwrite: bool = False, days: int = 365) -> TestIdentity:
    """A self-signed test CA and a signer certificate issued by it, written into `folder` (keys mode 0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    paths = TestIdentity(folder, folder / CHAIN_FILE, folder / KEY_FILE, folder / CA_FILE)
    existing = [p for p in (paths.chain, paths.key, paths.ca) if p.exists()]
    if existing and not overwrite:
        raise InputError(existing[0], None, "already exists; pass --force to replace the test identity")

    now = dt.datetime.now(dt.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_ORG),
            ]
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("talkreel TEST CA - do not trust")
    no_usage = dict(
        content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days * 5))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **no_usage),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = (
        x509.CertificateBuilder()
        .subject_name(name("talkreel TEST signer"))
        .issuer_name(ca_name)
        .public_key(signer_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **no_usage),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.EMAIL_PROTECTION, x509.ObjectIdentifier(DOCUMENT_SIGNING)]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(signer_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    def pem(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    _write(paths.chain, pem(signer) + pem(ca), 0o644)
    _write(paths.ca, pem(ca), 0o644)
    _write(paths.key, key_pem(signer_key), 0o600)
    _write(folder / CA_KEY_FILE, key_pem(ca_key), 0o600)
    (folder / "README.txt").write_text(
        "TEST signing identity made by `talkreel provenance init`.\n"
        "Self-signed: C2PA validators report signatures made with it as valid but the signer as untrusted.\n"
        f"{CHAIN_FILE}: signer certificate + test CA; {KEY_FILE}: signer key; {CA_FILE}: the test CA, which\n"
        f"`talkreel verify --trust {CA_FILE}` accepts as an anchor for local checks. Never use it to publish.\n",
        encoding="utf-8",
    )
    return paths


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
