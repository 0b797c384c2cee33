"""The tree is its architecture: packages along the data flow, imports only toward the
earlier stages, no cycles, the device free of the training package."""

from __future__ import annotations

import ast
import re
import subprocess
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "edge", "cloud_sync", "fleet", "models", "converter")
ORDER = [
    "core",
    "edge.cxx_locale",
    "edge.sdnotify",
    "edge.config",
    "edge.metrics",
    "edge.logs",
    "edge.store",
    "edge.parts",
    "edge.ingest",
    "edge.capture",
    "edge.analysis",
    "edge.search",
    "edge.sinks",
    "edge.api",
    "edge.daemon",
    "edge.cli",
    "cloud_sync",
    "fleet",
    "models",
    "converter",
]
"""Each may import only those before it (`models` and `converter` sit beside the device)."""
MAX_LINES = 600


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (ROOT / pkg).rglob("*.py"):
            name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = p
    return out


def imported(path: Path, name: str) -> set[str]:
    """Every module `path` imports, at any depth of the file (a function's own imports too)."""
    out: set[str] = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                parts = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join([*parts[: len(parts) - n.level + 1], n.module or ""]).strip(".")
            out |= {f"{base}.{a.name}" for a in n.names} | {base}
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for m in imported(path, name):
            while m and m not in mods:
                m = m.rpartition(".")[0]
            if m and m != name and m != "edge":
                edges[name].add(m)
    return edges


def stage(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "edge" and len(parts) > 1 else parts[0]


def test_every_package_imports_only_the_stages_before_it() -> None:
    rank = {s: i for i, s in enumerate(ORDER)}
    wrong = sorted(
        f"{a} -> {b}"
        for a, deps in graph().items()
        for b in deps
        if stage(a) != stage(b) and rank[stage(b)] >= rank[stage(a)]
    )
    assert not wrong, "imports against the flow:\n" + "\n".join(wrong)


def test_no_module_imports_itself_back() -> None:
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                cycles.append([v, *component])

    for v in list(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_device_never_imports_the_training_package_nor_the_fleet_a_route() -> None:
    def device(m: str) -> bool:
        return stage(m) in ("core", "cloud_sync") or m.startswith("edge.")

    bad = sorted(
        f"{a} -> {b}"
        for a, deps in graph().items()
        for b in deps
        if device(a) and b.split(".")[0] in ("models", "converter", "fleet")
    )
    assert not bad, bad
    routes = sorted(
        f"{a} -> {b}"
        for a, deps in graph().items()
        for b in deps
        if a.startswith("fleet") and b.startswith(("edge.api.routes", "edge.cli"))
    )
    assert not routes, routes


def test_the_fleet_imports_nothing_private_of_the_device() -> None:
    private = []
    for path in (ROOT / "fleet").rglob("*.py"):
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("edge"):
                private += [f"{path.name}: {a.name}" for a in n.names if a.name.startswith("_")]
    assert not private, private


def tracked(pattern: str) -> list[Path]:
    files = subprocess.run(
        ["git", "ls-files", pattern], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [ROOT / f for f in files if (ROOT / f).exists()]


def test_modules_stay_small_and_the_formatter_is_not_fought() -> None:
    sources = tracked("*.py")
    long = [
        f"{p.relative_to(ROOT)}: {n}"
        for p in sources
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert not long, f"modules over {MAX_LINES} lines: {long}"
    skips = sum(len(re.findall(r"fmt:\s*(skip|off)", p.read_text())) for p in sources)
    assert skips <= 10


def test_no_issue_numbers_in_code_or_tests() -> None:
    cited = [
        str(p.relative_to(ROOT))
        for p in tracked("*.py")
        if re.search(r"\bissues? \d+\b", p.read_text(), re.I)
    ]
    assert not cited, cited


def test_no_test_module_imports_another_or_conftest() -> None:
    tests = ROOT / "tests"
    names = {p.stem for p in tests.rglob("test_*.py")} | {"conftest"}
    crossed = []
    for path in tests.rglob("*.py"):
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] in names:
                crossed.append(f"{path.relative_to(tests)}: {n.module}")
            if isinstance(n, ast.Import):
                crossed += [
                    f"{path.relative_to(tests)}: {a.name}" for a in n.names if a.name in names
                ]
    assert not crossed, crossed


def test_test_modules_have_names_unique_across_tiers() -> None:
    """pytest imports a test module by its file name (no `__init__.py` in the tiers): two
    tiers holding one name fail to collect, on whichever worker meets the second."""
    seen: dict[str, list[str]] = {}
    for path in (ROOT / "tests").rglob("test_*.py"):
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert not {name: where for name, where in seen.items() if len(where) > 1}
