"""pirl's import graph has no cycles and no arrow pointing up the layers.

Every import of every ``pirl_core`` and ``pirl_console`` module counts: module-level ones,
function-local ones (a lazy import is still a dependency) and ``if TYPE_CHECKING:`` ones (a type
named from a higher layer is still knowledge of it). ``from pkg import name`` is an edge to the
module ``pkg.name`` when that is a module, else to ``pkg``. Implicit imports of parent packages
and ``importlib`` calls are not counted.

The layers, bottom to top; a module may import only from its own layer or below:

    1 foundation   config, errors, redact and small pure helpers (paths, run id, telemetry records)
    2 families     envs, policies
    3 recipe       the actor-critic, samplers, PPO, the trainer
    4 rollout      collecting episodes into a batch, and what plans/reports a round
    5 io           transport, checkpoints, torch.distributed, telemetry sinks
    6 entrypoints  actor, learner, eval, launch, sft, demos, cli, every ``pirl_core.X.__main__``
    7 console      pirl_console

``LAYERS`` below places each module. The longest matching prefix decides a module's layer; every
module must match a row, so a new module is placed here deliberately (add a row when none fits).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pirl_core.source import REPO_ROOT

PACKAGES = ("pirl_core", "pirl_console")

# fmt: off
LAYERS: list[tuple[str, int, str]] = [
    # prefix                        layer  why (where the layer is not obvious from the name)
    ("pirl_core",                     1, "the package root"),
    ("pirl_core.config",              1, ""),
    ("pirl_core.errors",              1, ""),
    ("pirl_core.redact",              1, ""),
    ("pirl_core.source",              1, "repo root, git provenance"),
    ("pirl_core.process_env",         1, "MUJOCO_GL, decided by entrypoints"),
    ("pirl_core.runid",               1, "a pure function of the config"),
    ("pirl_core.storage",             1, "disk-fault errors and atomic writes"),
    ("pirl_core.lifecycle",           1, "signals -> exit codes"),
    ("pirl_core.telemetry",           1, "JSONL records: every layer writes them"),
    ("pirl_core.init_states",         1, "the init-state split: a pure function of the config "
                                         "that training's episode plan obeys too"),
    ("pirl_core.seeding",             1, "global seeds, thread counts, derived seeds"),
    ("pirl_core.stopwatch",           1, "wall seconds per named part"),
    ("pirl_core.quoting",             1, "values back into command-line text"),
    ("pirl_core.argparse_base",       1, "the one argparse base"),
    ("pirl_core.registry",            1, "the generic name -> family record table"),
    ("pirl_core.envs",                2, ""),
    ("pirl_core.policies",            2, ""),
    ("pirl_core.recipe",              3, ""),
    ("pirl_core.rollout",             4, ""),
    ("pirl_core.batch",               4, ""),
    ("pirl_core.rollout_plan",        4, "what one actor collects per policy version"),
    ("pirl_core.progress",            4, "progress within a round of rollouts"),
    ("pirl_core.behaviour",           5, "applies a parameter push's behaviour settings (transport level)"),
    ("pirl_core.transport",           5, ""),
    ("pirl_core.checkpoints",         5, ""),
    ("pirl_core.distributed",         5, "between learner ranks, as transport is between roles"),
    ("pirl_core.sinks",               5, "telemetry out to TensorBoard / W&B (reads checkpoints)"),
    ("pirl_core.series",              5, "telemetry read back as series (report, console)"),
    ("pirl_core.actor",               6, ""),
    ("pirl_core.learner",             6, ""),
    ("pirl_core.eval",                6, ""),
    ("pirl_core.launch",              6, ""),
    ("pirl_core.sft",                 6, ""),
    ("pirl_core.demos",               6, ""),
    ("pirl_core.cli",                 6, "the entrypoints' shared parser and run_main"),
    ("pirl_core.report",              6, "an entrypoint"),
    ("pirl_core.torchrun",            6, "an entrypoint"),
    ("pirl_console",                  7, ""),
]
# fmt: on
ENTRYPOINT_LAYER = 6  # ``pirl_core.__main__`` and every ``pirl_core.X.__main__``


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module
    file: str  # the importing file, relative to the root searched
    line: int

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def module_name(path: Path, root: Path) -> str:
    name = ".".join(path.relative_to(root).with_suffix("").parts)
    return name.removesuffix(".__init__")


def find_modules(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    return {module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path, modules: dict[str, Path], root: Path) -> list[Edge]:
    """Every import in the file, wherever it stands (``ast.walk`` reaches function bodies and
    ``if TYPE_CHECKING:`` blocks), resolved to modules of ``modules``."""
    edges: set[Edge] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, path.name == "__init__.py")
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.append(full if full in modules else base)
        for target in targets:
            while target and target not in modules:  # ``import a.b.c`` where c is an attribute
                target = target.rpartition(".")[0]
            if target and target != module:
                edges.add(Edge(module, target, path.relative_to(root).as_posix(), node.lineno))
    return sorted(edges, key=lambda e: (e.line, e.target))


def import_graph(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, list[Edge]]:
    modules = find_modules(root, packages)
    return {name: imports_of(name, path, modules, root) for name, path in modules.items()}


def layer_of(module: str, layers: list[tuple[str, int, str]] = LAYERS) -> int | None:
    if module.startswith("pirl_core") and module.rsplit(".", 1)[-1] == "__main__":
        return ENTRYPOINT_LAYER
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for prefix, layer, _why in layers:
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), layer)
    return None if best is None else best[1]


def upward_imports(graph: dict[str, list[Edge]], layers=LAYERS) -> list[str]:
    """One line per import whose target sits in a higher layer than its source, by file:line."""
    out = []
    for e in sorted({e for edges in graph.values() for e in edges}, key=lambda e: (e.file, e.line, e.target)):
        low, high = layer_of(e.source, layers), layer_of(e.target, layers)
        if low is not None and high is not None and high > low:
            out.append(f"{e.where()}: {e.source} (layer {low}) imports {e.target} (layer {high})")
    return out


def cycles(graph: dict[str, list[Edge]]) -> list[str]:
    """One line per strongly connected component of two or more modules: a concrete cycle
    through it, each arrow with the file:line of its import."""
    succ = {m: sorted({e.target for e in edges if e.target in graph}) for m, edges in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph is small enough for recursion
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_describe_cycle(comp, graph) for comp in sorted(components)]


def _describe_cycle(component: list[str], graph: dict[str, list[Edge]]) -> str:
    members = set(component)
    start = component[0]
    # Breadth-first from start back to start inside the component: the shortest cycle through it.
    previous: dict[str, Edge] = {}
    frontier = [start]
    found: Edge | None = None
    while frontier and found is None:
        nxt = []
        for v in frontier:
            for e in sorted(graph[v], key=lambda e: (e.target, e.line)):
                if e.target == start:
                    found = e
                    break
                if e.target in members and e.target not in previous:
                    previous[e.target] = e
                    nxt.append(e.target)
            if found is not None:
                break
        frontier = nxt
    assert found is not None
    path = [found]
    while path[0].source != start:
        path.insert(0, previous[path[0].source])
    arrows = "; ".join(f"{e.where()} {e.source} -> {e.target}" for e in path)
    inside = sorted(
        (e for m in component for e in graph[m] if e.target in members), key=lambda e: (e.file, e.line)
    )
    every = "".join(f"\n    {e.where()} {e.source} -> {e.target}" for e in inside)
    return f"cycle among {len(component)} modules {component}: {arrows}\n  every import inside it:{every}"


@pytest.fixture(scope="module")
def graph() -> dict[str, list[Edge]]:
    return import_graph(REPO_ROOT)


def test_every_module_has_a_layer(graph: dict[str, list[Edge]]) -> None:
    missing = [m for m in graph if layer_of(m) is None]
    if missing:
        pytest.fail("modules without a row in LAYERS (tests/test_import_layers.py): " + ", ".join(missing))


def test_no_import_cycles(graph: dict[str, list[Edge]]) -> None:
    found = cycles(graph)
    if found:
        pytest.fail(f"{len(found)} import cycle(s):\n" + "\n".join(found), pytrace=False)


def test_no_import_points_up_the_layers(graph: dict[str, list[Edge]]) -> None:
    found = upward_imports(graph)
    if found:
        pytest.fail(f"{len(found)} import(s) pointing up the layers:\n" + "\n".join(found), pytrace=False)


# The checker itself, on a made-up package: it must see every kind of import.


def _package(tmp_path: Path, files: dict[str, str]) -> dict[str, list[Edge]]:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(tmp_path, ("pkg",))


def test_the_checker_sees_function_local_type_checking_and_relative_imports(tmp_path: Path) -> None:
    graph = _package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/low.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from pkg.high import Thing\n"
                "def f():\n"
                "    import pkg.mid.deep\n"
            ),
            "pkg/mid/__init__.py": "from . import deep\n",
            "pkg/mid/deep.py": "from ..low import f\n",
            "pkg/high.py": "from pkg import low\n",
        },
    )
    layers = [("pkg", 1, ""), ("pkg.mid", 2, ""), ("pkg.high", 3, "")]
    assert {(e.target, e.line) for e in graph["pkg.low"]} == {("pkg.high", 3), ("pkg.mid.deep", 5)}
    assert [e.target for e in graph["pkg.mid"]] == ["pkg.mid.deep"]
    assert [e.target for e in graph["pkg.mid.deep"]] == ["pkg.low"]
    assert upward_imports(graph, layers) == [
        "pkg/low.py:3: pkg.low (layer 1) imports pkg.high (layer 3)",
        "pkg/low.py:5: pkg.low (layer 1) imports pkg.mid.deep (layer 2)",
    ]
    found = cycles(graph)
    assert len(found) == 1
    assert found[0].startswith("cycle among 3 modules ['pkg.high', 'pkg.low', 'pkg.mid.deep']: ")
    assert "pkg/high.py:1 pkg.high -> pkg.low" in found[0] and "pkg/low.py:3 pkg.low -> pkg.high" in found[0]


def test_entrypoints_are_layer_6_and_unknown_modules_have_none() -> None:
    assert layer_of("pirl_core.eval.__main__") == ENTRYPOINT_LAYER
    assert layer_of("pirl_core.checkpoints.__main__") == ENTRYPOINT_LAYER
    assert layer_of("pirl_core.__main__") == ENTRYPOINT_LAYER
    assert layer_of("pirl_core.checkpoints.store") == 5
    assert layer_of("pirl_core.init_states") == 1 and layer_of("pirl_core.eval.runner") == 6
    assert layer_of("pirl_console.__main__") == 7
    assert layer_of("elsewhere.module") is None
