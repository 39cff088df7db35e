"""Fixtures for the weights tests: tiny checkpoints in the upstream formats and a fake hub on 127.0.0.1.

The fake hub answers the same URLs as the model hub (`/{repo}/resolve/{rev}/{path}`, `/api/models/{repo}/revision/
{rev}`, `.../tree/{rev}`, `.../paths-info/{rev}`) with the same headers (X-Repo-Commit, ETag / X-Linked-Etag,
X-Linked-Size, Range -> 206), so huggingface_hub's real client code runs end to end; only the network peer is fake.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections import OrderedDict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]

# A LatentSync-style UNet state dict in miniature: official key names, tiny shapes.
TINY_UNET_KEYS: dict[str, tuple[int, ...]] = {
    "conv_in.weight": (8, 13, 3, 3),
    "conv_in.bias": (8,),
    "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": (8, 384),
    "down_blocks.0.motion_modules.0.temporal_transformer.proj_in.weight": (8, 8),
    "down_blocks.0.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.pos_encoder.pe": (
        1,
        24,
        8,
    ),
    "conv_out.weight": (4, 8, 3, 3),
}

TINY_WHISPER_DIMS = {
    "n_mels": 8,
    "n_audio_ctx": 6,
    "n_audio_state": 4,
    "n_audio_head": 2,
    "n_audio_layer": 1,
    "n_vocab": 11,
    "n_text_ctx": 3,
    "n_text_state": 4,
    "n_text_head": 2,
    "n_text_layer": 1,
}

# openai-whisper's AudioEncoder state dict for the dims above, written out by hand (not derived from the code
# under test): conv stem, positional embedding, one residual attention block, ln_post.
TINY_WHISPER_ENCODER: dict[str, tuple[int, ...]] = {
    "encoder.conv1.weight": (4, 8, 3),
    "encoder.conv1.bias": (4,),
    "encoder.conv2.weight": (4, 4, 3),
    "encoder.conv2.bias": (4,),
    "encoder.positional_embedding": (6, 4),
    "encoder.blocks.0.attn.query.weight": (4, 4),
    "encoder.blocks.0.attn.query.bias": (4,),
    "encoder.blocks.0.attn.key.weight": (4, 4),
    "encoder.blocks.0.attn.value.weight": (4, 4),
    "encoder.blocks.0.attn.value.bias": (4,),
    "encoder.blocks.0.attn.out.weight": (4, 4),
    "encoder.blocks.0.attn.out.bias": (4,),
    "encoder.blocks.0.attn_ln.weight": (4,),
    "encoder.blocks.0.attn_ln.bias": (4,),
    "encoder.blocks.0.mlp.0.weight": (16, 4),
    "encoder.blocks.0.mlp.0.bias": (16,),
    "encoder.blocks.0.mlp.2.weight": (4, 16),
    "encoder.blocks.0.mlp.2.bias": (4,),
    "encoder.blocks.0.mlp_ln.weight": (4,),
    "encoder.blocks.0.mlp_ln.bias": (4,),
    "encoder.ln_post.weight": (4,),
    "encoder.ln_post.bias": (4,),
}
TINY_WHISPER_DECODER: dict[str, tuple[int, ...]] = {
    "decoder.token_embedding.weight": (11, 4),
    "decoder.positional_embedding": (3, 4),
    "decoder.ln.weight": (4,),
}


def _tensors(shapes: dict[str, tuple[int, ...]], seed: int):
    import torch

    g = torch.Generator().manual_seed(seed)
    return OrderedDict((k, torch.randn(*s, generator=g)) for k, s in shapes.items())


def _torch_bytes(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def latentsync_unet_pt(seed: int = 0, keys: dict[str, tuple[int, ...]] | None = None) -> bytes:
    """Upstream layout: {"state_dict": OrderedDict, "global_step": int}."""
    return _torch_bytes({"state_dict": _tensors(keys or TINY_UNET_KEYS, seed), "global_step": 1000})


def whisper_tiny_pt(seed: int = 1, drop: str | None = None) -> bytes:
    """openai-whisper layout: {"dims": {...}, "model_state_dict": {...encoder.*, decoder.*}}."""
    shapes = {**TINY_WHISPER_ENCODER, **TINY_WHISPER_DECODER}
    if drop:
        shapes.pop(drop)
    return _torch_bytes({"dims": dict(TINY_WHISPER_DIMS), "model_state_dict": _tensors(shapes, seed)})


def flat_state_dict_pth(seed: int, numel: int = 64) -> bytes:
    """EchoMimic-style .pth: a flat {name: tensor} dict."""
    return _torch_bytes(_tensors({"conv_in.weight": (numel,), "conv_in.bias": (4,)}, seed))


def vae_files() -> dict[str, bytes]:
    """A diffusers AutoencoderKL folder (config.json + diffusion_pytorch_model.safetensors), tiny and random."""
    import tempfile

    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(8,),
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )
    with tempfile.TemporaryDirectory() as tmp:
        vae.save_pretrained(tmp)
        return {
            name: (Path(tmp) / name).read_bytes()
            for name in ("config.json", "diffusion_pytorch_model.safetensors")
        }


def unet_config_json() -> bytes:
    return json.dumps(
        {"_class_name": "UNet2DConditionModel", "block_out_channels": [8, 16], "cross_attention_dim": 8}
    ).encode()


def hub_repos(
    engine_ids: list[str], big: dict[tuple[str, str], int] | None = None
) -> dict[str, dict[str, bytes]]:
    """Every hub file the engines' manifest entries name, in the upstream formats, as {repo: {path: bytes}}.

    `big` makes chosen pickles larger ({(repo, path): number of float32 elements}) for the resume test.
    """
    from pipelines.weights.manifest import entries

    big = big or {}
    vae = None
    repos: dict[str, dict[str, bytes]] = {}
    for seed, engine_id in enumerate(engine_ids):
        for w in entries(engine_id):
            files = repos.setdefault(w.repo, {"README.md": f"# {w.repo}\n".encode()})
            for pattern in w.patterns:
                if pattern in files:
                    continue
                if w.convert == "latentsync_unet":
                    files[pattern] = latentsync_unet_pt(seed)
                elif w.convert == "whisper":
                    files[pattern] = whisper_tiny_pt(seed + 1)
                elif w.role == "vae" and w.repo == "stabilityai/sd-vae-ft-mse":
                    vae = vae or vae_files()
                    files[pattern] = vae[pattern]
                elif pattern.endswith("config.json"):
                    files[pattern] = unet_config_json()
                elif pattern.endswith((".pth", ".bin", ".pt")):
                    files[pattern] = flat_state_dict_pth(seed + len(files), big.get((w.repo, pattern), 64))
                elif "*" in pattern:
                    files[pattern.replace("*", "tokenizer.json")] = b'{"model": "tiny"}'
                else:
                    files[pattern] = hashlib.sha256(pattern.encode()).digest() * 4
    return repos


def write_snapshot(repos: dict[str, dict[str, bytes]], root: Path) -> Path:
    """Lay the repos out as `root/<org>/<name>/<path>`: what an air-gapped copy of the hub repos looks like."""
    for repo, files in repos.items():
        for path, data in files.items():
            dest = root / repo / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
    return root


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _is_lfs(path: str) -> bool:
    return path.endswith((".pt", ".pth", ".bin", ".safetensors"))


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """A model hub on 127.0.0.1 serving `repos` ({repo: {path: bytes}}) at one commit per repo."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.requests: list[dict] = []
        self.stall: dict[tuple[str, str], tuple[int, threading.Event]] = {}
        self.corrupt: set[tuple[str, str]] = set()
        # Like the real hub, LFS files can redirect to a CDN on another host ("localhost" vs "127.0.0.1").
        self.cdn_host: str | None = None
        self._server: ThreadingHTTPServer | None = None

    def commit(self, repo: str) -> str:
        digest = hashlib.sha1(repo.encode())
        for path in sorted(self.repos[repo]):
            digest.update(path.encode() + hashlib.sha256(self.repos[repo][path]).digest())
        return digest.hexdigest()

    def stall_after(self, repo: str, path: str, n_bytes: int) -> threading.Event:
        """The next GET of this file sends `n_bytes`, then hangs until the returned event is set."""
        event = threading.Event()
        self.stall[(repo, path)] = (n_bytes, event)
        return event

    def _entry(self, repo: str, path: str) -> dict:
        data = self.repos[repo][path]
        out = {"type": "file", "path": path, "size": len(data), "oid": _git_blob_sha1(data)}
        if _is_lfs(path):
            out["lfs"] = {"oid": sha256(data), "size": len(data), "pointerSize": 134}
        return out

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send_json(self, payload, status=200):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _not_found(self, code="EntryNotFound"):
                self.send_response(404)
                self.send_header("X-Error-Code", code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _repo_rev(self, org, name, rev):
                repo = f"{org}/{name}"
                if repo not in hub.repos:
                    return None, None
                rev = unquote(rev)
                if rev not in ("main", hub.commit(repo)):
                    return repo, None
                return repo, hub.commit(repo)

            def _record(self, body=None):
                hub.requests.append(
                    {
                        "method": self.command,
                        "path": unquote(urlsplit(self.path).path),
                        "range": self.headers.get("Range"),
                        "authorization": self.headers.get("Authorization"),
                        "body": body,
                    }
                )

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                self._record(form)
                parts = urlsplit(self.path).path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and parts[4] == "paths-info":
                    repo, commit = self._repo_rev(parts[2], parts[3], parts[5])
                    if commit is None:
                        return self._not_found("RevisionNotFound")
                    found = [hub._entry(repo, p) for p in form.get("paths", []) if p in hub.repos[repo]]
                    return self._send_json(found)
                self._not_found()

            def do_HEAD(self):
                self._resolve(send_body=False)

            def do_GET(self):
                parts = urlsplit(self.path).path.strip("/").split("/")
                if parts[:2] == ["api", "models"]:
                    self._record()
                    repo, commit = self._repo_rev(parts[2], parts[3], parts[5])
                    if repo is None:
                        return self._not_found("RepoNotFound")
                    if commit is None:
                        return self._not_found("RevisionNotFound")
                    files = sorted(hub.repos[repo])
                    if parts[4] == "revision":
                        return self._send_json(
                            {"id": repo, "sha": commit, "siblings": [{"rfilename": f} for f in files]}
                        )
                    if parts[4] == "tree":
                        return self._send_json([hub._entry(repo, f) for f in files])
                    return self._not_found()
                self._resolve(send_body=True)

            def _resolve(self, send_body: bool):
                self._record()
                parts = unquote(urlsplit(self.path).path).strip("/").split("/")
                if parts[0] == "cdn" and len(parts) == 4:
                    repo, path = "/".join(parts[1:3]), parts[3]
                    path = next(
                        (p for p in hub.repos.get(repo, {}) if sha256(hub.repos[repo][p]) == path), None
                    )
                    if path is None:
                        return self._not_found()
                    return self._serve(repo, path, hub.commit(repo), send_body)
                if len(parts) < 5 or parts[2] != "resolve":
                    return self._not_found()
                repo, commit = self._repo_rev(parts[0], parts[1], parts[3])
                path = "/".join(parts[4:])
                if repo is None or commit is None or path not in hub.repos[repo]:
                    return self._not_found()
                if hub.cdn_host and _is_lfs(path):
                    data = hub.repos[repo][path]
                    port = hub._server.server_address[1]
                    self.send_response(302)
                    self.send_header("Location", f"http://{hub.cdn_host}:{port}/cdn/{repo}/{sha256(data)}")
                    self.send_header("X-Repo-Commit", commit)
                    self.send_header("X-Linked-Etag", f'"{sha256(data)}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self._serve(repo, path, commit, send_body)

            def _serve(self, repo: str, path: str, commit: str, send_body: bool):
                data = hub.repos[repo][path]
                if (repo, path) in hub.corrupt:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                body = data[start:]
                self.send_response(206 if start else 200)
                self.send_header("X-Repo-Commit", commit)
                if _is_lfs(path):
                    self.send_header("X-Linked-Etag", f'"{sha256(hub.repos[repo][path])}"')
                    self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("ETag", f'"{_git_blob_sha1(hub.repos[repo][path])}"')
                self.send_header("Content-Length", str(len(body)))
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if not send_body:
                    return
                stall = hub.stall.pop((repo, path), None)
                if stall is not None:
                    n_bytes, event = stall
                    self.wfile.write(body[:n_bytes])
                    self.wfile.flush()
                    event.wait(60)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            for _n, event in list(self.stall.values()):
                event.set()
            self._server.shutdown()
            self._server.server_close()

    def gets(self, repo: str, path: str) -> list[dict]:
        """The GETs that fetched a file's bytes (from the resolve URL, or from the CDN after a redirect)."""
        cdn = f"/cdn/{repo}/{sha256(self.repos[repo][path])}"
        resolve = f"/{repo}/resolve/{self.commit(repo)}/{path}"
        return [
            r
            for r in self.requests
            if r["method"] == "GET" and (r["path"].endswith(resolve) or r["path"] == cdn)
        ]


class Unpicklable:
    """An arbitrary class inside a checkpoint: what weights_only=True must refuse to load."""

    def __init__(self):
        self.payload = "code would run here"


def malicious_pt() -> bytes:
    import torch

    return _torch_bytes({"state_dict": {"conv_in.weight": torch.zeros(2)}, "extra": Unpicklable()})
