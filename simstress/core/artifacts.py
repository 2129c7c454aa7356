"""The artifact store: anything expensive that cells share, built once, stored under a key of what determines it.

A trained network, a manipulated network, extracted activations, converted weights: each is an *artifact*,
described by an `ArtifactSpec` — the kind (a builder registered with `@artifact_builder`), its parameters and the
artifacts it is built from. The key is a hash of exactly that (kind, builder version, parameters, the inputs'
keys), so equal specs share one artifact and any change to what determines it gives a new one.

Layout under a root (the results folder), one folder per kind (e.g. `networks`):

    <kind>/<key>/<files written by the builder>
    <kind>/<key>/card.json     what it is: spec, builder, file sha256s, content sha256, build time, ...

A builder writes its files into an empty temporary folder beside the final one; the store hashes them, writes
the card and renames the folder into place, so a reader sees a whole artifact or none. The card's `sha256`
(content hash over the files) is what records name: a rebuilt artifact whose bytes differ makes exactly the
cells that used it stale.

    store = ArtifactStore("results", device="cpu")   # the device builders compute on (not part of the key)
    store.have(spec); store.ensure(spec) -> Artifact; store.get(spec) -> Artifact; artifact.file("weights.pt")

`ensure` is `build_files` (the builder's work, anywhere the results folder is reachable) then `commit` (hashes,
card, rename: the driver's part), so that an executor can build in a worker while only the driver writes cards.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

from .files import jsonable, sha256_file, write_json_atomic
from .provenance import package_versions

CARD = "card.json"
CARD_SCHEMA = 1
Builder = Callable[[Mapping[str, Any], Mapping[str, "Artifact"], Path, str], Mapping[str, Any]]
RESERVED = frozenset({"records", "conformance", "figures", "perf"})  # the results folder's other contents


class ArtifactError(RuntimeError):
    """An artifact that is missing where it must exist, or whose builder is unknown or misbehaves."""


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


class ArtifactStore:
    """Artifacts under `root/<kind>/<key>/`: have it? build it (once, on `device`)? where is it?"""

    def __init__(self, root: str | Path, device: str = "cpu") -> None:
        self.root = Path(root)
        self.device = device

    def path(self, spec: ArtifactSpec) -> Path:
        return self.root / spec.kind / spec.key

    def have(self, spec: ArtifactSpec) -> bool:
        return (self.path(spec) / CARD).is_file()

    def get(self, spec: ArtifactSpec) -> Artifact:
        """The built artifact; ArtifactError when it has not been built (`ensure` builds it)."""
        path = self.path(spec)
        try:
            card = json.loads((path / CARD).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ArtifactError(f"artifact {spec.kind}/{spec.key} is not built under {self.root}; "
                                f"`simstress run` builds what its cells need") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"unreadable card {path / CARD}: {exc}; delete {path} to rebuild it") from exc
        return Artifact(spec, path, MappingProxyType(card))

    def ensure(self, spec: ArtifactSpec) -> Artifact:
        """The artifact, built first (inputs before it) when it is missing."""
        if self.have(spec):
            return self.get(spec)
        for _, sub in spec.inputs:
            self.ensure(sub)
        return self.commit(spec, self.build_files(spec))

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

    def commit(self, spec: ArtifactSpec, staged: Mapping[str, Any]) -> Artifact:
        """Hash the files `build_files` wrote, write the card and rename the folder into place (atomically)."""
        tmp, final, b = Path(staged["folder"]), self.path(spec), builder(spec.kind)
        try:
            inputs = {name: self.get(s) for name, s in spec.inputs}
            files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
            if not files:
                raise ArtifactError(f"builder {b.source} wrote no file for {spec.kind}/{spec.key}")
            content = hashlib.sha256("".join(f"{n}\0{h}\n" for n, h in files.items()).encode()).hexdigest()
            card = {
                "schema": CARD_SCHEMA, "kind": spec.kind, "key": spec.key, "builder": b.source,
                "builder_version": b.version, "params": dict(spec.params),
                "inputs": {name: {"key": a.spec.key, "sha256": a.sha256} for name, a in inputs.items()},
                "files": files, "sha256": content, "build_seconds": round(staged["seconds"], 3),
                "build_device": staged["device"], "packages": package_versions(), **staged["extras"],
            }
            write_json_atomic(tmp / CARD, card)
            try:
                tmp.rename(final)
            except OSError:  # built meanwhile by another process: keep theirs
                if not self.have(spec):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.get(spec)
