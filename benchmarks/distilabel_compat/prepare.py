"""Copy distilabel 1.5.3's unit tests into a work folder: `ref/` unchanged (run against distilabel itself), `suite/`
with only the imports rewritten to beam_distil (``distilabel.X`` -> ``beam_distil.X``, moved modules per
areas.MODULE_MAP) and `suite_lenient/`, the same with a placeholder for every name beam_distil lacks.

Also writes `mapping.txt` (every import as rewritten) and `internal_tests.json` (tests classed as internals) there.

Usage: python prepare.py <distilabel tests/unit dir> <beam_distil package dir> <work dir>
"""

import ast
import json
import re
import shutil
import sys
from pathlib import Path

from areas import AREAS, INTERNAL_FILES, LENIENT_ALIASES, MODULE_MAP, SUPPORT_FILES

SRC = Path(sys.argv[1]).resolve()
PKG = Path(sys.argv[2]).resolve()  # .../beam_distil
WORK = Path(sys.argv[3]).resolve()

_names_cache: dict = {}


def module_file(module: str):
    parts = module.split(".")
    if parts[0] != "beam_distil":
        return None
    base = PKG.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def defined_names(module: str) -> set:
    """Names a beam_distil module defines or imports at top level (static: the tree may not import)."""
    if module in _names_cache:
        return _names_cache[module]
    file = module_file(module)
    names: set = set()
    if file is not None:
        tree = ast.parse(file.read_text())
        stack = list(tree.body)
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    for sub in ast.walk(target):
                        if isinstance(sub, ast.Name):
                            names.add(sub.id)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    names.add(alias.asname or alias.name.split(".")[0])
            elif isinstance(node, (ast.If, ast.Try)):
                stack.extend(node.body)
                stack.extend(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    stack.extend(handler.body)
        # A package's submodules are importable names too.
        if file.name == "__init__.py":
            names.update(p.stem for p in file.parent.glob("*.py") if p.stem != "__init__")
            names.update(p.name for p in file.parent.iterdir() if (p / "__init__.py").is_file())
    _names_cache[module] = names
    return names


def candidates(dl_module: str) -> list:
    same = "beam_distil" + dl_module[len("distilabel"):]
    chain = list(MODULE_MAP.get(dl_module, []))
    parts = same.split(".")
    # beam_distil.<same path>, then its parents down to beam_distil.<first level> (the root only if asked for).
    for end in range(len(parts), 1 if len(parts) > 1 else 0, -1):
        chain.append(".".join(parts[:end]))
    return list(dict.fromkeys(chain))


def resolve(dl_module: str, name: str):
    for module in candidates(dl_module):
        if module_file(module) is not None and name in defined_names(module):
            return module
    return None


def mapped_path(dotted: str) -> str:
    """A dotted distilabel path (module or module.attr) with its module part mapped."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        if prefix in MODULE_MAP:
            return ".".join([MODULE_MAP[prefix][0]] + parts[end:])
    return "beam_distil" + dotted[len("distilabel"):]


MAPPING_LINES: list = []


def rewrite_imports(text: str, guard: bool, where: str) -> str:
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    edits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and (
            node.module == "distilabel" or node.module.startswith("distilabel.")
        ):
            by_module: dict = {}
            for alias in node.names:
                target = resolve(node.module, alias.name)
                lenient_alias = LENIENT_ALIASES.get(f"{node.module}.{alias.name}")
                if guard and target is None and lenient_alias is not None and where not in SUPPORT_FILES:
                    module, name = lenient_alias.rsplit(".", 1)
                    by_module.setdefault(module, []).append(ast.alias(name=name, asname=alias.asname or alias.name))
                    MAPPING_LINES.append(f"{where}: from {node.module} import {alias.name} -> {lenient_alias}"
                                         " (lenient only)")
                    continue
                status = target or "NOT FOUND"
                MAPPING_LINES.append(f"{where}: from {node.module} import {alias.name} -> {status}")
                by_module.setdefault(target or mapped_path(node.module), []).append(alias)
            statements = []
            for module, aliases in by_module.items():
                if not guard:
                    names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in aliases)
                    statements.append(f"from {module} import {names}")
                    continue
                for a in aliases:  # one guard per name: a missing name must not take the others with it
                    bound = a.asname or a.name
                    statements.append(
                        f"try:\n    from {module} import {a.name}" + (f" as {a.asname}" if a.asname else "")
                        + f"\nexcept ImportError:\n    {bound} = type({bound!r}, (), {{}})"
                    )
            edits.append((node.lineno, node.end_lineno, node.col_offset, statements))
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "distilabel" for a in node.names):
            statements = []
            for alias in node.names:
                new = mapped_path(alias.name) if alias.name.split(".")[0] == "distilabel" else alias.name
                statements.append(f"import {new}" + (f" as {alias.asname}" if alias.asname else ""))
                MAPPING_LINES.append(f"{where}: import {alias.name} -> {new}")
            edits.append((node.lineno, node.end_lineno, node.col_offset, statements))
    for start, end, col, statements in sorted(edits, reverse=True):
        indent = " " * col
        block = "".join(indent + line + "\n" for s in statements for line in s.splitlines())
        lines[start - 1 : end] = [block]
    text = "".join(lines)
    # mock.patch("distilabel.module.attr") names a module the same way an import does.
    return re.sub(
        r"(patch(?:\.object)?\(\s*)([\"'])(distilabel\.[\w.]+)",
        lambda m: m.group(1) + m.group(2) + mapped_path(m.group(3)),
        text,
    )


PRIVATE = re.compile(
    r"(?<![\w.])(?:[A-Za-z]\w*)\._(?!_)\w+"  # obj._private
    r"|\b_(?:BatchManager|Batch|WriteBuffer|GlobalPipelineManager|StepWrapper)\b"
    r"|\b_[a-z]\w*\("  # _private_function(
)


def internal_tests(rel: str, text: str) -> dict:
    """test id (file::[Class::]name) -> whether it tests distilabel internals."""
    tree = ast.parse(text)
    result = {}

    def visit(body, prefix):
        for node in body:
            if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                visit(node.body, prefix + node.name + "::")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                source = ast.get_source_segment(text, node) or ""
                result[f"{rel}::{prefix}{node.name}"] = rel in INTERNAL_FILES or bool(PRIVATE.search(source))

    visit(tree.body, "")
    return result


def build(out: Path, rewrite: bool, lenient: bool = False) -> dict:
    if out.exists():
        shutil.rmtree(out)
    root = out / "tests" / "unit"
    internals = {}
    files = SUPPORT_FILES + [f for fs in AREAS.values() for f in fs]
    (out / "tests").mkdir(parents=True)
    (out / "tests" / "__init__.py").write_text("")
    for rel in files:
        source = SRC / rel
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text() if source.exists() else ""
        if rewrite and text:
            text = rewrite_imports(text, guard=lenient or rel in SUPPORT_FILES, where=rel)
        target.write_text(text)
        if rel not in SUPPORT_FILES:
            internals.update(internal_tests(rel, source.read_text()))
    for data in SRC.rglob("*"):  # data files the tests read next to themselves
        rel = data.relative_to(SRC).as_posix()
        if data.is_file() and data.suffix not in (".py", ".pyc") and any(rel.startswith(f.rsplit("/", 1)[0] + "/")
                                                                          for f in files if "/" in f):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(data, root / rel)
    # `tests` must resolve to this copy, not to another project's tests folder on sys.path.
    (out / "pytest.ini").write_text("[pytest]\n")
    return internals


if __name__ == "__main__":
    internals = build(WORK / "ref", rewrite=False)
    build(WORK / "suite", rewrite=True)
    # Lenient: a name beam_distil lacks becomes a placeholder class in test files too, so one missing import
    # costs only the tests that use it (shows what else fails behind it).
    build(WORK / "suite_lenient", rewrite=True, lenient=True)
    (WORK / "internal_tests.json").write_text(json.dumps(internals, indent=1))
    (WORK / "mapping.txt").write_text("\n".join(sorted(set(MAPPING_LINES))) + "\n")
    print(f"{len(internals)} test functions, {sum(internals.values())} internals; mapping in mapping.txt")
