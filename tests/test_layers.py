"""priordepth_core imports in one direction: every project import is read with ``ast`` and checked against LAYERS.

Rules, each failure naming ``file:line`` and the rule:

1. An import may only reach a lower layer, or stay inside its own unit (one entry of LAYERS, e.g. the ``data``
   package). Two units of the same layer are peers and do not import each other.
2. No project import inside a function: a function-local import hides a loop (or an upward import) from rule 1.
3. No import loop between modules, inside a unit included (e.g. ``evaluate/__main__`` <-> its sub-commands).
4. Nothing in priordepth_core imports priordepth_ros or rosbag_tools (they sit above it; the run-time probe in
   test_core_is_ros_free.py covers the ROS packages themselves).

A module that matches no entry of LAYERS fails too: a new top-level module or package is placed here on purpose.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CORE = "priordepth_core"
OUTSIDE_LAYERS = ("priordepth_ros", "rosbag_tools")

# Bottom to top. Each entry is a unit: a module, or a package with everything below it unless a longer entry names
# a part of it. Units of one layer are peers.
LAYERS: list[tuple[str, list[str]]] = [
    # Small shared utilities without project imports: the package docstring, output folders, pictures, and the
    # shared config loader.
    ("shared utilities", [CORE, f"{CORE}.atomic_output", f"{CORE}.visualize", f"{CORE}.config_schema"]),
    # Cameras, SE(3)/SO(3), view synthesis, and the differentiable solvers of geometry/pose/.
    ("geometry", [f"{CORE}.geometry"]),
    # Networks and losses: plain modules on tensors, unaware of each other.
    ("networks and losses", [f"{CORE}.models", f"{CORE}.losses"]),
    # The registry of named pose sources (posenet, pnp, essential, hybrids) that training and inference share.
    ("pose sources", [f"{CORE}.pose"]),
    # Dataset readers yielding plain frames, the synthetic generator, trajectory files.
    ("data", [f"{CORE}.data"]),
    # train, evaluate and inference form one layer in docs/architecture.md; inside it the order is fixed so that no
    # loop can form: pure metric loops (evaluate) < the trainer, which scores depth every epoch (train) < the
    # Pipeline, which reads the trainer's checkpoints and configs (inference).
    ("evaluation metrics", [f"{CORE}.evaluate"]),
    ("training", [f"{CORE}.train"]),
    ("inference", [f"{CORE}.inference"]),
    # Export checks its artefacts with the inference backends.
    ("export", [f"{CORE}.export"]),
    # Command lines: they load checkpoints, build datasets and call everything below. evaluate's sub-commands are one
    # unit with evaluate/__main__ (rule 3 keeps it free of loops).
    ("command lines", [
        f"{CORE}.infer",
        f"{CORE}.data.synthetic.__main__",
        f"{CORE}.train.__main__",
        f"{CORE}.train.from_bag",
        f"{CORE}.export.__main__",
        f"{CORE}.evaluate.__main__",
        f"{CORE}.evaluate.curves",
        f"{CORE}.evaluate.depth_cli",
        f"{CORE}.evaluate.keypoint_cli",
        f"{CORE}.evaluate.pose_cli",
        f"{CORE}.evaluate.trajectory_cli",
    ]),
]
# evaluate's sub-commands and its __main__ are one unit: the entry point imports them, they import report.py below.
SAME_UNIT = {f"{CORE}.evaluate.{name}": f"{CORE}.evaluate.__main__"
             for name in ("curves", "depth_cli", "keypoint_cli", "pose_cli", "trajectory_cli")}

@dataclass(frozen=True)
class ProjectImport:
    source: str  # importing module, dotted
    target: str  # imported module, dotted (the deepest module the statement names)
    path: str  # importing file, relative to the repository
    line: int
    in_function: bool

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _core_modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted((REPO_ROOT / CORE).rglob("*.py"))}


def _function_import_nodes(tree: ast.AST) -> set[int]:
    nodes = set()
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            nodes.update(id(node) for node in ast.walk(function) if isinstance(node, ast.Import | ast.ImportFrom))
    return nodes


def _imported_modules(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
                      known: dict[str, Path]) -> Iterator[str]:
    """The modules an import statement names: ``from a import b`` names ``a.b`` when that is a module, else ``a``."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = package[: len(package) - (node.level - 1)]
        base = ".".join(anchor + ([node.module] if node.module else []))
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        yield submodule if submodule in known else base


def _is_project(name: str) -> bool:
    return name.split(".")[0] in (CORE, *OUTSIDE_LAYERS)


