"""Rules of the codebase that a reviewer would otherwise check by hand."""

from __future__ import annotations

import ast
from pathlib import Path

import stransfer

PACKAGE = Path(stransfer.__file__).parent
MAX_FUNCTION_LINES = 60
MAX_CLI_MODULE_LINES = 300


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_function_is_longer_than_sixty_lines():
    long = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_the_cli_stays_thin():
    cli = sorted((PACKAGE / "cli").glob("*.py"))
    assert cli, "stransfer/cli/ holds the commands"
    sizes = {p.name: len(p.read_text().splitlines()) for p in cli}
    assert all(n < MAX_CLI_MODULE_LINES for n in sizes.values()), sizes
    # The commands call the library; they never build engines or run them themselves.
    for path in cli:
        source = path.read_text()
        assert "spec.build(" not in source and ".stylize_tensor(" not in source, path.name


def test_untrusted_files_are_loaded_in_one_place():
    callers = [p.relative_to(PACKAGE) for p in modules() if "torch.load(" in p.read_text()]
    assert len(callers) == 1, callers
