"""The local weights folder: what is present, verified, downloaded, imported, and what engines load.

Layout: `<weights dir>/<org>/<repo>/<path in repo>` — one folder per hub repo (shared by every engine that uses
the repo), the converted safetensors beside their pickled sources, and `.talkreel/hashes.json` remembering the
sha256 of each file by (size, mtime) so `list` and `download` need not re-read gigabytes; `verify` always re-reads.
The weights dir is `--dir`, else $TALKREEL_WEIGHTS, else ~/.cache/talkreel/weights.
Only `download` and `lock` touch the network; `resolve` (what engines call at render time) reads the disk only.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from pipelines.cache import FileHasher
from pipelines.errors import InputError, WeightsMissingError
from pipelines.weights import convert as conv
from pipelines.weights.lock import Lock, LockedFile, hub_endpoint, matches, read_lock
from pipelines.weights.manifest import WeightFile, entries

Event = Callable[[str], None]
"""Receives one human-readable line per step (the CLI prints them; library callers may ignore them)."""

ExpectedKeys = Callable[[str, str], "Mapping[str, tuple[int, ...]] | None"]
"""(engine id, role) -> the key/shape set a converted checkpoint must have, or None when no list is known."""


_CHUNK = 8 * 1024 * 1024


def _hasher(weights_dir: Path) -> FileHasher:
    """sha256 of the files under the weights dir, trusted while their size and mtime are unchanged."""
    return FileHasher(weights_dir / ".talkreel" / "hashes.json", root=weights_dir)


def default_weights_dir() -> Path:
    env = os.environ.get("TALKREEL_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "talkreel" / "weights"


@dataclass
class FileStatus:
    """One hub file of an engine on this machine.

    state: missing | truncated (size differs from the lock) | corrupt (sha256 differs) | verified (sha256 equals
    the lock) | unverified (present, not hashed since it changed) | unlocked (present, no lock entry to compare).
    """

    engine: str
    role: str
    repo: str
    path: str
    local: Path
    state: str
    size: int | None
    expected_size: int | None
    expected_sha256: str | None = None
    actual_sha256: str | None = None
    revision: str | None = None
    converted: bool | None = None  # None: used as downloaded

    def as_dict(self) -> dict:
        return {
            "engine": self.engine,
            "role": self.role,
            "repo": self.repo,
            "revision": self.revision,
            "path": self.path,
            "local": str(self.local),
            "state": self.state,
            "size": self.size,
            "expected_size": self.expected_size,
            "expected_sha256": self.expected_sha256,
            "actual_sha256": self.actual_sha256,
            "converted": self.converted,
        }


@dataclass
class _Wanted:
    entry: WeightFile
    path: str  # a repo path, or the glob pattern itself when nothing matching is on disk
    locked: LockedFile | None
    is_pattern: bool = False


def _wanted(engine_id: str, weights_dir: Path, lock: Lock) -> list[_Wanted]:
    locked = lock.files(engine_id)
    out: list[_Wanted] = []
    for w in entries(engine_id):
        if locked is not None:
            mine = [_Wanted(w, lf.path, lf) for lf in locked if lf.role == w.role and lf.repo == w.repo]
            # A manifest role the lock does not know (the manifest grew after locking) shows as missing.
            out.extend(mine or [_Wanted(w, w.patterns[0], None, is_pattern=True)])
            continue
        for pattern in w.patterns:
            if not any(ch in pattern for ch in "*?["):
                out.append(_Wanted(w, pattern, None))
                continue
            base = weights_dir / w.repo
            found = sorted(
                p.relative_to(base).as_posix()
                for p in base.glob(pattern)
                if p.is_file() and matches(p.relative_to(base).as_posix(), pattern)
            )
            out.extend(_Wanted(w, f, None) for f in found)
            if not found:
                out.append(_Wanted(w, pattern, None, is_pattern=True))
    return out


def _converted_state(w: _Wanted, weights_dir: Path, source_sha: str | None) -> bool | None:
    if w.entry.convert is None or w.is_pattern or not conv.is_pickle(w.path):
        return None
    out = weights_dir / w.entry.repo / conv.output_rel(w.entry.convert, w.path)
    recorded = conv.converted_source_sha256(out) if out.exists() else None
    if recorded is None:
        return False
    return source_sha is None or recorded == source_sha


def status(
    engine_ids: list[str], weights_dir: Path | None = None, lock: Lock | None = None, *, reread: bool = False
) -> list[FileStatus]:
    """The state of every file the engines need; `reread` re-hashes every present file (what `verify` does)."""
    weights_dir = weights_dir or default_weights_dir()
    lock = lock if lock is not None else read_lock()
    cache = _hasher(weights_dir)
    rows: list[FileStatus] = []
    for engine_id in engine_ids:
        for w in _wanted(engine_id, weights_dir, lock):
            local = weights_dir / w.entry.repo / w.path
            lf = w.locked
            row = FileStatus(
                engine=engine_id,
                role=w.entry.role,
                repo=w.entry.repo,
                path=w.path,
                local=local,
                state="missing",
                size=None,
                expected_size=lf.size if lf else None,
                expected_sha256=lf.sha256 if lf else None,
                revision=lf.revision if lf else None,
            )
            if not w.is_pattern and local.is_file():
                row.size = local.stat().st_size
                if lf is not None and row.size != lf.size:
                    row.state = "truncated" if row.size < lf.size else "corrupt"
                else:
                    row.actual_sha256 = cache(local, reread=True) if reread else cache.known(local)
                    if lf is None:
                        row.state = "unlocked"
                    elif row.actual_sha256 is None:
                        row.state = "unverified"
                    else:
                        row.state = "verified" if row.actual_sha256 == lf.sha256 else "corrupt"
            row.converted = _converted_state(w, weights_dir, lf.sha256 if lf else row.actual_sha256)
            rows.append(row)
    return rows


def resolve(
    engine_id: str, weights_dir: Path | None = None, lock_path: Path | None = None
) -> dict[str, Path]:
    """Local paths of an engine's weights by role, reading the disk only (never the network).

    Checks presence, the locked sizes (a truncated download shows here) and that pickled checkpoints were
    converted from the locked bytes; the full sha256 check is `talkreel weights verify`. Anything not ready is a
    WeightsMissingError (exit 4) naming the command that fixes it.
    Roles are the manifest's (e.g. unet, whisper, vae); pickled checkpoints resolve to their converted
    safetensors, diffusers/tokenizer folders to the folder, and a whisper role also gives `<role>_dims` (JSON).
    """
    explicit_dir = weights_dir is not None
    weights_dir = weights_dir or default_weights_dir()
    lock = read_lock(lock_path)
    problems: list[str] = []
    for row in status([engine_id], weights_dir, lock):
        if row.state in ("missing", "truncated", "corrupt"):
            problems.append(f"{row.repo}/{row.path} {row.state}")
        elif row.converted is False:
            problems.append(f"{row.repo}/{row.path} not converted to safetensors")
    if problems:
        command = f"talkreel weights download {engine_id}" + (f" --dir {weights_dir}" if explicit_dir else "")
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise WeightsMissingError(
            f"{engine_id} weights are not ready in {weights_dir} ({shown}); run: {command}"
        )
    paths: dict[str, Path] = {}
    for w in entries(engine_id):
        target = weights_dir / w.repo / w.target
        paths[w.role] = target
        if w.convert == "whisper":
            paths[f"{w.role}_dims"] = conv.whisper_dims_path(target)
    return paths


def locked_revisions(engine_id: str, lock_path: Path | None = None) -> dict[str, str]:
    """repo -> pinned commit for an engine (empty when unlocked): what a render's record names."""
    files = read_lock(lock_path).files(engine_id) or []
    return {f.repo: f.revision for f in files}


