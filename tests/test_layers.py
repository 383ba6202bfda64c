"""The package's layers: no production module imports a module of a higher layer.

Every import is read with `ast` (module level, inside functions, under TYPE_CHECKING), so a
lazy import in a function counts as much as one at the top. A module is named by its first
part below `polyledger` (`polyledger.fetch.units` is `fetch`); imports within one layer are
free. The stand-in (`polyledger/testing/`) imports nothing from production code, and only the
top layer (the demo, the CLI's `serve`) imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "polyledger"

# lowest first
LAYERS: list[set[str]] = [
    {
        "errors",
        "secrets",
        "_version",
        "defaults",
        "periods",
        "symbols",
        "trading_days",
        "signals",
        "listings",
        "replace_file",
    },
    {"ledger", "polygon", "bars"},
    {"datasets"},
    {"storage"},  # a unit's path comes from its dataset's spec (storage/layout.py)
    # flatfiles: the flat-file route, beside fetch; coverage: the days a ticker's units cover
    {"plan", "universe", "fetch", "flatfiles", "coverage"},
    {
        "checks",
        "output",
        "download",
        "adjust",
        "infobars",
        "universe_build",
        "requeue",
        "sync_lock",
        "sync_refs",
    },
    {"demo", "cli", "__init__", "__main__", "sync"},
]
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}
LAYER_OF["testing"] = len(LAYERS) - 1  # the stand-in: for the demo and `serve`, never below them
# not the stand-in: a simulation that drives the real RateLimiter and RetryPolicy on a
# virtual clock (tests/test_ratelimit.py), so it imports them by design, and nothing else
SIMULATION = "ratesim.py"
SIMULATED = ("polyledger.polygon.client.", "polyledger.polygon.ratelimit.", "polyledger.polygon.keyshare.")


def _name(path: Path) -> str:
    """`fetch/units.py` -> `polyledger.fetch.units`; `fetch/__init__.py` -> `polyledger.fetch`."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every polyledger module or name `path` imports, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _name(path) if path.name == "__init__.py" else _name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from polyledger import datasets` imports polyledger.datasets
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name == "polyledger" or name.startswith("polyledger.")]


def _top(dotted: str) -> str:
    """The layer name of an imported polyledger name: its first part below polyledger, or
    `__init__` for the package itself (or a name defined in it, like `polyledger.open`)."""
    parts = dotted.split(".")
    if len(parts) == 1:
        return "__init__"
    first = parts[1]
    if (PACKAGE / first).is_dir() or (PACKAGE / f"{first}.py").is_file():
        return first
    return "__init__"


def _modules(under: Path) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_production_module_has_a_declared_layer():
    tops = {_top(_name(p)) if p != PACKAGE / "__init__.py" else "__init__" for p in _modules(PACKAGE)}
    assert tops - LAYER_OF.keys() == set()
    assert LAYER_OF.keys() - tops == set()


def upward_imports(package: Path = PACKAGE) -> list[str]:
    upward = []
    for path in _modules(package):
        if "testing" in path.relative_to(package).parts:
            continue
        own = "__init__" if path == package / "__init__.py" else _top(_name(path))
        for line, imported in _imports(path):
            target = _top(imported)
            if LAYER_OF[target] > LAYER_OF[own]:
                upward.append(
                    f"{path.relative_to(package.parent)}:{line} ({own}) imports {imported} ({target})"
                )
    return upward


def test_no_module_imports_a_module_of_a_higher_layer():
    assert upward_imports() == []


def test_the_stand_in_imports_nothing_from_production_code():
    outside = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}"
        for path in _modules(PACKAGE / "testing")
        for line, imported in _imports(path)
        if not (imported == "polyledger.testing" or imported.startswith("polyledger.testing."))
        and not (path.name == SIMULATION and imported.startswith(SIMULATED))
    ]
    assert outside == []
