"""Drawing a pipeline: Mermaid text, and ``.mmd``, ``.md`` or self-contained ``.html`` files.

Example::

    text = pipeline.draw()                      # Mermaid source (flowchart)
    pipeline.draw("pipeline.html")              # Mermaid source + an inline SVG; opens offline
    pipeline.draw("pipeline.md")                # a ```mermaid block (GitHub, GitLab, Jupyter render it)
    pipeline.draw("pipeline.mmd")               # Mermaid source only (mermaid-cli, mermaid.live)

Steps are boxes labelled with their name and type (``gen_a`` / ``TextGeneration``, with the LLM's model when it
has one). Connections are arrows. A routing batch function is a diamond between its step and the steps it routes
to, labelled with the function (``sample_n_steps(n=2, seed=0)``); its outgoing arrows are dotted and labelled
``routed``.

The HTML file needs no network: next to the Mermaid source it holds an SVG laid out here (a longest-path
layered layout, top to bottom), not by Mermaid's JavaScript.
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from beam_distil.helpers import is_url

if TYPE_CHECKING:
    from beam_distil.pipeline.pipeline import Pipeline

FORMATS = ("mermaid", "md", "html")
_SUFFIX_FORMATS = {".mmd": "mermaid", ".mermaid": "mermaid", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html"}


@dataclass
class _Node:
    id: str
    label: str
    detail: str
    kind: str  # "step", "generator", "global" or "routing"


@dataclass
class _Edge:
    source: str
    target: str
    label: Optional[str] = None
    dotted: bool = False


@dataclass
class _Graph:
    nodes: Dict[str, _Node] = field(default_factory=dict)
    edges: List[_Edge] = field(default_factory=list)


# -- the graph ----------------------------------------------------------------------------------------------------


def _node_id(name: str, taken: Dict[str, str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", name) or "step"
    if base[0].isdigit():
        base = f"s_{base}"
    if base.lower() in ("end", "graph", "subgraph", "flowchart", "style", "class", "click"):
        base = f"{base}_"
    candidate, index = base, 1
    while candidate in taken.values():
        candidate = f"{base}_{index}"
        index += 1
    return candidate


def routing_label(function: object) -> str:
    """``sample_n_steps(n=2, seed=0)`` for a factory-made routing function, else the function's name."""
    factory = getattr(function, "factory", None)
    if factory:
        kwargs = ", ".join(f"{key}={value!r}" for key, value in (factory.get("kwargs") or {}).items())
        return f"{factory.get('name', getattr(function, 'name', '?'))}({kwargs})"
    return str(getattr(function, "name", type(function).__name__))


def _step_detail(step: object) -> Tuple[str, str]:
    kind = "generator" if getattr(step, "is_generator", False) else "global" if getattr(step, "is_global", False) else "step"
    detail = type(step).__name__
    llm = getattr(step, "llm", None)
    if llm is not None:
        model = getattr(llm, "model", None) or getattr(llm, "model_path", None)
        detail += f" · {type(llm).__name__}" + (f" ({model})" if model else "")
    return kind, detail


def _graph(pipeline: "Pipeline") -> _Graph:
    graph = _Graph()
    ids: Dict[str, str] = {}
    for name, step in pipeline.dag.steps.items():
        ids[name] = _node_id(name, ids)
        kind, detail = _step_detail(step)
        graph.nodes[name] = _Node(ids[name], name, detail, kind)
    for name in pipeline.dag.steps:
        function = pipeline.routing.get(name)
        routed = set(function.downstream) if function is not None else set()
        if function is not None:
            key = f"{name}.route"
            ids[key] = _node_id(f"{name}_route", ids)
            description = getattr(function, "description", None) or ""
            graph.nodes[key] = _Node(ids[key], routing_label(function), description, "routing")
            graph.edges.append(_Edge(name, key))
        for successor in pipeline.dag.successors(name):
            if successor in routed:
                graph.edges.append(_Edge(f"{name}.route", successor, label="routed", dotted=True))
            else:
                graph.edges.append(_Edge(name, successor))
    return graph


# -- Mermaid ------------------------------------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label."""
    return html.escape(text, quote=False).replace('"', "#quot;")


