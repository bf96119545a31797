"""mkdocs hook: the example notebooks as site pages, executed at build time with their outputs.

Every `examples/*.ipynb` is executed with nbclient (as `tests/test_notebooks.py` does, with
`BPSN_EXAMPLES_FAST=1`, in the repository root, but with the inline matplotlib backend) and
converted to a Markdown page `examples/<stem>.md`; its figures become
`examples/<stem>/figN.png`.  Nothing is written into `docs/`: the pages are generated files.

An executed notebook is cached in `.cache/docs-notebooks/` under a key made of the notebook,
the package sources and the mode, so a rebuild of unchanged sources executes nothing.
`BPSN_DOCS_NOTEBOOKS=off` skips execution (pages without outputs, for quick local builds).
Each page links the stored notebook (`examples/<stem>.ipynb`, copied into the site) for
download.  A notebook whose metadata has ``{"bpsn_ext": {"full_run": true}}`` trains in full
whatever the mode (its page says so).  On the Examples page, `<!-- notebook: STEM -->` becomes
a link to the page with a thumbnail (the notebook's first figure) and a download link.
A failing cell is a build warning (an error under --strict).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.notebooks")
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "docs-notebooks"
MARKER = re.compile(r"<!--\s*notebook:\s*([\w\-]+)\s*-->")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TIMEOUT_S = 300
_pages: dict[str, dict] = {}  # stem -> {"title", "thumb"}


def _key(nb_bytes: bytes, mode: str) -> str:
    h = hashlib.sha256(nb_bytes + mode.encode())
    for src in sorted((ROOT / "bpsn_ext").rglob("*")):
        if src.suffix in (".py", ".cpp", ".cu"):
            h.update(src.relative_to(ROOT).as_posix().encode() + src.read_bytes())
    return h.hexdigest()[:20]


def cache_path(path: Path, mode: str = "fast") -> Path:
    """Where the executed `path` is cached (`tests/test_notebooks.py` writes there too)."""
    return CACHE / f"{path.stem}-{_key(path.read_bytes(), mode)}.ipynb"


def store(path: Path, nb, mode: str = "fast") -> None:
    """Cache the executed notebook `nb` of `path`, atomically."""
    import nbformat

    target = cache_path(path, mode)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, target)


def _execute(path: Path):
    import nbclient
    import nbformat

    mode = os.environ.get("BPSN_DOCS_NOTEBOOKS", "fast")
    raw = path.read_bytes()
    nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
    if mode == "off":
        return nb
    cached = cache_path(path, mode)
    if cached.is_file():
        return nbformat.read(cached, as_version=4)
    # the inline backend (not Agg, as in the tests): figures become image/png outputs
    env = {
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "BPSN_EXAMPLES_FAST": "1" if mode == "fast" else "0",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nbclient.NotebookClient(
            nb,
            kernel_name="python3",
            timeout=TIMEOUT_S,
            resources={"metadata": {"path": str(ROOT)}},
            shutdown_kernel="immediate",
        ).execute()
    except Exception as exc:  # a cell error or timeout: the page shows what ran
        log.warning("examples/%s failed at build time: %s", path.name, ANSI.sub("", str(exc)))
        return nb
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    store(path, nb, mode)
    return nb


def _fence(text: str, lang: str = "text") -> str:
    text = ANSI.sub("", text).rstrip("\n")
    return f"```{lang}\n{text}\n```\n" if text.strip() else ""


def _output(out, stem: str, figures: list[bytes]) -> str:
    kind = out.get("output_type")
    if kind == "stream":
        return _fence(out.get("text", ""))
    if kind == "error":
        return _fence("\n".join(out.get("traceback", [])))
    data = out.get("data", {})
    if "image/png" in data:
        figures.append(base64.b64decode(data["image/png"]))
        n = len(figures) - 1
        return f"![Figure {n + 1} of notebook {stem}]({stem}/fig{n}.png)\n"
    if "text/markdown" in data:
        return data["text/markdown"] + "\n"
    return _fence(data.get("text/plain", ""))


def _markdown(nb, stem: str) -> tuple[str, list[bytes]]:
    figures: list[bytes] = []
    cells = list(nb.cells)
    parts = []
    if cells and cells[0].cell_type == "markdown" and cells[0].source.startswith("# "):
        parts.append(cells.pop(0).source + "\n")
    full = nb.metadata.get("bpsn_ext", {}).get("full_run", False)  # ignores the fast mode
    note = " (`BPSN_EXAMPLES_FAST=1`: tiny sizes, few epochs)" if _fast() and not full else ""
    parts.append(
        f"*`examples/{stem}.ipynb`, executed when this site was built{note}. "
        f"[Download the notebook]({stem}.ipynb) (stored without outputs).*\n"
    )
    for cell in cells:
        if cell.cell_type == "markdown":
            parts.append(cell.source + "\n")
        elif cell.cell_type == "code" and cell.source.strip():
            parts.append(_fence(cell.source, "python"))
            parts.extend(_output(o, stem, figures) for o in cell.get("outputs", []))
    return "\n".join(p for p in parts if p), figures


def _fast() -> bool:
    return os.environ.get("BPSN_DOCS_NOTEBOOKS", "fast") == "fast"


def on_files(files, config):
    from mkdocs.structure.files import File

    _pages.clear()
    for path in sorted((ROOT / "examples").glob("*.ipynb")):
        stem = path.stem
        text, figures = _markdown(_execute(path), stem)
        files.append(File.generated(config, f"examples/{stem}.md", content=text))
        files.append(File.generated(config, f"examples/{stem}.ipynb", content=path.read_bytes()))
        for i, png in enumerate(figures):
            files.append(File.generated(config, f"examples/{stem}/fig{i}.png", content=png))
        title = next((ln[2:].strip() for ln in text.splitlines() if ln.startswith("# ")), stem)
        _pages[stem] = {"title": title, "thumb": bool(figures)}
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    def render(match: re.Match) -> str:
        stem = match.group(1)
        if stem not in _pages:
            log.warning("%s: no notebook examples/%s.ipynb", page.file.src_path, stem)
            return stem
        link = f"[`{stem}`](examples/{stem}.md) ([download](examples/{stem}.ipynb))"
        if _pages[stem]["thumb"]:
            link += (
                f"<br>[![First figure of {stem}](examples/{stem}/fig0.png)"
                f"{{ .nb-thumb }}](examples/{stem}.md)"
            )
        return link

    return MARKER.sub(render, markdown)
