"""Guards of the architecture (DESIGN.md): stages meet only in tables, through the kernel."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "maild"
STAGES = ("ingest", "threading", "outbound", "sla")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("stage", STAGES)
def test_stages_do_not_import_each_other(stage: str) -> None:
    others = [s for s in STAGES if s != stage]
    for path in (PACKAGE / stage).rglob("*.py"):
        for module in _imports(path):
            for other in others:
                assert not module.startswith(f"maild.{other}"), \
                    f"{path.relative_to(PACKAGE)} imports maild.{other}"


def test_the_kernel_imports_no_stage() -> None:
    kernel = [p for p in PACKAGE.glob("*.py")
              if p.name not in ("app.py", "__main__.py")]  # and the cli and daemon packages
    for path in kernel:
        for module in _imports(path):
            assert not any(module.startswith(f"maild.{s}") for s in STAGES), \
                f"{path.name} imports {module}"


FACE = ("maild.cli", "maild.daemon", "maild.app", "maild.status", "maild.views",
        "maild.preflight")


@pytest.mark.parametrize("stage", STAGES)
def test_no_stage_imports_the_face(stage: str) -> None:
    """The arrows run from the commands down to the stages, never back up."""
    for path in (PACKAGE / stage).rglob("*.py"):
        for module in _imports(path):
            assert not module.startswith(FACE), f"{path.relative_to(PACKAGE)} imports {module}"


def test_only_models_defines_tables() -> None:
    for path in PACKAGE.rglob("*.py"):
        if path.name != "models.py" and "migrations" not in path.parts:
            assert "table=True" not in path.read_text(encoding="utf-8"), path


def test_every_module_says_what_it_owns() -> None:
    for path in PACKAGE.rglob("*.py"):
        if "versions" in path.parts or path.stat().st_size == 0:
            continue
        assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), path


def test_the_command_line_has_no_queries_of_its_own() -> None:
    """`maild/cli/` parses arguments and prints; what it reads is asked of the read models
    (`maild.views`, `maild.status`, `maild.sla`) and what it changes of the domain, where the
    daemon and the web pages share the same queries."""
    for path in (PACKAGE / "cli").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for query in ("select(", "SELECT ", "session.exec", "session.get(", ".rows(", ".value("):
            assert query not in text, f"{path.relative_to(PACKAGE)} has {query!r}"
