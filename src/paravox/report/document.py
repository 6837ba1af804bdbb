"""A report written once as Markdown and rendered to a self-contained HTML page.

The Markdown references its figures as files beside it (readable on GitHub or in an editor);
the HTML page (rendered by the ``markdown`` package) carries the same figures inline as data
URIs, so it can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import markdown

from paravox.utils.atomic_files import write_text

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.6em 1em; }
"""


class Document:
    """A report built up part by part (headings, paragraphs, tables, figures), kept as
    Markdown and written by :meth:`write` as both ``.md`` and self-contained ``.html``."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = [f"# {title}\n"]

    def heading(self, text: str, level: int = 2) -> None:
        """A section heading (level 1 is the title's, given at construction)."""
        self.parts.append(f"{'#' * level} {text}\n")

    def paragraph(self, text: str) -> None:
        """A paragraph of Markdown text (surrounding whitespace stripped)."""
        self.parts.append(text.strip() + "\n")

    def note(self, text: str) -> None:
        """A highlighted paragraph (a raw HTML block: GitHub and the HTML page both show it)."""
        self.parts.append(f'<div class="note" markdown="1">\n\n{text.strip()}\n\n</div>\n')

    def table(self, header: list[str], rows: list[list]) -> None:
        """A Markdown table, first column left-aligned and the rest right-aligned (numbers);
        ``|`` inside cells is escaped."""
        def cell(x) -> str:
            return str(x).replace("|", "\\|")

        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
        self.parts.append("\n".join(lines) + "\n")

    def image(self, file: str, alt: str) -> None:
        """A figure by file name relative to the output folder (inlined in the HTML page)."""
        self.parts.append(f"![{alt}]({file})\n")

    def details(self, summary: str, text: str) -> None:
        """Collapsed preformatted text (configs, logs)."""
        self.parts.append(f"<details><summary>{html.escape(summary)}</summary>\n\n"
                          f"<pre>{html.escape(text)}</pre>\n</details>\n")

    def markdown(self) -> str:
        """The document so far as Markdown text."""
        return "\n".join(self.parts)

    def write(self, out_dir: str | Path, stem: str = "report") -> tuple[Path, Path]:
        """``<stem>.md`` (figures by file name) and ``<stem>.html`` (figures inline)."""
        out_dir = Path(out_dir)
        md = self.markdown()
        md_path = out_dir / f"{stem}.md"
        write_text(md_path, md)
        body = markdown.markdown(md, extensions=["tables", "fenced_code", "md_in_html"])

        def inline(match: re.Match) -> str:
            path = out_dir / html.unescape(match.group(1))
            if not path.is_file():
                raise FileNotFoundError(f"report figure {path} is missing")
            data = base64.b64encode(path.read_bytes()).decode()
            return f'src="data:image/png;base64,{data}"'

        body = re.sub(r'src="([^"]+\.png)"', inline, body)
        page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head>\n"
                f"<body>\n{body}\n</body></html>\n")
        html_path = out_dir / f"{stem}.html"
        write_text(html_path, page)
        return md_path, html_path
