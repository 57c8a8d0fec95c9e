"""The `internals` import-linter contract (tools/internals_contract.py) finds every way a
module can reach an external package's modules, and the repository keeps it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from grimp import ImportGraph

from tools.internals_contract import InternalsContract, Use, external_uses, is_module

EXTERNALS = frozenset({"aiortc", "aioice"})
ROOT = Path(__file__).resolve().parent.parent


def modules_used(source: str) -> set[tuple[int, str]]:
    return {(use.line, use.module) for use in external_uses(source, "media.x", EXTERNALS)}


def test_modules_are_told_from_names_on_disk_without_importing() -> None:
    assert is_module("aiortc.jitterbuffer")
    assert is_module("aiortc.codecs")
    assert is_module("aiortc.codecs.vpx")
    assert is_module("aioice.ice")
    assert not is_module("aiortc.RTCPeerConnection")
    assert not is_module("aiortc.codecs.CODECS")


def test_every_form_of_import_names_the_module_it_reaches() -> None:
    source = "\n".join(
        [
            "import aiortc",
            "import aioice.ice",
            "import aiortc.jitterbuffer as jb",
            "from aiortc import RTCPeerConnection, codecs",
            "from aiortc.sdp import candidate_from_sdp",
            "from aiortc.codecs import vpx as v",
            "import json",
            "from media import hooks",
        ]
    )
    assert modules_used(source) == {
        (1, "aiortc"),
        (2, "aioice.ice"),
        (3, "aiortc.jitterbuffer"),
        (4, "aiortc"),
        (4, "aiortc.codecs"),
        (5, "aiortc.sdp"),
        (6, "aiortc.codecs.vpx"),
    }


def test_attribute_paths_through_an_imported_module_count_as_uses() -> None:
    """`import aiortc` makes `aiortc.codecs.CODECS` work, since aiortc imports its modules."""
    source = "\n".join(
        [
            "import aiortc",
            "import aioice",
            "x = aiortc.codecs.CODECS",
            "aioice.ice.asyncio = None",
            "y = aiortc.RTCPeerConnection()",
            "def f(v):",
            "    return v.codecs.CODECS",
        ]
    )
    assert modules_used(source) == {
        (1, "aiortc"),
        (2, "aioice"),
        (3, "aiortc.codecs"),
        (4, "aioice.ice"),
        (5, "aiortc"),
    }


def contract(allowed: list[str]) -> InternalsContract:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [options] = [c for c in config["contracts"] if c["type"] == "internals"]
    return InternalsContract(
        name=options["name"],
        session_options={"root_packages": config["root_packages"]},
        contract_options={**options, "allowed_modules": allowed},
    )


def test_the_repository_keeps_the_contract_and_only_thanks_to_the_adapters() -> None:
    """(The contract reads source files; the import graph it is given plays no part.)"""
    kept = contract(["media.hooks", "media.jitterbuffer"]).check(ImportGraph(), verbose=False)
    assert kept.kept
    broken = contract([]).check(ImportGraph(), verbose=False)
    assert not broken.kept
    importers = {Use(**use).importer for use in broken.metadata["broken"]}
    assert importers == {"media.hooks", "media.jitterbuffer"}
