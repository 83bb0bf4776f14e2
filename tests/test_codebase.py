"""Rules of the codebase that a reviewer would otherwise check by hand."""

from __future__ import annotations

import ast
import io
import re
import tokenize
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


# Chip names and run stops in the package belong to code that probes the CPU; in prose they are a measurement log,
# whose numbers live in benchmarks/ and docs/ (comments say why).
MACHINE_NARRATIVE = re.compile(r"AVX|Xeon|EPYC|stop [0-9]")
# Files a user of the package does not have: cite the paper or docs/ instead.
PRIVATE_FILES = re.compile(r"\.\./shared|shared/data|FACTS\.md")


def prose_hits(path: Path, pattern: re.Pattern[str]) -> list[str]:
    """Lines where `pattern` occurs anywhere but in code: comments, docstrings and prose strings all count. A
    match may stand only in a name or in a string literal with no spaces, a value the code compares with
    (winograd's `get_cpu_capability().startswith("AVX512")`)."""
    hits = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        match = pattern.search(tok.string) if tok.type != tokenize.NAME else None
        if match is None:
            continue
        if tok.type == tokenize.STRING and not tok.string.lower().startswith(("f", "rf", "fr")):
            value = ast.literal_eval(tok.string)
            if isinstance(value, str) and not any(c.isspace() for c in value):
                continue
        before = tok.string[:match.start()]
        line = before.rsplit("\n", 1)[-1] + tok.string[match.start():].split("\n", 1)[0]
        hits.append(f"{path.relative_to(PACKAGE.parent)}:{tok.start[0] + before.count(chr(10))}: {line.strip()[:110]}")
    return hits


def test_comments_name_no_machine():
    hits = [hit for path in modules() for hit in prose_hits(path, MACHINE_NARRATIVE)]
    assert not hits, ("comments and docstrings say why, not on which chip or at which step something was measured; "
                      "move the figures into the benchmark script that measures them (benchmarks/*.py) or docs/:\n"
                      + "\n".join(hits))


def test_the_package_points_at_no_private_file():
    files = [p for p in sorted(PACKAGE.rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    hits = []
    for path in files:
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # images and other binary package data
        hits += [f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()[:100]}"
                 for n, line in enumerate(text.splitlines(), 1) if PRIVATE_FILES.search(line)]
    assert not hits, "a user has no ../shared or FACTS.md: cite the paper or docs/ instead:\n" + "\n".join(hits)
