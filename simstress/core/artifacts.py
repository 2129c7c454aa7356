"""The artifact store: anything expensive that cells share, built once, stored under a key of what determines it.

A trained network, a manipulated network, extracted activations, converted weights: each is an *artifact*,
described by an `ArtifactSpec` — the kind (a builder registered with `@artifact_builder`), its parameters and the
artifacts it is built from. The key is a hash of exactly that (kind, builder version, parameters, the inputs'
keys), so equal specs share one artifact and any change to what determines it gives a new one.

Layout under a root (the results folder), one folder per kind (e.g. `networks`):

    <kind>/<key>/<files written by the builder>
    <kind>/<key>/card.json     what it is: spec, builder, file sha256s, content sha256, fingerprint, build time, ...

A builder writes its files into an empty temporary folder beside the final one; the store hashes them, writes
the card and renames the folder into place, so a reader sees a whole artifact or none. The card's `sha256`
(content hash over the files) is what records name, for provenance; its `fingerprint` (per file holding arrays:
their count, Σ|x| and Σx² in float64) is what tells a rebuild that differs only by rounding (another CPU's float32
forward pass) from one that differs in substance. The card holds its own hash (`card_sha256`), so a hand edit
of the card shows.

Nothing is used unchecked: `get` verifies every file against the card (sha256, cached per process by size and
mtime; hashing costs ~0.1 s per 50 MB) and the card against its own hash, and raises `ArtifactFault` — an
`EnvironmentFault` naming the file and how to restore or rebuild it — on any mismatch. A folder without a
readable card is `broken`: never silently rebuilt over, never used.

    store = ArtifactStore("results", device="cpu")   # the device builders compute on (not part of the key)
    store.state(spec); store.ensure(spec) -> Artifact; store.get(spec) -> Artifact; artifact.file("weights.pt")

`ensure` is `build_files` (the builder's work, anywhere the results folder is reachable) then `commit` (hashes,
card, rename: the driver's part), so that an executor can build in a worker while only the driver writes cards.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Literal, Mapping

import numpy as np
import torch
from filelock import FileLock

from .files import EnvironmentFault, jsonable, sha256_file, write_json_atomic
from .provenance import package_versions

CARD = "card.json"
CARD_SCHEMA = 2  # 1 → 2: the card's own hash and the files' fingerprints
# Relative difference of a fingerprint's sums within which two builds of one artifact hold the same values: float32
# rounding (another CPU's kernels) moves them by ~1e-8; another input (one image of 600 replaced) by ~1e-3.
FINGERPRINT_RTOL = 1e-5
Builder = Callable[[Mapping[str, Any], Mapping[str, "Artifact"], Path, str], Mapping[str, Any]]
RESERVED = frozenset({"records", "conformance", "figures", "perf"})  # the results folder's other contents


class ArtifactError(RuntimeError):
    """An artifact that could not be built, or whose builder is unknown or misbehaves."""


class ArtifactFault(ArtifactError, EnvironmentFault):
    """An artifact that is missing where it must exist, or that changed since it was built (a file or its card):
    the environment's fault, not a metric's; the message names what and how to restore or rebuild it."""


@dataclass(frozen=True)
class BuilderSpec:
    kind: str
    version: int
    fn: Builder = field(repr=False, compare=False)
    source: str = ""


_BUILDERS: dict[str, BuilderSpec] = {}


def artifact_builder(kind: str, *, version: int = 1) -> Callable[[Builder], Builder]:
    """Register `fn(params, inputs, out_dir, device) -> card extras` as the builder of artifacts of `kind`.

    The builder writes its files into `out_dir` (empty) from `params` and the built `inputs`, deterministically
    from the parameters (seeds included), computing on `device` ("cpu", "cuda", ...); what it returns
    (accuracies, ...) goes into the card. `kind` names the artifacts' folder under the results root. Bump
    `version` whenever the built bytes would change: every key, and so every dependent cell, changes with it.
    """
    if not kind.isidentifier() or kind in RESERVED:
        raise ValueError(f"artifact kind must be an identifier other than {sorted(RESERVED)}, got {kind!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"builder version must be an int >= 1, got {version!r}")

    def decorate(fn: Builder) -> Builder:
        source = f"{fn.__module__}.{fn.__qualname__}"
        old = _BUILDERS.get(kind)
        if old is not None and old.source != source:
            raise ValueError(f"artifact kind {kind!r} has two builders: {old.source} and {source}")
        _BUILDERS[kind] = BuilderSpec(kind, version, fn, source)
        return fn

    return decorate


def builder(kind: str) -> BuilderSpec:
    try:
        return _BUILDERS[kind]
    except KeyError:
        known = ", ".join(sorted(_BUILDERS)) or "none"
        raise ArtifactError(f"no builder is registered for artifact kind {kind!r} (known: {known}); the module "
                            f"that defines it must be imported first") from None


def _canonical(obj: Any) -> str:
    return json.dumps(jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def card_hash(card: Mapping[str, Any]) -> str:
    """sha256 of the card's canonical JSON without its own hash."""
    return hashlib.sha256(_canonical({k: v for k, v in card.items() if k != "card_sha256"}).encode()).hexdigest()


