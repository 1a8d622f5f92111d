"""The house's rooms and the one-way flow between them (README, "Architecture"), checked on
the source: import cycles between rooms, TVM where it must not be, the CLI imported by no one.
"""

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("las_compiler", "models", "schedules")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] != "las_compiler":
        parts = ["las_compiler", *parts]  # installed as las_compiler.models / .schedules
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> everything it imports (module level and inside functions)."""
    graph = defaultdict(set)
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            module = _module(path)
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    base = package.split(".")[: len(package.split(".")) - node.level + 1] \
                        if node.level else []
                    target = ".".join([*base, node.module] if node.module else base)
                    graph[module].add(target)
                    graph[module].update(f"{target}.{alias.name}" for alias in node.names)
                elif isinstance(node, ast.Import):
                    graph[module].update(alias.name for alias in node.names)
    return graph


GRAPH = _imports()


def room(module: str) -> str:
    """las_compiler.<room>...: a folder is a room; a top-level module is one too."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "las_compiler"


def _room_edges() -> dict[str, set[str]]:
    modules = set(GRAPH)
    edges = defaultdict(set)
    for module, targets in GRAPH.items():
        if module == "las_compiler":  # the package's lazy re-exports
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target.startswith("las_compiler.") and room(target) != room(module):
                edges[room(module)].add(room(target))
    return edges


def test_rooms_form_no_cycle():
    edges = _room_edges()
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in edges.get(node, ()):
            assert state.get(nxt) != 1, f"import cycle between rooms: {' -> '.join(path + [nxt])}"
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in list(edges):
        if node not in state:
            visit(node, [node])


def _imports_of(prefix: str) -> set[str]:
    return {t for m, ts in GRAPH.items() if m == prefix or m.startswith(prefix + ".")
            for t in ts}


def test_tvm_stays_out_of_the_pure_rooms():
    """models/ is PyTorch only; the predictor, the pipeline table and the geometry predict
    without TVM (the compiler passes the predictor a Target, it never imports one)."""
    for prefix in ("las_compiler.models", "las_compiler.predictor",
                   "las_compiler.block_pipelines", "las_compiler.geometry"):
        tvm = sorted(t for t in _imports_of(prefix) if t == "tvm" or t.startswith("tvm."))
        assert not tvm, f"{prefix} imports {tvm}"


def test_the_runtime_side_needs_no_compiler():
    """deploy/ loads and runs artifacts with only the TVM runtime: it imports none of the
    compiler's rooms."""
    compiler_rooms = {"frontend", "op", "transform", "schedules", "phases", "compiler",
                      "tuning", "hardware_calibration", "kernel_builder"}
    used = {room(t) for t in _imports_of("las_compiler.deploy") if t.startswith("las_compiler.")}
    assert not used & compiler_rooms, used & compiler_rooms


def test_nothing_imports_the_cli():
    users = sorted(m for m, ts in GRAPH.items() if room(m) != "cli" and m != "las_compiler.__main__"
                   and any(t.startswith("las_compiler.cli") for t in ts))
    assert not users, users


TARGET_KINDS = {"cuda", "nvptx", "llvm", "rocm", "metal", "vulkan", "opencl", "c"}
DEVICE_KINDS = TARGET_KINDS - {"llvm", "c"}  # every target's host code is LLVM's


def _kinds_named(path: Path, kinds: set[str]) -> list[tuple[int, str]]:
    """String constants of ``path`` that are one of ``kinds``, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
                  and ast.get_docstring(node, clean=False) is not None}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in kinds
            and id(node) not in docstrings]


def test_kernels_and_passes_name_no_target_family():
    """op/ (target-neutral TIR) and transform/ (the passes) ask the target's family
    (``schedules``) instead of testing for a target kind: a new family adds a folder, not a
    branch here. Docstrings may mention families; code may not."""
    for folder in ("op", "transform"):
        for path in sorted((ROOT / "las_compiler" / folder).rglob("*.py")):
            named = _kinds_named(path, TARGET_KINDS)
            assert not named, f"{path.relative_to(ROOT)} names target kinds: {named}"


def test_only_a_family_names_its_device():
    """Outside ``schedules/<family>/`` nothing tests for a GPU kind: the compiler, the pass
    phases, the tuner, the CLI, the predictor and the runtime side ask the family
    (``schedules.family_of``) or read what it recorded in the artifact."""
    for path in sorted((ROOT / "las_compiler").rglob("*.py")):
        named = _kinds_named(path, DEVICE_KINDS)
        assert not named, f"{path.relative_to(ROOT)} names device kinds: {named}"
    for path in sorted((ROOT / "schedules").glob("*.py")):  # the families' shared part
        named = _kinds_named(path, DEVICE_KINDS)
        assert not named, f"{path.relative_to(ROOT)} names device kinds: {named}"