def project_imports() -> list[ProjectImport]:
    known = _core_modules()
    found = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        local = _function_import_nodes(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            for target in sorted(set(_imported_modules(node, module, path.name == "__init__.py", known))):
                if _is_project(target):
                    found.append(ProjectImport(module, target, str(path.relative_to(REPO_ROOT)), node.lineno,
                                               id(node) in local))
    return found


def _unit_index() -> dict[str, tuple[int, str]]:
    index = {}
    for rank, (_, units) in enumerate(LAYERS):
        for unit in units:
            index[unit] = (rank, SAME_UNIT.get(unit, unit))
    return index


def layer_of(module: str) -> tuple[int, str] | None:
    """(rank, unit) of a module: its longest entry in LAYERS; the bare package name matches only itself."""
    index = _unit_index()
    if module == CORE:
        return index[CORE]
    parts = module.split(".")
    for length in range(len(parts), 1, -1):
        entry = index.get(".".join(parts[:length]))
        if entry is not None:
            return entry
    return None


def test_every_module_has_a_layer():
    unplaced = sorted(module for module in _core_modules() if layer_of(module) is None)
    assert not unplaced, f"place these modules in LAYERS of {Path(__file__).name}: {unplaced}"


def test_the_walk_sees_the_known_import_kinds():
    """The reader resolves relative, absolute and function-local imports (guards the other tests against passing
    because they read nothing)."""
    imports = project_imports()
    assert {"priordepth_core.geometry.se3", "priordepth_core.geometry.validation"} <= {
        i.target for i in imports if i.source == "priordepth_core.models.pose_net"}
    assert len({i.source for i in imports}) > 50
    assert layer_of("priordepth_core.evaluate.depth_cli")[0] > layer_of("priordepth_core.train.trainer")[0]
    assert layer_of("priordepth_core.pose.registry") == (3, "priordepth_core.pose")


def test_imports_only_go_down():
    upward = []
    for imp in project_imports():
        if imp.target.split(".")[0] != CORE:
            continue
        (source_rank, source_unit), (target_rank, target_unit) = layer_of(imp.source), layer_of(imp.target)
        if target_rank > source_rank or (target_rank == source_rank and target_unit != source_unit):
            upward.append(f"{imp.where}: {imp.source} ({LAYERS[source_rank][0]}) imports {imp.target} "
                          f"({LAYERS[target_rank][0]}): a layer imports only lower layers and its own unit")
    assert not upward, "\n".join(upward)


def test_no_function_local_project_imports():
    local = [imp for imp in project_imports() if imp.in_function]
    found = [f"{imp.where}: {imp.source} imports {imp.target} inside a function: import at module level (a local "
             f"import hides a loop or an upward import from the layer check)" for imp in local]
    assert not found, "\n".join(found)


def test_no_import_loops():
    graph: dict[str, set[str]] = {}
    lines: dict[tuple[str, str], str] = {}
    for imp in project_imports():
        if imp.target.split(".")[0] == CORE and imp.target != imp.source:
            graph.setdefault(imp.source, set()).add(imp.target)
            lines.setdefault((imp.source, imp.target), imp.where)
    loops = []
    for component in _strongly_connected(graph):
        if len(component) > 1:
            edges = [f"{lines[(a, b)]}: {a} -> {b}" for a in sorted(component) for b in sorted(graph.get(a, ()))
                     if b in component]
            loops.append("import loop:\n  " + "\n  ".join(edges))
    assert not loops, "\n".join(loops)


def test_core_never_imports_ros_side_or_rosbag_tools():
    offending = [f"{imp.where}: {imp.source} imports {imp.target}: priordepth_core sits below priordepth_ros and "
                 f"rosbag_tools" for imp in project_imports() if imp.target.split(".")[0] in OUTSIDE_LAYERS]
    assert not offending, "\n".join(offending)


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    components.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


@pytest.mark.parametrize("source, target, allowed", [
    ("priordepth_core.train.trainer", "priordepth_core.evaluate.depth_eval", True),
    ("priordepth_core.evaluate.depth_eval", "priordepth_core.train.trainer", False),
    ("priordepth_core.models.depth_net", "priordepth_core.losses.photometric", False),
    ("priordepth_core.evaluate.__main__", "priordepth_core.evaluate.depth_cli", True),
    ("priordepth_core.pose.registry", "priordepth_core.data.sample", False),
    ("priordepth_core.data.sample", "priordepth_core.pose.registry", True),
])
def test_layer_order(source, target, allowed):
    (source_rank, source_unit), (target_rank, target_unit) = layer_of(source), layer_of(target)
    assert (target_rank < source_rank or source_unit == target_unit) == allowed