def convert_engine(
    engine_id: str,
    weights_dir: Path | None = None,
    lock: Lock | None = None,
    expected_keys: ExpectedKeys | None = None,
    on_event: Event | None = None,
) -> list[Path]:
    """Convert every present pickled checkpoint of an engine whose safetensors is missing or stale."""
    weights_dir = weights_dir or default_weights_dir()
    lock = lock if lock is not None else read_lock()
    cache = _hasher(weights_dir)
    done: list[Path] = []
    for w in _wanted(engine_id, weights_dir, lock):
        if w.entry.convert is None or w.is_pattern or not conv.is_pickle(w.path):
            continue
        source = weights_dir / w.entry.repo / w.path
        if not source.is_file():
            continue
        sha = cache(source, reread=False)
        if w.locked is not None and sha != w.locked.sha256:
            continue  # a corrupt source is reported by verify/download, never converted
        output = weights_dir / w.entry.repo / conv.output_rel(w.entry.convert, w.path)
        keys = expected_keys(engine_id, w.entry.role) if expected_keys else None
        if on_event and not (output.exists() and conv.converted_source_sha256(output) == sha):
            checked = (
                ""
                if keys is not None or w.entry.convert == "whisper"
                else " (no key list known: not key-checked)"
            )
            on_event(f"converting {w.entry.repo}/{w.path} -> {output.name}{checked}")
        if conv.convert(
            w.entry.convert, source, output, source_sha256=sha, source_repo=w.entry.repo, expected_keys=keys
        ):
            done.append(output)
    return done


