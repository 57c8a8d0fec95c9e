"""An import-linter contract type, `internals`: only the named adapter modules may use the
non-public modules of some external packages (for us: aiortc's and aioice's, used only by
media.hooks and media.jitterbuffer). pyproject.toml registers it and lists the public modules.

A stock `forbidden` contract cannot say this: import-linter collapses an external package to
its root name (`aiortc`), so `aiortc.jitterbuffer` and `aiortc` are one node of its graph. So
this contract reads the source instead, with `ast`: every `import`, every `from ... import`
(`from aiortc import codecs` imports a module too), and every attribute path through a name
bound to an external module (`import aiortc` then `aiortc.codecs.CODECS` works at run time,
since aiortc imports its own modules). Each external module reached so is one the adapter
modules alone may use, unless it is listed as public. Whether a dotted name is a module is
found on disk, without importing the package.

Not part of the shipped packages: `lint-imports`, run from the repository root, puts the
root on sys.path, so `tools.internals_contract` imports from a plain checkout.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck, InvalidContractOptions


@dataclass(frozen=True, order=True)
class Use:
    """`importer` (one of our modules) uses external module `module` at `line`."""

    importer: str
    line: int
    module: str


@cache
def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def is_module(name: str) -> bool:
    """Whether `name` is an importable module or package, found on disk (nothing is
    imported; a top-level name is always taken for one, as `import` needs it to be)."""
    root, _, rest = name.partition(".")
    if not rest:
        return True
    base = _package_dir(root)
    if base is None:
        return False
    path = base.joinpath(*rest.split("."))
    if (path / "__init__.py").is_file():
        return True
    return any(
        path.with_name(path.name + suffix).is_file()
        for suffix in importlib.machinery.all_suffixes()
    )


def external_uses(source: str, importer: str, externals: frozenset[str]) -> list[Use]:
    """Every module of the `externals` packages that the code in `source` imports, or reaches
    through an attribute path (the deepest module along the path)."""
    tree = ast.parse(source)
    uses: list[Use] = []
    # Local name -> the external module it is bound to.
    bound: dict[str, str] = {}

    def external(name: str) -> bool:
        return name.partition(".")[0] in externals

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not external(alias.name):
                    continue
                uses.append(Use(importer, node.lineno, alias.name))
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    root = alias.name.partition(".")[0]
                    bound[root] = root
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if not external(node.module):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if alias.name != "*" and is_module(sub):
                    uses.append(Use(importer, node.lineno, sub))
                    bound[alias.asname or alias.name] = sub
                else:
                    uses.append(Use(importer, node.lineno, node.module))

    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        parts: list[str] = []
        at: ast.expr = node
        while isinstance(at, ast.Attribute):
            parts.append(at.attr)
            at = at.value
        if not isinstance(at, ast.Name) or at.id not in bound:
            continue
        module = bound[at.id]
        for part in reversed(parts):
            if not is_module(f"{module}.{part}"):
                break
            module = f"{module}.{part}"
        uses.append(Use(importer, node.lineno, module))
    return sorted(set(uses))


def _source_files(package: str) -> list[tuple[str, Path]]:
    base = _package_dir(package)
    if base is None:
        raise InvalidContractOptions({"source_packages": f"{package} is not a package"})
    found = []
    for path in sorted(base.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append((".".join([package, *parts]), path))
    return found


class InternalsContract(Contract):
    """Options:
    - source_packages: our packages whose modules are checked (default: the root packages);
    - external_packages: the external packages whose modules are watched;
    - public_modules: modules of those packages anyone may use (the roots included: list
      them, or using `import aiortc` itself is flagged);
    - allowed_modules: our modules that may use any of them (the adapters).
    """

    type_name = "internals"

    source_packages = fields.ListField(subfield=fields.StringField(), required=False)
    external_packages = fields.ListField(subfield=fields.StringField())
    public_modules = fields.ListField(subfield=fields.StringField())
    allowed_modules = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        externals = frozenset(self._strings("external_packages"))
        public = frozenset(self._strings("public_modules"))
        allowed = frozenset(self._strings("allowed_modules"))
        broken: list[Use] = []
        packages = self._strings("source_packages") or [
            str(root) for root in self.session_options["root_packages"]
        ]
        for package in packages:
            for importer, path in _source_files(package):
                output.verbose_print(verbose, f"Reading {importer}...")
                if importer in allowed:
                    continue
                uses = external_uses(path.read_text(encoding="utf-8"), importer, externals)
                broken += [use for use in uses if use.module not in public]
        return ContractCheck(kept=not broken, metadata={"broken": [asdict(use) for use in broken]})

    def render_broken_contract(self, check: ContractCheck) -> None:
        allowed = ", ".join(sorted(self._strings("allowed_modules")))
        for use in check.metadata["broken"]:
            output.print_error(
                f"{use['importer']} uses {use['module']} (l.{use['line']}), which is not "
                f"public: only {allowed} may."
            )
            output.new_line()

    def _strings(self, name: str) -> list[str]:
        value: Any = getattr(self, name)
        return [str(item) for item in value or ()]


__all__ = ["InternalsContract", "Use", "external_uses", "is_module"]
