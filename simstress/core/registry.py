"""Name registries shared by metrics and tasks: decorator-time registration, glob listing, plugin discovery.

Modelled on timm's registry: an object is registered where it is defined, listed with shell-style wildcards in
natural order, and an unknown name is answered with the closest registered ones.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import pkgutil
import re
import warnings
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(LookupError):
    """An id that names nothing registered; the message lists the closest registered names."""

    def __str__(self) -> str:  # LookupError would quote the message like a key
        return str(self.args[0])


class DuplicateNameError(ValueError):
    """Two definitions claim the same name."""


class PluginError(ImportError):
    """A plugin module failed to import (raised only in strict mode; otherwise a warning)."""


def natural_key(text: str) -> list:
    """Sort key that orders 'rbf_cka[sigma=0.2]' before 'rbf_cka[sigma=10]' and 'x2' before 'x10'."""
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", text)]


def closest(name: str, candidates: list[str], n: int = 5) -> list[str]:
    """The registered names nearest to `name` (by edit similarity, then shared substring)."""
    found = difflib.get_close_matches(name, candidates, n=n, cutoff=0.4)
    if not found:
        base = name.split("[")[0].lower()
        found = [c for c in candidates if base and (base in c.lower() or c.lower() in base)][:n]
    return found


class Registry(Generic[T]):
    """Registered objects by name, with their source module, plus plugin loading for one entry-point group.

    `package` is the in-repo package whose modules are imported on first use (so a new module under
    `metrics/` or `tasks/` registers itself without any list to edit); `group` is the entry-point group
    through which installed packages contribute modules.
    """

    def __init__(self, what: str, package: str, group: str) -> None:
        self.what = what
        self.package = package
        self.group = group
        self._items: dict[str, T] = {}
        self._sources: dict[str, str] = {}
        self._loaded = False
        self._loading = False

    def add(self, name: str, item: T, source: str) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", name):
            raise ValueError(f"invalid {self.what} name {name!r}: use letters, digits, '_', '-', '.'")
        if name in self._items and self._sources[name] != source:
            raise DuplicateNameError(
                f"{self.what} {name!r} is registered twice: by {self._sources[name]} and by {source}; "
                f"rename one of them"
            )
        self._items[name] = item
        self._sources[name] = source

    def remove(self, name: str) -> None:
        """Drop a registration (used by tests that register throw-away entries)."""
        self._items.pop(name, None)
        self._sources.pop(name, None)

    def source(self, name: str) -> str:
        self.ensure_loaded()
        return self._sources[name]

    def get(self, name: str) -> T:
        self.ensure_loaded()
        try:
            return self._items[name]
        except KeyError:
            near = closest(name, sorted(self._items))
            hint = f"; closest: {', '.join(near)}" if near else ""
            raise UnknownNameError(
                f"unknown {self.what} {name!r}{hint}. `simstress list {self.what}s` shows them all"
            ) from None

    def names(self) -> list[str]:
        self.ensure_loaded()
        return sorted(self._items, key=natural_key)

    def ensure_loaded(self, strict: bool = False) -> None:
        """Import every in-repo module of the package, then every installed plugin module (once)."""
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            pkg = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    self._import_plugin(f"{self.package}.{info.name}", f"module {info.name!r} of {self.package}",
                                        strict)
            self._load_entry_points(strict)
            self._loaded = True
        finally:
            self._loading = False

    def reload_plugins(self, strict: bool) -> None:
        """Re-read the entry points (after installing a plugin, or to apply --strict)."""
        if not self._loaded:
            self.ensure_loaded(strict)
            return
        self._load_entry_points(strict)

    def _load_entry_points(self, strict: bool) -> None:
        for ep in entry_points(group=self.group):
            dist = ep.dist.name if ep.dist is not None else "an unknown distribution"
            self._import_plugin(ep.value.split(":")[0], f"plugin {ep.name!r} from package {dist!r}", strict)

    def _import_plugin(self, module: str, what: str, strict: bool) -> None:
        """Import one module that registers entries: a broken one warns (raises under `strict`), never kills."""
        try:
            importlib.import_module(module)
        except DuplicateNameError:
            raise
        except Exception as exc:  # a broken plugin must not take the suite down
            msg = f"simstress {self.what} {what} failed to import: {exc!r}"
            if strict:
                raise PluginError(msg) from exc
            warnings.warn(msg, RuntimeWarning, stacklevel=3)

    def match(self, pattern: str | list[str] = "*", exclude: str | list[str] | None = None) -> list[str]:
        """Registered names matching `pattern` and not `exclude` (`glob_match`), in natural order."""
        return glob_match(self.names(), pattern, exclude)


def _patterns(pattern: str | list[str]) -> list[str]:
    parts = pattern.split(",") if isinstance(pattern, str) else list(pattern)
    return [p.strip() for p in parts if p.strip()]


def glob_match(names: list[str], pattern: str | list[str] = "*", exclude: str | list[str] | None = None,
               ) -> list[str]:
    """The names matching any shell-style glob of `pattern` and none of `exclude`, in the order given.

    Globs may be comma-separated. Brackets are literal, not character classes: ids such as `rbf_cka[sigma=0.5]`
    carry them, and a pattern like `rbf_cka[*` must mean what it says.
    """
    def compile_all(pats: str | list[str] | None) -> list[re.Pattern[str]]:
        if pats is None:
            return []
        return [re.compile(fnmatch.translate(p.replace("[", "[[]"))) for p in _patterns(pats)]

    keep, drop = compile_all(pattern), compile_all(exclude)
    return [n for n in names if any(k.match(n) for k in keep) and not any(d.match(n) for d in drop)]
