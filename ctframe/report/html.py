"""Small HTML helpers and the page template (inline CSS, no external resources: it opens offline)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 1rem 2rem 4rem; color: #1d2330; line-height: 1.45; }}
h1 {{ font-size: 1.6rem; margin-bottom: 0.2rem; }}
h2 {{ border-bottom: 2px solid #d8dde6; padding-bottom: 0.2rem; margin-top: 2.2rem; }}
h3 {{ margin-bottom: 0.4rem; }}
nav a {{ margin-right: 0.9rem; }}
table {{ border-collapse: collapse; margin: 0.6rem 0 1rem; font-size: 0.92rem; }}
th, td {{ border: 1px solid #d8dde6; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }}
th {{ background: #f1f4f8; }}
td.number {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
figure {{ margin: 0.8rem 0 1.4rem; }}
figure img {{ max-width: 100%; border: 1px solid #e3e7ee; }}
figcaption {{ font-size: 0.85rem; color: #555e6e; }}
pre {{ background: #f6f8fa; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }}
.missing {{ color: #8a5a00; background: #fff6e0; padding: 0.4rem 0.7rem; border-left: 4px solid #e0a800; }}
.warning {{ color: #8a1f11; }}
.muted {{ color: #555e6e; font-size: 0.9rem; }}
.verdict {{ font-size: 1.02rem; padding: 0.4rem 0.7rem; border-left: 4px solid #2f7d32;
            background: #eef7ee; }}
.verdict.bad {{ border-left-color: #b3261e; background: #fdeeee; }}
.gallery {{ display: flex; flex-wrap: wrap; gap: 0.5rem; margin: 0.3rem 0 1rem; }}
.tile {{ margin: 0; padding: 0.25rem; border: 1px solid #e3e7ee; background: #fafbfc; width: max-content; }}
.tile div {{ display: flex; gap: 2px; }}
.tile img.thumb {{ width: 96px; height: 96px; max-width: none; flex: none; object-fit: contain; border: 0;
                   background: #000; }}
.tile figcaption {{ width: 0; min-width: 100%; font-size: 0.72rem; overflow-wrap: anywhere; }}
.nothumb {{ display: inline-block; flex: none; width: 96px; height: 96px; font-size: 0.7rem; color: #8a5a00;
            background: #fff6e0; overflow: hidden; }}
details {{ margin: 0.6rem 0; }}
summary {{ cursor: pointer; color: #555e6e; }}
</style>
</head>
<body>
<h1>{title}</h1>
<p class="muted">{subtitle}</p>
<nav>{navigation}</nav>
{sections}
</body>
</html>
"""


SPLIT_TITLES = {"train": "Training", "val": "Validation", "test": "Test"}
"""How every section names the splits, in headings and sentences alike."""


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """``sections``: (id, heading, body html) in page order."""
    navigation = " ".join(f'<a href="#{escape(id_)}">{escape(heading)}</a>' for id_, heading, _ in sections)
    body = "\n".join(
        f'<section id="{escape(id_)}">\n<h2>{escape(heading)}</h2>\n{html}\n</section>'
        for id_, heading, html in sections
    )
    return PAGE.format(title=escape(title), subtitle=escape(subtitle), navigation=navigation, sections=body)


def missing(text: str) -> str:
    return f'<p class="missing">{escape(text)}</p>'


def heading(text: str, level: int = 3) -> str:
    """A sub-heading inside a section (the section's own title is an ``h2``)."""
    return f"<h{level}>{escape(text)}</h{level}>"


def paragraph(text: str, css: str | None = None) -> str:
    attribute = f' class="{escape(css)}"' if css else ""
    return f"<p{attribute}>{escape(text)}</p>"


def image(png: bytes, alt: str, caption: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    caption_html = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}">{caption_html}</figure>'


def verdict(text: str, bad: bool = False) -> str:
    """The one sentence a section opens with; ``bad`` marks it as a warning."""
    return f'<p class="verdict{" bad" if bad else ""}">{escape(text)}</p>'


def details(summary: str, body: str) -> str:
    """A collapsed block: the raw record behind a section, for whoever wants every key."""
    return f"<details><summary>{escape(summary)}</summary>\n{body}\n</details>"


def preformatted(text: str) -> str:
    return f"<pre>{escape(text)}</pre>"


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return f"<td>{escape(str(value))}</td>"
    if isinstance(value, int | float):
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return f'<td class="number">{escape(text)}</td>'
    return f"<td>{escape(str(value))}</td>"


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], limit: int = 200) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows[:limit])
    more = paragraph(f"... and {len(rows) - limit} more rows", "muted") if len(rows) > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def structure(value: Any, depth: int = 0) -> str:
    """Any JSON value as readable HTML: flat mappings as tables, nested ones under sub-headings."""
    if _scalar(value):
        return paragraph(str(value))
    if isinstance(value, Mapping):
        if not value:
            return paragraph("(none)", "muted")
        if all(_scalar(v) for v in value.values()):
            return table(["name", "value"], [[k, v] for k, v in value.items()])
        if all(isinstance(v, Mapping) and v and all(_scalar(x) for x in v.values()) for v in value.values()):
            columns = list(dict.fromkeys(c for v in value.values() for c in v))
            return table(["", *columns], [[k, *(v.get(c, "") for c in columns)] for k, v in value.items()])
        if depth >= 3:
            return preformatted(json.dumps(value, indent=2, default=str)[:20000])
        heading = f"h{min(depth + 3, 6)}"
        flat = {k: v for k, v in value.items() if _scalar(v)}  # scalars together in one table first
        parts = [table(["name", "value"], [[k, v] for k, v in flat.items()])] if flat else []
        parts += [
            f"<{heading}>{escape(str(k))}</{heading}>\n{structure(v, depth + 1)}"
            for k, v in value.items()
            if k not in flat
        ]
        return "\n".join(parts)
    if isinstance(value, list):
        if not value:
            return paragraph("(none)", "muted")
        if all(_scalar(v) for v in value):
            shown = ", ".join(str(v) for v in value[:50])
            return paragraph(shown + (f" ... and {len(value) - 50} more" if len(value) > 50 else ""))
        if all(isinstance(v, Mapping) and all(_scalar(x) for x in v.values()) for v in value):
            columns = list(dict.fromkeys(c for v in value for c in v))
            return table(columns, [[v.get(c, "") for c in columns] for v in value])
        if all(isinstance(v, list) and all(_scalar(x) for x in v) for v in value):
            width = max(len(v) for v in value)
            return table(
                [f"#{i + 1}" for i in range(width)], [[*v, *([""] * (width - len(v)))] for v in value]
            )
        return preformatted(json.dumps(value, indent=2, default=str)[:20000])
    return paragraph(str(value))
