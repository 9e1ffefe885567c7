"""The layering arrows of docs/design.md, checked by walking every import in src/shoal.

Dependencies point down only::

    shoal/__init__.py   re-exports only
    _cli, _demo,        the public ``shoal`` API only, and ``shoal.observe`` (_cli runs _demo,
    _demo_scenes        which runs _demo_scenes)
    _pool, _executor,   _core and _errors; backends only through the registry in _core, by name;
    _map                _observing (which imports _core, and observe/ lazily, for trace= and
                        progress=)
    _backends/*         _core and _errors; of each other only their own helpers
                        (_process: _launch, _segments, _spawn, _worker, _wire; _launch: _spawn,
                        _zygote; ...); never the facades
    observe/            _core and _errors (it listens to core events)
    shared/             _errors only: independent of the pool machinery
    _core/*             _core and _errors only
    _errors             nothing from shoal

Every import counts: at module level or inside a function, under ``TYPE_CHECKING`` or not,
relative or absolute, and ``importlib.import_module("shoal...")`` with a literal name. A module
no rule covers fails the test, so a new module gets its arrows written down here.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import shoal

SRC = Path(__file__).resolve().parent.parent / "src" / "shoal"

#: What each backend module may import from its own package: the process backend's helpers.
#: Anything not listed (a new backend) may import no other module of ``_backends``.
BACKEND_HELPERS: dict[str, set[str]] = {
    "shoal._backends._process": {
        "shoal._backends._launch",
        "shoal._backends._native_threads",
        "shoal._backends._segments",
        "shoal._backends._shared_init",
        "shoal._backends._spawn",
        "shoal._backends._worker",
        "shoal._backends._wire",
    },
    "shoal._backends._launch": {
        "shoal._backends._spawn",
        "shoal._backends._zygote",
        "shoal._backends._worker",
        "shoal._backends._wire",
    },
    "shoal._backends._spawn": {"shoal._backends._zygote", "shoal._backends._worker"},
    "shoal._backends._zygote": {
        "shoal._backends._worker",
        "shoal._backends._shared_init",
        "shoal._backends._native_threads",
    },
    "shoal._backends._worker": {
        "shoal._backends._wire",
        "shoal._backends._shared_init",
        "shoal._backends._native_threads",
        "shoal._backends._segments",
    },
    "shoal._backends._native_threads": set(),
    "shoal._backends._segments": set(),
    "shoal._backends._shared_init": set(),
    "shoal._backends._wire": set(),
    "shoal._backends._thread": set(),
}

FACADES = {"shoal._pool", "shoal._executor", "shoal._map"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


@dataclass(frozen=True)
class Import:
    line: int
    target: str  # a module of shoal (or "shoal" itself)
    names: tuple[str, ...] = ()  # for ``from shoal import a, b``: the names

    def where(self, module: str) -> str:
        return f"{MODULES[module].relative_to(SRC.parent.parent)}:{self.line}"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")
    drop = node.level - 1 if is_package else node.level
    base = base[: len(base) - drop] if drop else base
    return ".".join([*base, node.module] if node.module else base)


def shoal_imports(module: str) -> Iterator[Import]:
    """Every import of a shoal module in ``module``'s source."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "shoal" or alias.name.startswith("shoal."):
                    yield Import(node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            if base != "shoal" and not base.startswith("shoal."):
                continue
            plain: list[str] = []
            for alias in node.names:
                # ``from shoal._core import _task`` imports the module shoal._core._task.
                sub = f"{base}.{alias.name}"
                if sub in MODULES:
                    yield Import(node.lineno, sub)
                else:
                    plain.append(alias.name)
            if plain:
                yield Import(node.lineno, base, tuple(plain))
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in {"importlib.import_module", "import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and node.args[0].value.startswith("shoal")
        ):
            yield Import(node.lineno, node.args[0].value)


def _in(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


def allowed(module: str, target: str) -> bool | None:
    """May ``module`` import ``target``? None: no rule covers ``module``."""
    if module == "shoal":
        # Re-exports from the implementation; never the command line, and never a backend (they
        # are imported on first use, through the registry).
        barred = (
            "shoal._cli", "shoal._demo", "shoal._demo_scenes", "shoal.__main__", "shoal._backends"
        )
        return target != "shoal" and not any(_in(target, p) for p in barred)
    if module == "shoal.__main__":
        return target == "shoal._cli"
    if module == "shoal._cli":
        return target in {"shoal", "shoal._demo"}
    if module in {"shoal._demo", "shoal._demo_scenes"}:
        if module == "shoal._demo" and target == "shoal._demo_scenes":
            return True
        return target == "shoal" or _in(target, "shoal.observe")
    if module in FACADES:
        return _in(target, "shoal._core") or target in {"shoal._errors", "shoal._observing"}
    if module == "shoal._observing":
        # How facades attach observers, importing shoal.observe only when asked; _core's
        # progress relay (an inner call's bar in a worker) as the facades import _core.
        return _in(target, "shoal.observe") or _in(target, "shoal._core")
    if module == "shoal._backends":
        return False
    if _in(module, "shoal._backends"):
        if _in(target, "shoal._core") or target == "shoal._errors":
            return True
        return target in BACKEND_HELPERS.get(module, set())
    if _in(module, "shoal.observe"):
        return (
            _in(target, "shoal._core") or target == "shoal._errors" or _in(target, "shoal.observe")
        )
    if _in(module, "shoal.shared"):
        return target == "shoal._errors" or _in(target, "shoal.shared")
    if _in(module, "shoal._core"):
        return _in(target, "shoal._core") or target == "shoal._errors"
    if module == "shoal._errors":
        return False
    return None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    imports = list(shoal_imports(module))
    rule = [allowed(module, imp.target) for imp in imports] or [allowed(module, "shoal._errors")]
    assert None not in rule, (
        f"no layering rule covers {module}: add its arrows to tests/test_layering.py "
        "and docs/design.md"
    )
    wrong = [
        f"{imp.where(module)} imports {imp.target}"
        for imp, ok in zip(imports, rule, strict=False)
        if not ok
    ]
    assert not wrong, f"{module} breaks the layering:\n" + "\n".join(wrong)


@pytest.mark.parametrize("module", ["shoal._cli", "shoal._demo", "shoal._demo_scenes"])
def test_command_line_uses_the_public_api(module: str) -> None:
    public = set(shoal.__all__) | {"__version__"}
    tree = ast.parse(MODULES[module].read_text())
    wrong: list[str] = []
    for imp in shoal_imports(module):
        if imp.target == "shoal":
            bad = [n for n in imp.names if n not in public]
            wrong += [f"line {imp.line}: from shoal import {n}" for n in bad]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "shoal"
            and node.attr not in public
        ):
            wrong.append(f"line {node.lineno}: shoal.{node.attr}")
    assert not wrong, f"{module} uses shoal beyond its public API: {wrong}"


def test_backend_helper_table_is_current() -> None:
    """Every module the table names exists, so the table cannot quietly go stale."""
    named = set(BACKEND_HELPERS) | set().union(*BACKEND_HELPERS.values())
    assert sorted(named - set(MODULES)) == []


# ---- shoal/__init__.py: re-exports only, __all__ complete and sorted ------------------------


def _init_tree() -> ast.Module:
    return ast.parse(MODULES["shoal"].read_text())


def _literal_all(tree: ast.Module) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["__all__"]:
            value = ast.literal_eval(node.value)
            assert isinstance(value, list) and all(isinstance(v, str) for v in value)
            return value
    raise AssertionError("shoal/__init__.py defines no literal __all__")


def test_init_only_reexports() -> None:
    wrong: list[str] = []
    for i, node in enumerate(_init_tree().body):
        text = ast.unparse(node).splitlines()[0]
        if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if source == "__future__" or (node.level == 0 and source.startswith("shoal._")):
                if any(alias.name == "*" for alias in node.names):
                    wrong.append(f"line {node.lineno}: star import: {text}")
                continue
        elif isinstance(node, ast.Assign):
            targets = [ast.unparse(t) for t in node.targets]
            if targets in (["__all__"], ["__version__"]) and isinstance(
                node.value, ast.List | ast.Constant
            ):
                continue
        elif isinstance(node, ast.For) and ast.unparse(node.iter) == "__all__":
            # The one loop the design allows: give the re-exported objects __module__ = "shoal".
            inner = list(ast.walk(node))
            defines = [
                n for n in inner if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.Lambda)
            ]
            attr_sets = [
                t.attr
                for n in inner
                if isinstance(n, ast.Assign)
                for t in n.targets
                if isinstance(t, ast.Attribute)
            ]
            if not defines and set(attr_sets) == {"__module__"}:
                continue
        elif isinstance(node, ast.Delete) and all(
            isinstance(t, ast.Name) and t.id.startswith("_") for t in node.targets
        ):
            continue
        wrong.append(f"line {node.lineno}: {text}")
    assert not wrong, "shoal/__init__.py must only re-export:\n" + "\n".join(wrong)


def test_all_is_complete_and_sorted() -> None:
    tree = _init_tree()
    listed = _literal_all(tree)
    bound: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            bound |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Assign):
            bound |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    public = {name for name in bound if not name.startswith("_")}
    assert sorted(set(public) - set(listed)) == [], "public names missing from __all__"
    assert sorted(set(listed) - bound) == [], "__all__ lists names __init__ does not define"
    assert len(listed) == len(set(listed)), "__all__ lists a name twice"
    assert listed == sorted(listed), "__all__ is not sorted"


def test_all_matches_the_imported_package() -> None:
    """The same, on the live module: nothing public that __all__ leaves out."""
    public = {
        name
        for name, value in vars(shoal).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(shoal.__all__)
    for name in shoal.__all__:
        obj = getattr(shoal, name)
        if isinstance(obj, type | types.FunctionType):
            assert obj.__module__ == "shoal", f"shoal.{name}.__module__ is {obj.__module__!r}"


def test_import_shoal_leaves_asyncio_unloaded() -> None:
    # asyncio costs every importer ~15 ms; only awaiting a future needs it.
    code = "import sys; import shoal; print('asyncio' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False", out.stdout + out.stderr
