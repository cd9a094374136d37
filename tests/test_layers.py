"""The package's import layers: a contract checked on the source (AST).

Each module belongs to a layer (docs/user_guide/architecture.rst explains
them); a module imports only from its own layer or lower ones, there are no
import cycles (imports inside functions count: they hide cycles, they do not
remove them), nothing imports the package ``__init__``, and no private name
(``_name``) is imported from another module of the package, by a relative or
an absolute import: a name shared between modules is public in the (private)
module that owns it. Nor does a module call another module's private
function or method (``clf._threshold()``): a call ``obj._name(...)`` is
allowed only where ``_name`` is defined in the calling module, or on
``self``, ``cls`` and ``super()`` (a class's own and inherited methods).
"""

import ast
import sys
from pathlib import Path

import pytest

import skimgcls

PACKAGE = Path(skimgcls.__file__).parent

#: Lowest first. A module of layer i may import modules of layers <= i.
LAYERS = [
    # 0. no dependency on the package
    {"_version", "_docstring", "exceptions", "utils._random", "utils._progress",
     # device, precision, threads, inference batch sizes: torch only
     "_device"},
    # 1. tensor kernels: the one NHWC -> float NCHW conversion, resize, crop...
    {"_functional"},
    # 2. image files: decode, EXIF, draft, errors, stacking; the decode cache
    {"_io", "_cache"},
    # 3. validation of every input
    {"utils.validation", "utils"},
    # 4. data and operations: transformers, augmentation, datasets, networks
    {"_base", "preprocessing", "augmentation", "datasets", "networks", "_tta",
     # linear probes on a network's features (frozen recipe, head_init='probe')
     "_probe",
     # backbones: one module per source behind one protocol
     "backbones", "backbones._spec", "backbones._weights", "backbones._source",
     "backbones._torchvision", "backbones._timm", "backbones._pip", "backbones._user",
     "backbones._registry", "backbones._net"},
    # 5. training, on the skorch side
    {"_data", "_checkpoint", "_skorch", "_accelerate", "_callbacks",
     "callbacks", "_build"},
    # 6. estimators
    {"classifier", "features", "_selection"},
    # 7. around the estimators
    {"persistence", "_onnx", "inspection", "metrics", "_plotting", "saliency", "cli",
     "_demo", "__main__"},
]

#: (importer, imported) edges allowed against the layers, with the reason.
EXCEPTIONS = set()


def layer_of():
    return {name: i for i, names in enumerate(LAYERS) for name in names}


def module_name(path):
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_names(target, node):
    """(module, name or None, line) of each name of ``from <target> import ...``.

    A name that is itself a module ("from . import module", "from skimgcls
    import module") is reported as that module.
    """
    layers = layer_of()
    for alias in node.names:
        sub = f"{target}.{alias.name}" if target else alias.name
        if sub in layers:
            yield sub, None, node.lineno
        else:
            yield target, alias.name, node.lineno


def package_imports(path):
    """(imported module, imported name or None, line) of every relative import."""
    name = module_name(path)
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    if name == "":
        package = []
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            yield from imported_names(target, node)
        elif isinstance(node, ast.ImportFrom):
            full = node.module or ""
            if full == "skimgcls" or full.startswith("skimgcls."):
                target = full.removeprefix("skimgcls").removeprefix(".")
                yield from imported_names(target, node)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                full = alias.name
                if full == "skimgcls" or full.startswith("skimgcls."):
                    target = full.removeprefix("skimgcls").removeprefix(".")
                    yield target, None, node.lineno


def import_graph():
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        graph[module_name(path)] = list(package_imports(path))
    return graph


def violations(graph, layers, exceptions=()):
    """Every breach of the contract in ``graph`` (module -> [(target, name, line)])."""
    found = []
    for module, imports in graph.items():
        if module == "":  # the package __init__: public names only
            continue
        if module not in layers:
            found.append(f"{module}: not in any layer; add it to LAYERS in "
                         "tests/test_layers.py and the architecture page")
            continue
        for target, name, line in imports:
            where = f"{module}:{line}"
            if target == "":
                found.append(f"{where} imports the package __init__ "
                             f"({name}); import from the module that owns it")
                continue
            if target not in layers:
                found.append(f"{where} imports {target}, which is in no layer")
                continue
            if layers[target] > layers[module] and (module, target) not in exceptions:
                found.append(f"{where} imports {target} (layer {layers[target]}) from "
                             f"layer {layers[module]}")
            if name is not None and name.startswith("_") and not name.startswith("__"):
                found.append(f"{where} imports the private name {target}.{name}")
    found += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph, exceptions)]
    return found


