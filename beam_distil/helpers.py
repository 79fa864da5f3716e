"""Small helpers shared by every layer (models, steps, pipeline, beam); this module imports none of them.

* ``compile_template``: a task's Jinja prompt template, compiled once per process, in Jinja's sandbox.
* ``is_url``: whether a path names a remote filesystem (``gs://``, ``https://``...) rather than a local file.
* ``did_you_mean``: the " Did you mean 'x'?" hint of an error about an unknown name.
* ``secret_digest``: a short fingerprint of a secret, to tell two clients apart without keeping the secret.
* ``seeded_random``: a ``random.Random`` seeded from content, the same in every process and run.
* ``to_text``: a pipeline's ``dump()`` as YAML or JSON text.
* ``is_installed``: whether an optional package (an extra) can be imported, without importing it.
* ``http_url_problem``: why a configured URL is not a usable http(s) URL, for an LLM's ``check_ready``.
* ``text_table``: rows of cells as an aligned text table (the run summary's tables).

Example::

    compile_template("Hello {{ name }}").render(name="Ada")          # "Hello Ada"
    f"Unknown step {name!r}.{did_you_mean(name, ['gen_a', 'gen_b'])}"  # "... Did you mean 'gen_a'?"
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import random
import urllib.parse
from functools import lru_cache
from typing import Any, Dict, Iterable, Optional

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment


@lru_cache(maxsize=8)
def template_environment(keep_trailing_newline: bool = True) -> ImmutableSandboxedEnvironment:
    """The Jinja environment every template renders in: sandboxed, because a template can come from a config
    file (``TextGeneration(template=...)`` in a saved pipeline) and plain Jinja lets a template reach Python
    internals (``''.__class__.__mro__[1].__subclasses__()``) and run commands. The immutable sandbox also
    refuses calls that change the rows' lists and dicts. Undefined variables are errors."""
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=keep_trailing_newline)


@lru_cache(maxsize=64)
def compile_template(template: str, keep_trailing_newline: bool = True) -> Template:
    """``template`` compiled in ``template_environment``. Cached per process: a compiled template does not
    pickle, so steps keep the text and compile it where they render."""
    return template_environment(keep_trailing_newline).from_string(template)


def is_url(path: str) -> bool:
    """True for ``scheme://...`` paths (``gs://``, ``s3://``, ``https://``), False for local paths."""
    return "://" in path


def did_you_mean(name: str, candidates: Iterable[str], prefix: str = "") -> str:
    """``" Did you mean 'a', 'b'?"`` for the candidates close to ``name`` (each shown with ``prefix``), else ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f" Did you mean {', '.join(repr(prefix + match) for match in close)}?" if close else ""


def secret_digest(secret: str) -> str:
    """16 hex characters of the secret's SHA-256: equal for equal secrets, and the secret can't be read back."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def seeded_random(seed: int, *content: Any) -> random.Random:
    """A ``random.Random`` seeded from ``seed`` and ``content`` (stable across processes and runs)."""
    digest = hashlib.sha256(json.dumps([seed, *content], sort_keys=True, default=str).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def to_text(data: Dict[str, Any], format: str) -> str:
    """``data`` as ``"yaml"`` or ``"json"`` text (safe YAML: plain data only)."""
    if format == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if format == "yaml":
        import yaml

        # libyaml's dumper (bundled with PyYAML's wheels) is 3-4x faster: a LoadDataFromDicts of 100,000 rows is
        # written in 0.9 s rather than 3.0 s. Same safe subset as safe_dump.
        base = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

        class WithoutAliases(base):  # type: ignore[valid-type, misc]
            """Writes an object met twice out twice: a file with anchors is slower to load (it is checked for
            alias bombs) and harder to read and edit."""

            def ignore_aliases(self, data: Any) -> bool:
                return True

        return yaml.dump(data, Dumper=WithoutAliases, sort_keys=False, allow_unicode=True)
    raise ValueError(f"Unknown pipeline file format {format!r}: use 'yaml' or 'json'.")


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it (torch alone takes seconds)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # in sys.modules without a spec
        return True


def http_url_problem(url: Optional[str], what: str, *examples: str) -> Optional[str]:
    """Why ``url`` is not a usable http(s) URL, or ``None`` when it is.

    ``what`` names the setting and ``examples`` show good values:
    ``http_url_problem("api.x.com", "base_url 'api.x.com' of model 'm'", "https://api.x.com")`` gives
    ``"base_url 'api.x.com' of model 'm' is not an http(s) URL; write it like 'https://api.x.com'"``.
    """
    parts = urllib.parse.urlsplit(url or "")
    try:
        parts.port  # raises on a port that is not a number in range
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in url or "")
    except ValueError:
        usable = False
    if usable:
        return None
    return f"{what} is not an http(s) URL; write it like " + " or ".join(repr(example) for example in examples)


def text_table(rows: Iterable[Iterable[Any]]) -> str:
    """``rows`` (the first one the header) as an aligned text table: the first column left-aligned (names), the
    others right-aligned (figures), a dashed line under the header::

        text_table([["step", "rows"], ["gen", 10]])   # "step  rows\n----  ----\ngen     10"
    """
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = [
        "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths)))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)