def _arrays(obj: Any) -> list[np.ndarray]:
    if isinstance(obj, torch.Tensor):
        return [] if obj.is_complex() else [obj.detach().cpu().double().numpy()]
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, Mapping):
        return [a for v in obj.values() for a in _arrays(v)]
    if isinstance(obj, (list, tuple)):
        return [a for v in obj for a in _arrays(v)]
    return []


def fingerprint(path: Path) -> list[float] | None:
    """[count, Σ|x|, Σx²] in float64 over every numeric array a .pt or .npz file holds; None for any other file."""
    if path.suffix == ".pt":
        arrays = _arrays(torch.load(path, map_location="cpu", weights_only=True))
    elif path.suffix == ".npz":
        with np.load(path) as data:
            arrays = [data[k] for k in sorted(data.files)]
    else:
        return None
    values = [a.astype(np.float64, copy=False).ravel() for a in arrays if a.dtype.kind in "biuf"]
    return [float(sum(v.size for v in values)), float(sum(np.abs(v).sum() for v in values)),
            float(sum(np.square(v).sum() for v in values))]


def fingerprints_match(a: Any, b: Any, rtol: float = FINGERPRINT_RTOL) -> bool:
    """Whether two fingerprints ({file: [count, Σ|x|, Σx²]}) describe the same values up to rounding."""
    if not (isinstance(a, Mapping) and isinstance(b, Mapping)) or set(a) != set(b) or not a:
        return False
    for name in a:
        x, y = a[name], b[name]
        if x is None or y is None or len(x) != 3 or len(y) != 3 or x[0] != y[0]:
            if x != y:
                return False
            continue
        if not all(math.isclose(u, v, rel_tol=rtol, abs_tol=0.0) for u, v in zip(x[1:], y[1:])):
            return False
    return True


_HASHED: dict[str, tuple[tuple[int, int, int], str]] = {}  # path -> ((size, mtime_ns, inode), sha256)


def verified_sha256(path: Path) -> str:
    """The file's sha256, hashed once per process while its size, mtime and inode stay the same."""
    st = path.stat()
    stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
    cached = _HASHED.get(str(path))
    if cached is None or cached[0] != stamp:
        cached = (stamp, sha256_file(path))
        _HASHED[str(path)] = cached
    return cached[1]