def cycles(graph, exceptions=()):
    edges = {m: {t for t, _, _ in imports if t in graph and t != m
                 and (m, t) not in exceptions}
             for m, imports in graph.items()}
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


#: Receivers whose private methods a module may call: its own objects.
OWN = {"self", "cls", "super()"}


def private_calls(path):
    """``(line, call)`` of each call of a private name defined elsewhere.

    A call ``obj._name(...)`` whose ``_name`` no ``def`` or ``class`` of this
    module defines, on a receiver other than ``self``, ``cls`` or ``super()``.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    defined = {node.name for node in ast.walk(tree)
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name = node.func.attr
        if not name.startswith("_") or name.startswith("__") or name in defined:
            continue
        receiver = ast.unparse(node.func.value)
        if receiver not in OWN:
            yield node.lineno, f"{receiver}.{name}()"


def private_call_violations(package):
    def name(path):
        return ".".join(path.relative_to(package).with_suffix("").parts)

    return [f"{name(path)}:{line} calls {call}, a private method of another "
            "module; give its owner a package-internal function (see the door at "
            "the end of classifier.py)"
            for path in sorted(package.rglob("*.py"))
            for line, call in private_calls(path)]


def test_no_module_calls_another_modules_private_methods():
    problems = private_call_violations(PACKAGE)
    assert not problems, "\n".join(problems)


def copy_of_package(tmp_path):
    copy = tmp_path / "skimgcls"
    for path in PACKAGE.rglob("*.py"):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    return copy


@pytest.mark.parametrize("breach, expected", [
    ("def _f(clf):\n    return clf._threshold()\n",
     "saliency:{line} calls clf._threshold()"),
    ("def _f(est):\n    return est.net_._initialize_accelerator()\n",
     "saliency:{line} calls est.net_._initialize_accelerator()"),
])
def test_the_private_call_check_catches_a_breach(tmp_path, breach, expected):
    copy = copy_of_package(tmp_path)
    assert not private_call_violations(copy)
    saliency = copy / "saliency.py"
    source = saliency.read_text()
    saliency.write_text(source + "\n\n" + breach)
    line = len((source + "\n\n").splitlines()) + 2
    problems = private_call_violations(copy)
    assert [p for p in problems if expected.format(line=line) in p], problems


def test_the_layers_catch_a_private_name_imported_by_absolute_path(tmp_path,
                                                                  monkeypatch):
    copy = copy_of_package(tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
    assert not violations(import_graph(), layer_of(), EXCEPTIONS)
    saliency = copy / "saliency.py"
    saliency.write_text("from skimgcls.classifier import _check_routed\n"
                        + saliency.read_text())
    problems = violations(import_graph(), layer_of(), EXCEPTIONS)
    assert any("saliency:1 imports the private name classifier._check_routed" in p
               for p in problems), problems


def test_the_package_keeps_its_layers():
    problems = violations(import_graph(), layer_of(), EXCEPTIONS)
    assert not problems, "\n".join(problems)


def test_every_layer_module_exists():
    modules = set(import_graph())
    optional = {"__main__"}  # allowed names, not required
    missing = set(layer_of()) - modules - optional
    assert not missing


@pytest.mark.parametrize("graph, expected", [
    ({"_io": [("preprocessing", "Resize", 3)], "preprocessing": []},
     "_io:3 imports preprocessing (layer 4) from layer 2"),
    ({"datasets": [("preprocessing", "_resize", 5)], "preprocessing": []},
     "imports the private name preprocessing._resize"),
    ({"persistence": [("", "__version__", 9)]}, "imports the package __init__"),
    ({"datasets": [("preprocessing", "x", 1)], "preprocessing": [("datasets", "y", 2)]},
     "import cycle: datasets -> preprocessing -> datasets"),
    ({"newmodule": []}, "newmodule: not in any layer"),
])
def test_the_contract_catches_breaches(graph, expected):
    problems = violations(graph, layer_of())
    assert any(expected in p for p in problems), problems


def test_the_graph_sees_imports_inside_functions(tmp_path, monkeypatch):
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from .preprocessing import _hidden\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path)
    assert list(package_imports(source)) == [("preprocessing", "_hidden", 2)]