def to_mermaid(pipeline: "Pipeline", direction: str = "TD") -> str:
    """The pipeline as a Mermaid ``flowchart``."""
    graph = _graph(pipeline)
    lines = [f"flowchart {direction}"]
    for node in graph.nodes.values():
        label = _mermaid_text(node.label)
        if node.kind == "routing":
            lines.append(f'    {node.id}{{"{label}"}}')
        else:
            lines.append(f'    {node.id}["<b>{label}</b><br/>{_mermaid_text(node.detail)}"]')
    for edge in graph.edges:
        source, target = graph.nodes[edge.source].id, graph.nodes[edge.target].id
        arrow = "-.->" if edge.dotted else "-->"
        label = f'|"{_mermaid_text(edge.label)}"|' if edge.label else ""
        lines.append(f"    {source} {arrow}{label} {target}")
    kinds = {node.kind for node in graph.nodes.values()}
    styles = {
        "generator": "fill:#e8f4ff,stroke:#1f6feb",
        "step": "fill:#f6f8fa,stroke:#57606a",
        "global": "fill:#fff8e5,stroke:#9a6700",
        "routing": "fill:#fbefff,stroke:#8250df",
    }
    for kind in sorted(kinds):
        members = ",".join(node.id for node in graph.nodes.values() if node.kind == kind)
        lines.append(f"    classDef {kind} {styles[kind]}")
        lines.append(f"    class {members} {kind}")
    return "\n".join(lines) + "\n"


# -- SVG (a small layered layout, no JavaScript) --------------------------------------------------------------------

_NODE_HEIGHT = 46
_ROUTING_HEIGHT = 56
_LAYER_GAP = 70
_NODE_GAP = 28
_CHAR_WIDTH = 7.2
_MARGIN = 20


