"""The package's import graph, read from the source: no import cycles, counting the imports inside
functions too (a function-local import is not a way round a cycle), and a layer order that every
import follows downward."""
import ast
import os
from collections import defaultdict


ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gluon_bof")
# lowest first; a module may import its own layer and the layers before it
LAYERS = ["errors", "ops", "utils", "nn", "data", "model_zoo", "engine", "training", "fit", "evaluation",
          "classification", "segmentation", "experiments"]


def modules():
    """``{dotted name: path}`` of every module of the package."""
    out = {}
    for dirpath, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, name), os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                out[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(dirpath, name)
    return out


def imports(name, path, known):
    """``[(imported module, line, inside a function)]`` of one module (package modules only)."""
    tree = ast.parse(open(path).read(), path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - child.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in child.names]
            else:
                visit(child, inside)
                continue
            for t in targets:
                while t and t not in known:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    found.append((t, child.lineno, in_function))
    visit(tree, False)
    return found


def graph():
    mods = modules()
    edges = defaultdict(set)
    local = []
    for name, path in mods.items():
        for target, line, in_function in imports(name, path, mods):
            edges[name].add(target)
            if in_function:
                local.append(f"{name}:{line} -> {target}")
    return mods, edges, local


def find_cycle(edges):
    state, stack = {}, []

    def dfs(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                cycle = dfs(m)
                if cycle:
                    return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state:
            cycle = dfs(n)
            if cycle:
                return cycle
    return None


def layer(name):
    first = name.split(".")[1] if "." in name else name
    return LAYERS.index(first) if first in LAYERS else len(LAYERS)


def test_no_import_cycle():
    _, edges, _ = graph()
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_run_downward_through_the_layers():
    _, edges, _ = graph()
    upward = [f"{a} -> {b}" for a, targets in edges.items() for b in targets
              if a != "gluon_bof" and layer(b) > layer(a)]
    assert not upward, "imports from a lower layer up: " + "; ".join(sorted(upward))


def test_package_imports_sit_at_module_level():
    """The graph is what the module headers say: no package import inside a function (the reader
    counts them, so a local import hides nothing from the tests above, but it hides the graph from
    a reader of the module)."""
    _, _, local = graph()
    assert not local, "function-local package imports: " + "; ".join(sorted(local))


def test_box_operations_have_one_home():
    """IoU, the box coder and NMS are defined in gluon_bof/ops only (no second copy elsewhere)."""
    homes = {}
    for name, path in modules().items():
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.FunctionDef) and node.name in (
                    "bbox_iou", "paired_iou", "iou_plus_one", "box_iou", "encode_boxes", "decode_boxes", "box_nms"):
                homes.setdefault(node.name, []).append(name)
    assert homes and all(len(places) == 1 and places[0].startswith("gluon_bof.ops.")
                         for places in homes.values()), homes


def test_the_graph_reader_sees_a_cycle_and_a_local_import(tmp_path):
    """The check itself: a two-module cycle made of a function-local import is found."""
    assert find_cycle({"a": {"b"}, "b": {"a"}}) in (["a", "b", "a"], ["b", "a", "b"])
    assert find_cycle({"a": {"b"}, "b": set()}) is None
