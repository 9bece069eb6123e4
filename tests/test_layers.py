"""Dependencies point one way (README "Layout"): core <- backends, state <- reconcile <-
sources <- the command and the addon. Every import of every module, lazy ones inside
functions included, is read with `ast`; one against the direction fails here with its
file and line. The pure layers also import no I/O library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: module (dotted prefix) -> layer; the longest matching prefix wins
LAYERS: dict[str, int] = {
    # 0: pure values
    "ews_parser": 0,
    "mapping": 0,
    "sync.core": 0,
    "sync.core.decide": 0,
    "sync.core.routing": 0,
    "sync.core.identity": 0,
    "sync.core.decode": 0,
    "sync.config": 0,
    # 1: the two sides and the state, behind interfaces
    "sync.backends": 1,
    "sync.state": 1,
    "sync.store": 1,
    # 2: the one writer
    "sync.reconcile": 2,
    "sync.fast_path": 2,
    "sync.series": 2,
    # 3: the sources of change
    "sync.sources": 3,
    # 1: what the sources and the backends report to (metrics) and ask (the console's pause)
    "sync.ops": 1,
    "sync.ops.metrics": 1,
    "sync.ops.pause": 1,
    # 4: the operator's command, the addon, the admin server (sync/ops: health, collector)
    "sync.ops.collector": 4,
    "sync.ops.health": 4,
    "sync.ops.admin": 4,
    "sync.cli": 4,
    "sync.cli.demo": 4,
    "sync.cli.replay": 4,
    "calsync": 4,
}
NAMES = {"ews_parser", "mapping", "sync", "calsync", "emulators"}

#: what the pure layer never imports (network, databases, processes)
IO_LIBRARIES = (
    "sqlite3",
    "sqlite_utils",
    "psycopg",
    "socket",
    "http",
    "urllib.request",
    "requests",
    "httplib2",
    "googleapiclient",
    "google.auth",
    "google_auth_httplib2",
    "exchangelib.services",
    "exchangelib.protocol",
    "exchangelib.account",
    "subprocess",
    "multiprocessing",
)


def layer_of(module: str) -> int | None:
    if module == "sync":  # the package itself
        return 4
    best: tuple[int, int] | None = None
    for prefix, layer in LAYERS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > best[0]
        ):
            best = (len(prefix), layer)
    return best[1] if best else None


def module_name(path: Path) -> str:
    if path == ROOT / "addon" / "calsync.py":
        return "calsync"
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> list[Path]:
    found = [ROOT / "addon" / "calsync.py"]
    for package in ("ews_parser", "mapping", "sync"):
        found += sorted((ROOT / package).rglob("*.py"))
    return found


def imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, int]] = []
    package = module_name(path).rpartition(".")[0] if path.is_relative_to(ROOT) else ""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found.append((name, node.lineno))
            # `from sync import reconcile` names a module too
            found += [(f"{name}.{alias.name}", node.lineno) for alias in node.names]
    return found


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_the_layers(path: Path) -> None:
    own = layer_of(module_name(path))
    assert own is not None, f"{module_name(path)} has no layer: add it to LAYERS"
    wrong = []
    for name, line in imports(path):
        if name.split(".")[0] not in NAMES:
            continue
        if name.split(".")[0] == "emulators":
            wrong.append(f"{path.name}:{line} imports the stand-ins ({name})")
            continue
        target = layer_of(name)
        if target is not None and target > own:
            wrong.append(f"{path.name}:{line} (layer {own}) imports {name} (layer {target})")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "path",
    [p for p in sources() if layer_of(module_name(p)) == 0 and module_name(p) != "sync.config"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_pure_layer_does_no_io(path: Path) -> None:
    wrong = [
        f"{path.name}:{line} imports {name}"
        for name, line in imports(path)
        if any(name == lib or name.startswith(lib + ".") for lib in IO_LIBRARIES)
    ]
    assert not wrong, "\n".join(wrong)


def test_a_wrong_import_is_caught(tmp_path: Path) -> None:
    """The check itself can fail: a core module importing the reconciler."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from sync.reconcile import Reconciler\n")
    (name, _), *_ = [i for i in imports(bad) if i[0].startswith("sync")]
    assert layer_of(name) == 2 > layer_of("sync.core.events")  # type: ignore[operator]