_FIX = (
    "check the network or HF_ENDPOINT, set HF_TOKEN for gated repos, then run the command again "
    "(finished files are kept, the interrupted one continues), or copy the files in with: "
    "talkreel weights import {engine} PATH"
)


@contextmanager
def hub_errors(what: str, fix: str):
    """Turn huggingface_hub's network/HTTP errors into one line that says what failed and what to do."""
    import httpx2  # what huggingface_hub 2.x raises for transport and HTTP errors
    from huggingface_hub.errors import FileMetadataError, LocalEntryNotFoundError, OfflineModeIsEnabled

    try:
        yield
    except (httpx2.HTTPError, FileMetadataError, LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        endpoint = hub_endpoint() or "https://huggingface.co"
        raise WeightsMissingError(
            f"could not fetch {what} from {endpoint} ({type(exc).__name__}: {first}); {fix}"
        ) from None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class DownloadReport:
    downloaded: list[Path] = field(default_factory=list)
    already_present: list[Path] = field(default_factory=list)
    converted: list[Path] = field(default_factory=list)
    unlocked: list[str] = field(default_factory=list)  # engines fetched at a floating revision


def download(
    engine_ids: list[str],
    weights_dir: Path | None = None,
    lock: Lock | None = None,
    expected_keys: ExpectedKeys | None = None,
    on_event: Event | None = None,
) -> DownloadReport:
    """Fetch what is missing (the locked revision when locked), verify sha256, convert pickles once.

    Interrupted downloads resume: huggingface_hub keeps partial files under `<repo dir>/.cache/huggingface`
    and continues them with HTTP range requests. HF_ENDPOINT, HF_TOKEN and HF_HOME are honoured by
    huggingface_hub; with HF_HUB_OFFLINE set nothing is fetched and whatever is missing is reported.
    """
    weights_dir = weights_dir or default_weights_dir()
    lock = lock if lock is not None else read_lock()
    report = DownloadReport()
    cache = _hasher(weights_dir)
    say = on_event or (lambda _m: None)
    for engine_id in engine_ids:
        entries(engine_id)  # unknown ids fail before anything is fetched
        locked = lock.files(engine_id)
        if locked is None:
            _download_unlocked(engine_id, weights_dir, cache, report, say)
        else:
            _download_locked(engine_id, locked, weights_dir, cache, report, say)
        report.converted += convert_engine(engine_id, weights_dir, lock, expected_keys, on_event)
    return report


def lock_gaps(engine_id: str, locked: list[LockedFile]) -> list[str]:
    """Manifest roles of an engine that its lock entry has no file for (the lock predates the manifest)."""
    have = {(f.role, f.repo) for f in locked}
    return [w.role for w in entries(engine_id) if (w.role, w.repo) not in have]


def _download_locked(
    engine_id: str,
    locked: list[LockedFile],
    weights_dir: Path,
    cache: FileHasher,
    report: DownloadReport,
    say: Event,
) -> None:
    if gaps := lock_gaps(engine_id, locked):
        raise InputError(
            None,
            f"weights.lock: engines.{engine_id}",
            f"has no files for {', '.join(gaps)}; a maintainer re-runs: talkreel weights lock {engine_id}",
        )
    todo: list[LockedFile] = []
    for lf in locked:
        local = weights_dir / lf.repo / lf.path
        if local.is_file() and local.stat().st_size == lf.size and cache(local, reread=False) == lf.sha256:
            report.already_present.append(local)
        else:
            todo.append(lf)
    if todo and _offline():
        names = ", ".join(f"{lf.repo}/{lf.path}" for lf in todo[:3])
        raise WeightsMissingError(
            f"{engine_id}: HF_HUB_OFFLINE is set and {len(todo)} file(s) are missing or damaged ({names}); "
            f"copy them in with: talkreel weights import {engine_id} PATH"
        )
    for lf in todo:
        say(f"{engine_id}: {lf.repo}@{lf.revision[:12]} {lf.path} ({human_size(lf.size)})")
        with hub_errors(f"{lf.repo}/{lf.path}", _FIX.format(engine=engine_id)):
            local = _fetch_locked(lf, weights_dir)
        actual = cache(local, reread=True)
        if actual != lf.sha256:
            cache.forget(local)
            local.unlink(missing_ok=True)
            raise InputError(
                local,
                "sha256",
                f"downloaded {lf.repo}@{lf.revision[:12]}/{lf.path} has sha256 {actual}, weights.lock expects "
                f"{lf.sha256}; the file was removed",
            )
        report.downloaded.append(local)


def _partial_path(weights_dir: Path, lf: LockedFile) -> Path:
    # Named by the expected sha256: bytes of one locked file can never be appended to another's.
    return weights_dir / ".talkreel" / "partial" / f"{lf.sha256}.part"


def _fetch_locked(lf: LockedFile, weights_dir: Path) -> Path:
    """Fetch one locked file into place, continuing a partial file that an interrupted run left behind.

    huggingface_hub 2.x resumes a dropped connection within one call but deletes its partial file when the
    process dies; for plain HTTP (the hub's LFS files, mirrors) the partial bytes are kept here under
    `.talkreel/partial/` and continued with a range request through huggingface_hub's own `http_get`.
    Xet-backed files go through `hf_hub_download`, whose Xet chunk cache (under HF_HOME) keeps finished chunks.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    dest = weights_dir / lf.repo / lf.path
    url = hf_hub_url(lf.repo, lf.path, revision=lf.revision, endpoint=hub_endpoint())
    meta = get_hf_file_metadata(url, endpoint=hub_endpoint())
    if meta.commit_hash and meta.commit_hash != lf.revision:
        raise InputError(
            None, lf.repo, f"the hub served commit {meta.commit_hash} for pinned revision {lf.revision}"
        )
    if meta.xet_file_data is not None:
        from huggingface_hub.utils._runtime import is_xet_available

        if is_xet_available():
            if dest.exists():
                dest.unlink()  # a damaged copy must not short-circuit the download
            return Path(
                hf_hub_download(
                    lf.repo,
                    lf.path,
                    revision=lf.revision,
                    local_dir=weights_dir / lf.repo,
                    endpoint=hub_endpoint(),
                )
            )
    partial = _partial_path(weights_dir, lf)
    partial.parent.mkdir(parents=True, exist_ok=True)
    if partial.exists() and partial.stat().st_size > lf.size:
        partial.unlink()
    resume = partial.stat().st_size if partial.exists() else 0
    headers = build_hf_headers()
    if urlsplit(meta.location).hostname != urlsplit(url).hostname:
        headers.pop("authorization", None)  # a redirect to a CDN's signed URL must not carry the hub token
    with open(partial, "ab") as f:
        http_get(
            meta.location,
            f,
            resume_size=resume,
            headers=headers,
            expected_size=lf.size,
            displayed_filename=lf.path,
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, dest)
    return dest


def _download_unlocked(
    engine_id: str, weights_dir: Path, cache: FileHasher, report: DownloadReport, say: Event
) -> None:
    from huggingface_hub import snapshot_download

    by_repo: dict[str, list[str]] = {}
    for w in entries(engine_id):
        by_repo.setdefault(w.repo, []).extend(w.patterns)
    if _offline():
        missing = [
            row for row in status([engine_id], weights_dir, Lock({}, Path())) if row.state == "missing"
        ]
        if missing:
            names = ", ".join(f"{r.repo}/{r.path}" for r in missing[:3])
            raise WeightsMissingError(
                f"{engine_id}: HF_HUB_OFFLINE is set and {len(missing)} file(s) are missing ({names}); "
                f"copy them in with: talkreel weights import {engine_id} PATH"
            )
        return
    say(
        f"{engine_id}: not in weights.lock — fetching the current 'main' revision (pin it: talkreel weights lock {engine_id})"
    )
    report.unlocked.append(engine_id)
    for repo, patterns in by_repo.items():
        say(f"{engine_id}: {repo} {', '.join(sorted(set(patterns)))}")
        with hub_errors(repo, _FIX.format(engine=engine_id)):
            root = Path(
                snapshot_download(
                    repo,
                    allow_patterns=sorted(set(patterns)),
                    local_dir=weights_dir / repo,
                    endpoint=hub_endpoint(),
                )
            )
        for pattern in set(patterns):
            for p in root.glob(pattern):
                if p.is_file():
                    cache(p, reread=False)
                    report.downloaded.append(p)


@dataclass
class ImportReport:
    placed: list[Path] = field(default_factory=list)
    already_present: list[Path] = field(default_factory=list)
    still_missing: list[str] = field(default_factory=list)
    converted: list[Path] = field(default_factory=list)


def _candidates(sources: list[Path]) -> list[tuple[Path, tuple[str, ...]]]:
    out: list[tuple[Path, tuple[str, ...]]] = []
    for src in sources:
        if src.is_file():
            out.append((src, (src.name,)))
        elif src.is_dir():
            for p in sorted(src.rglob("*")):
                rel = p.relative_to(src).parts
                # huggingface_hub's own bookkeeping (.cache/huggingface, .incomplete parts) is never a weight.
                if (
                    p.is_file()
                    and not any(part.startswith(".") for part in rel)
                    and not p.name.endswith(".incomplete")
                ):
                    out.append((p, rel))
        else:
            raise InputError(src, None, "no such file or folder")
    return out


def _suffix_match(parts: tuple[str, ...], pattern: str) -> str | None:
    """The repo path a file stands for when the tail of its relative path matches `pattern` (None otherwise)."""
    depth = pattern.count("/") + 1
    if len(parts) < depth:
        return None
    tail = "/".join(parts[-depth:])
    return tail if matches(tail, pattern) else None


def _repo_hint(path: Path, repo: str) -> bool:
    """Whether a file's path names its repo (a clone `LatentSync-1.6/...` or a hub cache `models--ByteDance--...`)."""
    name = repo.split("/")[-1]
    cache_name = "models--" + repo.replace("/", "--")
    return any(part in (name, cache_name) for part in path.parts)


def import_files(
    engine_id: str,
    sources: list[Path],
    weights_dir: Path | None = None,
    lock: Lock | None = None,
    expected_keys: ExpectedKeys | None = None,
    on_event: Event | None = None,
) -> ImportReport:
    """Copy an engine's files from local folders/files (e.g. an air-gapped copy of the hub repos) into place.

    Files are matched to manifest entries by the tail of their relative path (`whisper/tiny.pt`), so a plain
    clone, a `local_dir` download or a hub cache snapshot all work. With a lock, a candidate must have the
    locked size and sha256 — among same-named files (several `config.json`) the locked bytes pick the right
    one, and a mismatch is an error naming the file. Then pickles are converted once.
    """
    weights_dir = weights_dir or default_weights_dir()
    lock = lock if lock is not None else read_lock()
    say = on_event or (lambda _m: None)
    cands = _candidates([Path(s).expanduser() for s in sources])
    cache = _hasher(weights_dir)
    report = ImportReport()
    locked = lock.files(engine_id)

    wanted: list[tuple[WeightFile, str, LockedFile | None, list[Path]]] = []
    for w in entries(engine_id):
        if locked is not None:
            for lf in (lf for lf in locked if lf.role == w.role and lf.repo == w.repo):
                hits = [p for p, parts in cands if _suffix_match(parts, lf.path) == lf.path]
                wanted.append((w, lf.path, lf, hits))
            continue
        for pattern in w.patterns:
            by_path: dict[str, list[Path]] = {}
            for p, parts in cands:
                if (repo_path := _suffix_match(parts, pattern)) is not None:
                    by_path.setdefault(repo_path, []).append(p)
            if not by_path:
                wanted.append((w, pattern, None, []))
            for repo_path, hits in sorted(by_path.items()):
                if len(hits) > 1:
                    named = [h for h in hits if _repo_hint(h, w.repo)]
                    if len(named) != 1:
                        raise InputError(
                            hits[0],
                            None,
                            f"{len(hits)} files could be {w.repo}/{repo_path} ({', '.join(map(str, hits[:3]))}); "
                            f"import that repo's folder on its own, or lock the engine first so sha256 decides",
                        )
                    hits = named
                wanted.append((w, repo_path, None, hits))

    if not any(hits for *_, hits in wanted):
        examples = ", ".join(sorted({p for w in entries(engine_id) for p in w.patterns})[:4])
        raise InputError(
            sources[0] if len(sources) == 1 else None,
            None,
            f"no file here matches the weights of {engine_id} (expected e.g. {examples})",
        )

    for w, repo_path, lf, hits in wanted:
        dest = weights_dir / w.repo / repo_path
        if lf is not None and dest.is_file() and dest.stat().st_size == lf.size:
            if cache(dest, reread=False) == lf.sha256:
                report.already_present.append(dest)
                continue
        if not hits:
            if not dest.is_file():
                report.still_missing.append(f"{w.repo}/{repo_path}")
            continue
        placed = _place(hits, dest, lf, cache, say)
        report.placed.append(placed)
    report.converted = convert_engine(engine_id, weights_dir, lock, expected_keys, on_event)
    return report


def _place(hits: list[Path], dest: Path, lf: LockedFile | None, cache: FileHasher, say: Event) -> Path:
    """Copy the first candidate that has the locked bytes (any candidate when unlocked), hashing as it copies."""
    mismatch: tuple[Path, str, str] | None = None
    for src in hits:
        size = src.stat().st_size
        if lf is not None and size != lf.size:
            why = "truncated" if size < lf.size else "not the locked file"
            mismatch = mismatch or (src, "size", f"{size} bytes, weights.lock expects {lf.size} ({why})")
            continue
        if src.resolve() == dest.resolve():
            digest, tmp = cache(dest, reread=True), None
        else:
            say(f"importing {src} -> {dest}")
            digest, tmp = _copy_hashing(src, dest)
        if lf is not None and digest != lf.sha256:
            mismatch = mismatch or (
                src,
                "sha256",
                f"{digest}, weights.lock expects {lf.sha256} (corrupted or another version)",
            )
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            continue
        if tmp is not None:
            os.replace(tmp, dest)
        cache.put(dest, digest)
        return dest
    assert mismatch is not None
    raise InputError(*mismatch)


def _copy_hashing(src: Path, dest: Path) -> tuple[str, Path]:
    """Copy to a temporary name beside `dest` (the caller moves it into place once the hash is accepted)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".importing")
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            digest.update(chunk)
            fout.write(chunk)
    return digest.hexdigest(), tmp


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
