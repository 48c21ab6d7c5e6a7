"""The report's document model (banners, tables, figures, sections) and its two renderings.

HTML is self-contained (figures embedded as data URIs, every text escaped); Markdown links the figure
files. Both open with a linked table of contents; figures of one kind given as a FigureRow sit side by side.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Banner:
    text: str
    level: str = "danger"  # danger | warning | info


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    path: Path
    caption: str


@dataclass
class FigureRow:
    """Figures of one kind, shown side by side."""

    figures: list[Figure]


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> Section:
        self.blocks.extend(b for b in blocks if b is not None)
        return self

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}caption{text-align:left;font-weight:600;padding:.3em 0}
.banner{padding:.8em 1em;margin:.8em 0;border-radius:4px;font-weight:600}.danger{background:#c62828;color:#fff}
.warning{background:#fff3cd;border:1px solid #e0b400}.info{background:#e3f2fd}
.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}.row figure{flex:1 1 300px;margin:.5em 0}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.85em;color:#555}
nav ol{columns:2}code{background:#f4f4f4;padding:0 .2em}"""


def _html_figure(figure: Figure) -> str:
    data = base64.b64encode(Path(figure.path).read_bytes()).decode("ascii")
    return (
        f"<figure><img alt='{html.escape(figure.caption)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>"
    )


def render_html(title: str, sections: list[Section]) -> str:
    """Self-contained HTML: images embedded as data URIs; every text from data or users is escaped."""
    out = [
        "<!DOCTYPE html><html><head><meta "
        f"charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<nav><strong>Contents</strong><ol>",
    ]
    out += [f"<li><a href='#{s.anchor}'>{html.escape(s.title)}</a></li>" for s in sections]
    out.append("</ol></nav>")
    for section in sections:
        out.append(f"<h2 id='{section.anchor}'>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Banner):
                out.append(f"<div class='banner {block.level}'>{html.escape(block.text)}</div>")
            elif isinstance(block, Table):
                out.append("<table>" + (f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""))
                out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in block.header) + "</tr>")
                for row in block.rows:
                    out.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>")
                out.append("</table>")
            elif isinstance(block, FigureRow):
                out.append("<div class='row'>" + "".join(_html_figure(f) for f in block.figures) + "</div>")
            elif isinstance(block, Figure):
                out.append(_html_figure(block))
            else:
                out.append(f"<p>{html.escape(str(block))}</p>")
    out.append("</body></html>")
    return "\n".join(out)


def _md_cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_figure(figure: Figure, relative_to: Path) -> list[str]:
    link = Path(os.path.relpath(Path(figure.path).resolve(), Path(relative_to).resolve())).as_posix()
    return [f"![{figure.caption}]({link})", "", f"*{figure.caption}*", ""]


def render_markdown(title: str, sections: list[Section], relative_to: Path) -> str:
    """Markdown with figure links relative to the folder the file is written to."""
    out = [f"# {title}", "", "**Contents**", ""]
    out += [f"{i}. [{s.title}](#{s.anchor})" for i, s in enumerate(sections, start=1)]
    out.append("")
    for section in sections:
        out += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Banner):
                out += [f"> **{block.level.upper()}: {block.text}**", ""]
            elif isinstance(block, Table):
                if block.caption:
                    out += [f"**{block.caption}**", ""]
                out.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
                out.append("|" + "---|" * len(block.header))
                out += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in block.rows]
                out.append("")
            elif isinstance(block, FigureRow):
                for figure in block.figures:
                    out += _md_figure(figure, relative_to)
            elif isinstance(block, Figure):
                out += _md_figure(block, relative_to)
            else:
                out += [str(block), ""]
    return "\n".join(out)