@dataclass(frozen=True)
class ArtifactSpec:
    """What determines an artifact: its kind, JSON-able parameters, and named input artifacts."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[tuple[str, ArtifactSpec], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(jsonable(dict(self.params)))))

    @property
    def key(self) -> str:
        """sha256 (first 20 hex digits) of kind, builder version, parameters and the inputs' keys."""
        ident = {"kind": self.kind, "version": builder(self.kind).version, "params": dict(self.params),
                 "inputs": {name: spec.key for name, spec in self.inputs}}
        return hashlib.sha256(_canonical(ident).encode()).hexdigest()[:20]

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for a worker process or another machine); `from_dict` inverts it."""
        return {"kind": self.kind, "params": dict(self.params),
                "inputs": [[name, spec.to_dict()] for name, spec in self.inputs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArtifactSpec:
        return cls(data["kind"], data["params"], tuple((n, cls.from_dict(s)) for n, s in data["inputs"]))


@dataclass(frozen=True)
class Artifact:
    """A built artifact: its folder and its card."""

    spec: ArtifactSpec
    path: Path
    card: Mapping[str, Any]

    @property
    def sha256(self) -> str:
        return self.card["sha256"]

    def file(self, name: str) -> Path:
        if name not in self.card["files"]:
            raise ArtifactError(f"artifact {self.spec.kind}/{self.spec.key} has no file {name!r}; it has "
                                f"{', '.join(sorted(self.card['files']))}")
        return self.path / name


State = Literal["built", "missing", "broken"]


class ArtifactStore:
    """Artifacts under `root/<kind>/<key>/`: built, missing or broken? build it (once, on `device`)? where is it?"""

    def __init__(self, root: str | Path, device: str = "cpu") -> None:
        self.root = Path(root)
        self.device = device

    def path(self, spec: ArtifactSpec) -> Path:
        return self.root / spec.kind / spec.key

    def _remedy(self, spec: ArtifactSpec) -> str:
        folder = self.path(spec)
        return (f"restore it (`git checkout -- {folder}` if it is committed), or delete {folder} and rerun "
                f"`simstress run` to rebuild it")

    def state(self, spec: ArtifactSpec) -> tuple[State, str]:
        """"missing" (no folder: `ensure` builds it), "broken" (a folder without a readable, unedited card: never
        built over, never used; the reason says what to do) or "built" (its files are checked when used)."""
        folder = self.path(spec)
        if not folder.exists():
            return "missing", ""
        try:
            self.card(spec)
        except ArtifactFault as exc:
            return "broken", str(exc)
        return "built", ""

    def have(self, spec: ArtifactSpec) -> bool:
        return self.state(spec)[0] == "built"

    def card(self, spec: ArtifactSpec) -> Mapping[str, Any]:
        """The artifact's card, checked against its own hash (not its files: `get` does that); ArtifactFault when
        it is missing, unreadable or edited."""
        path = self.path(spec) / CARD
        try:
            card = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ArtifactFault(f"artifact {spec.kind}/{spec.key} has no card ({path}); "
                                + self._remedy(spec)) from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactFault(f"unreadable card {path} ({exc}); " + self._remedy(spec)) from exc
        if not isinstance(card, dict) or not isinstance(card.get("files"), dict) or "sha256" not in card:
            raise ArtifactFault(f"{path} is not an artifact card; " + self._remedy(spec))
        if card.get("schema", 1) >= 2 and card.get("card_sha256") != card_hash(card):
            raise ArtifactFault(f"{path} was edited after the artifact was built (its own hash does not match); "
                                + self._remedy(spec))
        return MappingProxyType(card)

    def get(self, spec: ArtifactSpec) -> Artifact:
        """The built artifact, every file checked against its card; ArtifactFault when it is not built (`ensure`
        builds it), broken, or any file is missing or changed."""
        folder = self.path(spec)
        if not folder.exists():
            raise ArtifactFault(f"artifact {spec.kind}/{spec.key} is not built under {self.root}; `simstress run` "
                                f"builds what its cells need")
        card = self.card(spec)
        for name, expected in card["files"].items():
            file = folder / name
            if not file.is_file():
                raise ArtifactFault(f"{file} is missing from artifact {spec.kind}/{spec.key}; " + self._remedy(spec))
            if verified_sha256(file) != expected:
                raise ArtifactFault(f"{file} does not match its card (sha256 {verified_sha256(file)[:12]}…, the card "
                                    f"says {expected[:12]}…): it changed after the artifact was built; "
                                    + self._remedy(spec))
        return Artifact(spec, folder, card)

    def ensure(self, spec: ArtifactSpec) -> Artifact:
        """The artifact, built first (inputs before it) when it is missing; ArtifactFault when it is broken.

        Processes that ensure one artifact at once (two runs on one results folder, parallel test workers) build it
        once: the others wait on a lock file beside it (`<kind>/.<key>.lock`), then use what the first built."""
        if self.state(spec)[0] == "missing":
            for _, sub in spec.inputs:
                self.ensure(sub)
            lock = self.path(spec).parent / f".{spec.key}.lock"
            lock.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(lock):
                try:
                    if self.state(spec)[0] == "missing":
                        return self.commit(spec, self.build_files(spec))
                finally:  # nothing left behind: a waiter that locked the removed file checks the state again
                    lock.unlink(missing_ok=True)
        return self.get(spec)

    def build_files(self, spec: ArtifactSpec) -> dict[str, Any]:
        """Run the builder into a new temporary folder beside the artifact's final one (its inputs must be built).

        Returns plain data for `commit`: the folder, the builder's card extras, the seconds and the device. This is
        the part a worker process or another machine sharing the results folder can do; `commit` is the driver's.
        """
        inputs = {name: self.get(s) for name, s in spec.inputs}
        b = builder(spec.kind)
        final = self.path(spec)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{spec.key}.", suffix=".tmp"))
        try:
            start = time.perf_counter()
            extras = jsonable(dict(b.fn(spec.params, inputs, tmp, self.device) or {}))
            seconds = time.perf_counter() - start
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return {"folder": str(tmp), "extras": extras, "seconds": seconds, "device": self.device}

    def discard(self, spec: ArtifactSpec) -> None:
        """Remove the temporary folders of builds of `spec` that never committed (a build cancelled by Ctrl-C)."""
        for tmp in self.path(spec).parent.glob(f".{spec.key}.*.tmp"):
            shutil.rmtree(tmp, ignore_errors=True)

    def commit(self, spec: ArtifactSpec, staged: Mapping[str, Any]) -> Artifact:
        """Hash the files `build_files` wrote, write the card and rename the folder into place (atomically)."""
        tmp, final, b = Path(staged["folder"]), self.path(spec), builder(spec.kind)
        try:
            inputs = {name: self.get(s) for name, s in spec.inputs}
            paths = [p for p in sorted(tmp.rglob("*")) if p.is_file()]
            if not paths:
                raise ArtifactError(f"builder {b.source} wrote no file for {spec.kind}/{spec.key}")
            files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in paths}
            content = hashlib.sha256("".join(f"{n}\0{h}\n" for n, h in files.items()).encode()).hexdigest()
            card = {
                "schema": CARD_SCHEMA, "kind": spec.kind, "key": spec.key, "builder": b.source,
                "builder_version": b.version, "params": dict(spec.params),
                "inputs": {name: {"key": a.spec.key, "sha256": a.sha256} for name, a in inputs.items()},
                "files": files, "sha256": content, "fingerprint": fingerprints(tmp, files),
                "build_seconds": round(staged["seconds"], 3), "build_device": staged["device"],
                "packages": package_versions(), **staged["extras"],
            }
            write_json_atomic(tmp / CARD, {**card, "card_sha256": card_hash(card)})
            shareable(tmp)
            try:
                tmp.rename(final)
            except OSError:  # built meanwhile by another process: keep theirs
                if not self.have(spec):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.get(spec)

def upgrade_card(folder: Path) -> bool:
    """Rewrite a schema-1 card (no fingerprints, no hash of its own) at the current schema, after checking every file
    against it; True when it was rewritten. ArtifactFault when a file does not match."""
    path = folder / CARD
    card = json.loads(path.read_text(encoding="utf-8"))
    if card.get("schema", 1) >= CARD_SCHEMA:
        return False
    for name, expected in card["files"].items():
        if sha256_file(folder / name) != expected:
            raise ArtifactFault(f"{folder / name} does not match its card; restore it before upgrading the card")
    card.update(schema=CARD_SCHEMA, fingerprint=fingerprints(folder, card["files"]))
    write_json_atomic(path, {**card, "card_sha256": card_hash(card)})
    return True


def fingerprints(folder: Path, files: Mapping[str, str]) -> dict[str, list[float] | None]:
    """The fingerprint of each file of an artifact (None for files that hold no arrays)."""
    return {name: fingerprint(folder / name) for name in files}


def shareable(folder: Path) -> None:
    """Give a new artifact folder the permissions the umask allows (a temporary folder is made private, 0700), so
    that a results folder shared by a group is readable by it."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)
