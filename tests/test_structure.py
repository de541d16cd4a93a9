"""The layout: who may import whom, no import cycles, packages export their stages by name, ``import twin`` light.

The import graph is read from the source (every ``import``, at module level or inside a
function), so that an import deferred into a function to dodge a cycle still counts.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("twin", "calibrate", "learn", "study", "cli", "scenes")
# The stages of twin in data-flow order: a stage imports only earlier ones (and the top level).
TWIN_STAGES = ("twin.scene", "twin.radio", "twin.corpus", "twin.generate")
# Who may import whom among the top-level packages (cli is the only front end).
ALLOWED = {
    "scenes": set(),
    "twin": {"scenes"},
    "calibrate": {"twin", "scenes"},
    "learn": {"twin", "scenes"},
    "study": {"twin", "calibrate", "learn", "scenes"},
    "cli": {"twin", "calibrate", "learn", "study", "scenes"},
}


def _modules(root: Path = REPO) -> dict[str, Path]:
    mods = {}
    for pkg in (*PACKAGES, "bench", "tests"):
        for path in (root / pkg).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Modules of this repository that ``name`` imports (``from pkg import sub`` names ``pkg.sub``)."""
    out = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] in mods}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                out.add(sub if sub in mods else module)
    out.discard(name)
    return {m for m in out if m.split(".")[0] in (*PACKAGES, "bench", "tests")}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_reader_sees_a_cycle_and_a_deferred_import(tmp_path):
    (tmp_path / "learn").mkdir()
    (tmp_path / "learn" / "a.py").write_text("from learn.b import x\n")
    (tmp_path / "learn" / "b.py").write_text("def f():\n    from learn import a\n")
    mods = _modules(tmp_path)
    g = {n: _imports(n, p, mods) for n, p in mods.items()}
    assert g == {"learn.a": {"learn.b"}, "learn.b": {"learn.a"}}
    assert _cycles(g) == [["learn.a", "learn.b"]]


def test_no_import_cycles(graph):
    assert _cycles(graph) == []


def test_no_private_twin_module_is_imported_outside_twin(graph):
    bad = [f"{m} imports {d}" for m, deps in graph.items() if m.split(".")[0] != "twin"
           for d in deps if d.startswith("twin.") and any(p.startswith("_") for p in d.split(".")[1:])]
    assert bad == []


def test_packages_import_only_what_they_may(graph):
    bad = [f"{m} imports {d}" for m, deps in graph.items() if m.split(".")[0] in ALLOWED
           for d in deps if d.split(".")[0] != m.split(".")[0] and d.split(".")[0] not in ALLOWED[m.split(".")[0]]]
    assert bad == []


def test_twin_stages_import_only_earlier_stages(graph):
    def stage(module: str) -> int | None:
        return next((i for i, s in enumerate(TWIN_STAGES) if module == s or module.startswith(s + ".")), None)

    bad = []
    for m, deps in graph.items():
        if not m.startswith("twin.") or m == "twin":
            continue
        mine = stage(m)
        for d in deps:
            theirs = stage(d)
            # top-level modules (geo, io, engine ...) import no stage; a stage imports no later one
            if theirs is not None and (mine is None or theirs > mine):
                bad.append(f"{m} imports {d}")
    assert bad == []


@pytest.mark.parametrize("package", ["twin", *TWIN_STAGES, "learn", "learn.data", "calibrate", "study"])
def test_packages_export_their_names(package):
    module = importlib.import_module(package)
    assert module.__all__, package
    for name in module.__all__:
        obj = getattr(module, name)  # AttributeError names a broken export
        if inspect.isfunction(obj) or inspect.isclass(obj):
            root = package.split(".")[0]
            assert obj.__module__.split(".")[0] == root, (name, obj.__module__)
            assert obj.__module__.startswith(package), (name, obj.__module__)
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        module.nonsense  # noqa: B018


def test_stage_functions_are_functions_not_modules():
    # A function named like a submodule would be shadowed by it: the stage modules are named
    # for the nouns (tracer, deployment, sampler), the package attributes are the functions.
    import twin
    import twin.corpus.sampler
    import twin.generate.run
    import twin.radio.deployment
    import twin.radio.tracer
    import twin.scene.build

    pairs = [(twin.scene.build_scene, twin.scene.build.build_scene), (twin.radio.deploy, twin.radio.deployment.deploy),
             (twin.radio.trace, twin.radio.tracer.trace), (twin.corpus.sample, twin.corpus.sampler.sample),
             (twin.generate.generate, twin.generate.run.generate), (twin.trace, twin.radio.tracer.trace),
             (twin.build_scene, twin.scene.build.build_scene), (twin.sample, twin.corpus.sampler.sample)]
    for exported, defined in pairs:
        assert inspect.isfunction(exported) and exported is defined, exported


def test_import_twin_stays_light():
    code = ("import sys, twin, twin.scene, twin.radio, twin.corpus, twin.generate, learn, learn.data.crops\n"
            "heavy = ['zarr', 'pandas', 'torch', 'mitsuba', 'sionna', 'trimesh', 'shapely', 'geopandas', 'pyproj', "
            "'dask', 'matplotlib']\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_the_tracing_path_imports_no_scene_building_or_learning_stack():
    """``twin trace`` opens a built scene; meshing (trimesh, scipy, networkx), OSM (geopandas) and torch are other stages'."""
    code = ("import sys, twin.radio.tracer, twin.radio.maps, cli.twin\n"
            "heavy = ['trimesh', 'networkx', 'geopandas', 'pyrosm', 'torch', 'matplotlib', 'dask', 'distributed']\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_architecture_page_states_these_rules_and_names_real_functions():
    import re

    text = (REPO / "docs" / "architecture.md").read_text()
    for package, allowed in ALLOWED.items():
        row = re.search(rf"^\| `{package}` \| ([^|]*) \|", text, re.MULTILINE)
        assert row, package
        assert set(re.findall(r"`(\w+)`", row.group(1))) == allowed, package
    assert re.search(r"\s+←\s+".join(f"`{stage.split('.')[1]}`" for stage in TWIN_STAGES), text)  # the stage order
    formats = text[text.index("## Formats"):text.index("## Errors")]
    names = set(re.findall(r"`((?:twin|calibrate|learn|study)(?:\.\w+)+)`", formats))
    assert len(names) > 15
    for dotted in sorted(names):
        parts = dotted.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attr in parts[cut:]:
                obj = getattr(obj, attr)  # AttributeError names a function the page invents
            break
        else:
            raise AssertionError(f"docs/architecture.md names {dotted}, which does not import")
