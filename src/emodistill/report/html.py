"""The report page: one self-contained HTML file (inline CSS, no scripts, no external resources) that
links PNG files in the same folder by relative name."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from typing import Any

from emodistill.metrics.scores import METRIC_DESCRIPTIONS, METRIC_KEYS

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1180px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.7em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f4f4f4; }
figure { margin: 1em 0 2em; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.4em 0.8em; margin: 0.6em 0; }
nav a { margin-right: 1em; }
"""


@dataclass
class FigureItem:
    """One PNG of the page: file name (relative), alt text, caption."""

    file: str
    alt: str
    caption: str


@dataclass
class Section:
    """A titled group of figures; ``notes`` explain what was skipped and why."""

    title: str
    anchor: str
    figures: list[FigureItem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    """HTML tables shown before the figures (built by :func:`rows_table`)."""


def rows_table(columns: list[str], rows: list[list[Any]]) -> str:
    """An HTML table with a header row; floats get 4 decimals and are right-aligned."""
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td class=num>{_fmt(v)}</td>" if isinstance(v, (int, float)) else f"<td>{_fmt(v)}</td>"
                         for v in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return escape(str(v))


def metrics_table(results: dict[str, Any]) -> str:
    """Test (and selected-epoch validation) metrics of ``results.json`` as an HTML table."""
    test, valid = results.get("test") or {}, results.get("valid") or {}
    known = [k for keys in METRIC_KEYS.values() for k in keys]
    keys = sorted(set(test) | set(valid), key=lambda k: (k != "loss", known.index(k) if k in known else len(known), k))
    rows = []
    for k in keys:
        desc = METRIC_DESCRIPTIONS.get(k, "model-selection loss (MAE for regression)" if k == "loss" else "")
        rows.append(f"<tr><th title=\"{escape(desc)}\">{escape(k)}</th><td class=num>{_fmt(test.get(k, ''))}</td>"
                    f"<td class=num>{_fmt(valid.get(k, ''))}</td></tr>")
    return ("<table><tr><th>metric</th><th>test</th><th>valid (selected epoch)</th></tr>"
            + "".join(rows) + "</table>")


def render_page(title: str, header: dict[str, Any], results: dict[str, Any] | None,
                sections: list[Section], notes: list[str]) -> str:
    """The whole page as a string."""
    head_rows = "".join(f"<tr><th>{escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in header.items())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f"<table>{head_rows}</table>",
    ]
    links = ([("metrics", "Metrics")] if results is not None else []) + [(s.anchor, s.title) for s in sections]
    parts.append("<nav>" + "".join(f'<a href="#{a}">{escape(t)}</a>' for a, t in links) + "</nav>")
    if results is not None:
        parts += ["<h2 id=metrics>Metrics</h2>", metrics_table(results)]
    parts += [f'<p class="note">{escape(n)}</p>' for n in notes]
    for s in sections:
        parts.append(f'<section id="{escape(s.anchor)}"><h2>{escape(s.title)}</h2>')
        parts += [f'<p class="note">{escape(n)}</p>' for n in s.notes]
        parts += s.tables
        for f in s.figures:
            parts.append(f'<figure><img src="{escape(f.file)}" alt="{escape(f.alt)}">'
                         f"<figcaption>{escape(f.caption)}</figcaption></figure>")
        parts.append("</section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