def _layers(graph: _Graph) -> List[List[str]]:
    """Longest-path layering, then a few barycenter sweeps to reduce crossings."""
    predecessors: Dict[str, List[str]] = {key: [] for key in graph.nodes}
    successors: Dict[str, List[str]] = {key: [] for key in graph.nodes}
    for edge in graph.edges:
        predecessors[edge.target].append(edge.source)
        successors[edge.source].append(edge.target)
    depth: Dict[str, int] = {}

    def layer_of(key: str, seen: Tuple[str, ...] = ()) -> int:
        if key not in depth:
            depth[key] = 1 + max((layer_of(p, seen + (key,)) for p in predecessors[key] if p not in seen), default=-1)
        return depth[key]

    for key in graph.nodes:
        layer_of(key)
    layers: List[List[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for key in graph.nodes:  # declaration order inside a layer
        layers[depth[key]].append(key)
    for _ in range(4):
        for index in range(1, len(layers)):
            position = {key: i for i, key in enumerate(layers[index - 1])}
            layers[index].sort(
                key=lambda k: sum(position[p] for p in predecessors[k] if p in position)
                / max(1, len([p for p in predecessors[k] if p in position]))
                if any(p in position for p in predecessors[k])
                else len(position)
            )
        for index in range(len(layers) - 2, -1, -1):
            position = {key: i for i, key in enumerate(layers[index + 1])}
            layers[index].sort(
                key=lambda k: sum(position[s] for s in successors[k] if s in position)
                / max(1, len([s for s in successors[k] if s in position]))
                if any(s in position for s in successors[k])
                else len(position)
            )
    return layers


def _node_size(node: _Node) -> Tuple[float, float]:
    text = max(len(node.label) * 1.1, len(node.detail) * 0.9)
    width = max(120.0, text * _CHAR_WIDTH + 28)
    if node.kind == "routing":
        return width + 40, float(_ROUTING_HEIGHT)
    return width, float(_NODE_HEIGHT)


def to_svg(pipeline: "Pipeline") -> str:
    """The pipeline as a standalone SVG document (top to bottom)."""
    graph = _graph(pipeline)
    layers = _layers(graph)
    sizes = {key: _node_size(node) for key, node in graph.nodes.items()}
    layer_widths = [sum(sizes[k][0] for k in layer) + _NODE_GAP * (len(layer) - 1) for layer in layers]
    width = max(layer_widths, default=0) + 2 * _MARGIN
    centers: Dict[str, Tuple[float, float]] = {}
    y = _MARGIN
    for layer, layer_width in zip(layers, layer_widths):
        height = max(sizes[k][1] for k in layer)
        x = (width - layer_width) / 2
        for key in layer:
            centers[key] = (x + sizes[key][0] / 2, y + height / 2)
            x += sizes[key][0] + _NODE_GAP
        y += height + _LAYER_GAP
    total_height = y - _LAYER_GAP + _MARGIN
    colors = {
        "generator": ("#e8f4ff", "#1f6feb"),
        "step": ("#f6f8fa", "#57606a"),
        "global": ("#fff8e5", "#9a6700"),
        "routing": ("#fbefff", "#8250df"),
    }
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{total_height:.0f}"'
        f' viewBox="0 0 {width:.0f} {total_height:.0f}" font-family="sans-serif" font-size="12">',
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" markerHeight=\"8\""
        ' orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#57606a"/></marker></defs>',
    ]
    for edge in graph.edges:
        (x1, y1), (x2, y2) = centers[edge.source], centers[edge.target]
        y1 += sizes[edge.source][1] / 2
        y2 -= sizes[edge.target][1] / 2
        dash = ' stroke-dasharray="5,4"' if edge.dotted else ""
        middle = (y1 + y2) / 2
        parts.append(
            f'<path class="edge" data-source="{html.escape(edge.source)}" data-target="{html.escape(edge.target)}"'
            f' d="M {x1:.1f} {y1:.1f} C {x1:.1f} {middle:.1f}, {x2:.1f} {middle:.1f}, {x2:.1f} {y2:.1f}"'
            f' fill="none" stroke="#57606a" stroke-width="1.4"{dash} marker-end="url(#arrow)"/>'
        )
        if edge.label:
            parts.append(
                f'<text x="{(x1 + x2) / 2 + 4:.1f}" y="{middle:.1f}" fill="#8250df" font-size="10">'
                f"{html.escape(edge.label)}</text>"
            )
    for key, node in graph.nodes.items():
        (cx, cy), (w, h) = centers[key], sizes[key]
        fill, stroke = colors[node.kind]
        title = f"<title>{html.escape(node.label)}{': ' + html.escape(node.detail) if node.detail else ''}</title>"
        parts.append(f'<g class="node {node.kind}" data-name="{html.escape(key)}">{title}')
        if node.kind == "routing":
            points = f"{cx:.1f},{cy - h / 2:.1f} {cx + w / 2:.1f},{cy:.1f} {cx:.1f},{cy + h / 2:.1f} {cx - w / 2:.1f},{cy:.1f}"
            parts.append(f'<polygon points="{points}" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>')
            parts.append(f'<text x="{cx:.1f}" y="{cy + 4:.1f}" text-anchor="middle">{html.escape(node.label)}</text>')
        else:
            parts.append(
                f'<rect x="{cx - w / 2:.1f}" y="{cy - h / 2:.1f}" width="{w:.1f}" height="{h:.1f}" rx="6"'
                f' fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
            )
            parts.append(
                f'<text x="{cx:.1f}" y="{cy - 4:.1f}" text-anchor="middle" font-weight="bold">{html.escape(node.label)}</text>'
            )
            parts.append(
                f'<text x="{cx:.1f}" y="{cy + 12:.1f}" text-anchor="middle" fill="#57606a" font-size="10">'
                f"{html.escape(node.detail)}</text>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def to_html_fragment(pipeline: "Pipeline") -> str:
    """The SVG drawing and the Mermaid source as an HTML fragment (Jupyter's ``_repr_html_``)."""
    return (
        f'<figure class="beam-distil-pipeline">\n{to_svg(pipeline)}</figure>\n'
        "<details><summary>Mermaid source</summary>\n"
        f'<pre class="mermaid-source">{html.escape(to_mermaid(pipeline))}</pre>\n</details>\n'
    )


def to_html(pipeline: "Pipeline") -> str:
    """A standalone HTML page: the SVG drawing and the Mermaid source. No scripts, no network."""
    title = html.escape(f"Pipeline {pipeline.name}")
    description = f"<p>{html.escape(pipeline.description)}</p>\n" if pipeline.description else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{title}</title>\n"
        "<style>body{font-family:sans-serif;margin:2em}pre{background:#f6f8fa;padding:1em;overflow:auto}</style>\n"
        "</head>\n<body>\n"
        f"<h1>{title}</h1>\n{description}"
        f"{to_html_fragment(pipeline)}"
        "</body>\n</html>\n"
    )


def to_markdown(pipeline: "Pipeline") -> str:
    """A Markdown section with a ```mermaid block."""
    description = f"{pipeline.description}\n\n" if pipeline.description else ""
    return f"# Pipeline {pipeline.name}\n\n{description}```mermaid\n{to_mermaid(pipeline)}```\n"


# -- entry point ----------------------------------------------------------------------------------------------------


def draw(pipeline: "Pipeline", path: Optional[os.PathLike | str] = None, format: Optional[str] = None) -> str:
    """Returns the pipeline's Mermaid text; with ``path``, also writes it.

    ``format`` is ``"mermaid"`` (``.mmd``), ``"md"`` (a ```mermaid block) or ``"html"`` (SVG + source, offline);
    by default it follows the suffix of ``path``. ``path`` may be any Beam ``FileSystems`` path (``gs://``).
    """
    text = to_mermaid(pipeline)
    if path is None:
        if format is not None and format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
        return text
    path = os.fspath(path)
    if format is None:
        suffix = os.path.splitext(path)[1].lower()
        if suffix not in _SUFFIX_FORMATS:
            raise ValueError(
                f"Cannot tell the format of {path!r} from its suffix: use .mmd, .md or .html, or pass format="
            )
        format = _SUFFIX_FORMATS[suffix]
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    content = {"mermaid": text, "md": to_markdown(pipeline), "html": to_html(pipeline)}[format]
    _write(path, content)
    return text


def _write(path: str, content: str) -> None:
    if not is_url(path):
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(path, "w", encoding="utf-8") as file:
            file.write(content)
        return
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as file:
        file.write(content.encode("utf-8"))
