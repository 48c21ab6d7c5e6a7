"""The report: built from a run folder's files alone, so `pneumocam report RUN` re-renders it anywhere.

figures.py draws the PNGs; sections.py turns results.json into sections (one pure function each);
document.py renders them to self-contained HTML and to Markdown; build.render(run_dir) ties them together.
The layout of results.json is documented in docs/results.md.
"""

from pneumocam.report.build import render
from pneumocam.report.document import Banner, Figure, FigureRow, Section, Table, render_html, render_markdown

__all__ = ["Banner", "Figure", "FigureRow", "Section", "Table", "render", "render_html", "render_markdown"]
