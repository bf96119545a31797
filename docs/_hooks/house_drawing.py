"""mkdocs hook: replace ``<!-- house-drawing -->`` by the live house drawing (each layer with
its folders and the folders each imports), as ``python scripts/house_counts.py --drawing``
prints it, so the page always shows the imports of the code it documents."""

from __future__ import annotations

import importlib.util
from pathlib import Path

MARKER = "<!-- house-drawing -->"
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "house_counts.py"


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    spec = importlib.util.spec_from_file_location("house_counts", SCRIPT)
    house = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(house)
    text = house.drawing(house.import_graph())
    return markdown.replace(MARKER, "```text\n" + text + "\n```")
