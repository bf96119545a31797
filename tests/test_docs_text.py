"""README and the docs read as a page about the project: they render as written (no fence
swallowing a section), and name no folder of the machine they were written on.

The README is rendered with markdown-it-py in CommonMark mode (the dialect GitHub's renderer
extends), so a fence that opens by mistake shows up as a missing heading, the way a reader
would see it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [
    REPO / "README.md",
    *sorted((REPO / "docs").rglob("*.md")),
    *sorted((REPO / "benchmarks").rglob("*.md")),
]
# a folder of some machine: /work/..., /root/..., /tmp/..., a home, a mount, a data disk.
# Documented system locations of packages (/usr/share/...) are fine.
MACHINE_PATH = re.compile(
    r"(?<![\w.~-])/(?:work|root|tmp|home|Users|mnt|scratch|data|models|opt|srv|var/tmp)/"
)
# words about how the project was made rather than what it is
MAKING_OF = re.compile(r"\b(?:lent|lend|lending|loaned)\b", re.IGNORECASE)


def _hits(pattern: re.Pattern, pages: list[Path]) -> list[str]:
    return [
        f"{page.relative_to(REPO)}:{n}: {line.strip()}"
        for page in pages
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]


def test_no_machine_folders_in_the_docs():
    hits = _hits(MACHINE_PATH, PAGES)
    assert not hits, "absolute machine paths (use relative ones):\n" + "\n".join(hits)


def test_the_docs_speak_of_the_project():
    hits = _hits(MAKING_OF, PAGES)
    assert not hits, "lines about how the project was built:\n" + "\n".join(hits)


def test_the_checks_can_fail(tmp_path: Path):
    page = tmp_path / "p.md"
    page.write_text(
        "see /work/runs16/x and `/tmp/glue`\nfine: /usr/share/wordnet, runs/x, `/tmp`\n"
        "a GPU was lent\n",
        encoding="utf-8",
    )
    lines = page.read_text(encoding="utf-8").splitlines()
    assert [bool(MACHINE_PATH.search(x)) for x in lines] == [True, False, False]
    assert [bool(MAKING_OF.search(x)) for x in lines] == [False, False, True]


def _headings_outside_fences(text: str) -> list[str]:
    headings, fence = [], None
    for line in text.splitlines():
        match = re.match(r"^(`{3,}|~{3,})", line)
        if match and fence is None:
            fence = match.group(1)
        elif match and fence and line.strip() == line.strip()[0] * len(line.strip()):
            if line.strip().startswith(fence):
                fence = None
        elif fence is None and line.startswith("## "):
            headings.append(line[3:].strip())
    return headings


def test_readme_renders_every_section():
    markdown_it = pytest.importorskip("markdown_it")
    text = (REPO / "README.md").read_text(encoding="utf-8")
    html = markdown_it.MarkdownIt("commonmark").enable("table").render(text)
    rendered = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<h2>(.*?)</h2>", html)]
    assert "Documentation" in rendered and "Layout" in rendered, rendered
    assert rendered == _headings_outside_fences(text)
    for block in re.findall(r"<code[^>]*>(.*?)</code>", html, flags=re.S):
        assert not re.search(r"^## ", block, flags=re.M), "a code block swallowed a heading"
    assert "bpsn.py" not in text  # the module is bpsn_module.py; no stale layout
