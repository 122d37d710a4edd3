"""The layering rules of docs/architecture.md, checked on the imports every file makes (read with `ast`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "layers" / "ferry" / "ferry"
HANDLERS = sorted((ROOT / "functions").glob("*/app.py"))
BASE = ("ferry.aws", "ferry.config", "ferry.taskdef", "ferry.runtime")  # plumbing: imports no workflow module
WORKFLOW = ("ferry.steps", "ferry.triggers", "ferry.lifecycle")


def imports(path: Path) -> list[str]:
    """Every module `path` imports (absolute names; `from a import b` counts as a.b when a.b is a module)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path.relative_to(ROOT)}: a relative import; the library imports absolutely")
    return found


def module_of(path: Path) -> str:
    parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_handlers_import_only_the_library():
    for handler in HANDLERS:
        outside = [m for m in imports(handler) if not under(m, "ferry")]
        assert outside == [], f"{handler.relative_to(ROOT)} imports {outside}: a handler imports only the library"


def test_the_library_never_imports_the_cli_or_the_sandbox():
    for path in LIBRARY.rglob("*.py"):
        found = [m for m in imports(path) if under(m, "ferry_cli", "moto")]
        assert found == [], f"{path.relative_to(ROOT)} imports {found}"


def test_no_step_imports_another_step():
    for path in (LIBRARY / "steps").glob("*.py"):
        own = module_of(path)
        others = {m for m in imports(path) if under(m, "ferry.steps") and m not in ("ferry.steps", own)}
        assert others == set(), (
            f"{own} imports {sorted(others)}: what two steps share belongs in ferry/aws, "
            "ferry/config, ferry/taskdef or ferry/contract.py"
        )


def test_the_plumbing_imports_no_step_trigger_or_lifecycle_module():
    for path in LIBRARY.rglob("*.py"):
        if under(module_of(path), *BASE):
            found = [m for m in imports(path) if under(m, *WORKFLOW)]
            assert found == [], f"{module_of(path)} imports {found}"


def test_the_checks_see_what_they_check():
    assert len(HANDLERS) == 14
    assert "ferry.steps.render" in {module_of(p) for p in (LIBRARY / "steps").glob("*.py")}
    assert "ferry.aws.ecs" in imports(LIBRARY / "steps" / "update_service.py")
