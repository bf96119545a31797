"""Every Python block of README.md and docs/ runs as written, as a reader meets it.

* One fresh ``python`` process per page runs the page's ``python`` blocks in order, in one
  namespace (a page's later blocks may use what its earlier blocks defined), in an empty
  working directory (files the blocks write land there), importing this checkout.
* A block is skipped only when the line before its fence (blank lines aside) is a marker the
  reader sees in the source, with its reason:

  - ``<!-- skip: REASON -->`` always (a block that needs CUDA or downloaded data);
  - ``<!-- needs: DIST>=VERSION REASON -->`` where the installed ``DIST`` is older (the
    SpikingJelly 2.0-only Spikformer block).

  A skipped block's page says why in its prose as well; the test checks only the marker.
* PyPI's torchvision does not load beside a CPU build of torch; where ``import torchvision``
  fails, the process gets the tests' stub of the one name SpikingJelly's model zoo imports
  (``conftest.sj_zoo``), and nothing else.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(?P<indent> *)(?P<ticks>`{3,}|~{3,})(?P<info>[^\n`]*)$")
MARKER = re.compile(r"^<!--\s*(?P<kind>skip|needs):\s*(?P<text>.*?)\s*-->$")
NEEDS = re.compile(r"^(?P<dist>[A-Za-z0-9_.-]+)>=(?P<version>[0-9][0-9.]*)\s+(?P<reason>.+)$")
PAGE_TIMEOUT_S = 240


@dataclass(frozen=True)
class Block:
    """One fenced ``python`` block: where it starts, its code, and why it is skipped (if)."""

    page: Path
    line: int  # 1-based line of the opening fence
    code: str
    skip: str | None


def _name(page: Path) -> str:
    return page.relative_to(REPO).as_posix() if page.is_relative_to(REPO) else page.name


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text))


def _skip_reason(kind: str, text: str, where: str) -> str | None:
    if kind == "skip":
        assert text, f"{where}: a skip marker needs a reason"
        return text
    match = NEEDS.match(text)
    assert match, f"{where}: expected '<!-- needs: dist>=version reason -->', got {text!r}"
    try:
        have = version(match["dist"])
    except PackageNotFoundError:
        return f"{match['dist']} is not installed ({match['reason']})"
    if _version_tuple(have) < _version_tuple(match["version"]):
        return f"{match['dist']} {have} < {match['version']}: {match['reason']}"
    return None


def _marker_before(lines: list[str], index: int, where: str) -> str | None:
    i = index - 1
    while i >= 0 and not lines[i].strip():
        i -= 1
    match = MARKER.match(lines[i].strip()) if i >= 0 else None
    return _skip_reason(match["kind"], match["text"], where) if match else None


def extract_blocks(page: Path) -> list[Block]:
    """The page's fenced ``python`` blocks, in reading order (nested fences respected)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        ticks, indent = opening["ticks"], len(opening["indent"])
        end = i + 1
        while end < len(lines):
            closing = FENCE.match(lines[end])
            if closing and closing["ticks"].startswith(ticks) and not closing["info"].strip():
                break
            end += 1
        if opening["info"].strip().split(" ")[0] == "python":
            where = f"{_name(page)}:{i + 1}"
            code = "\n".join(line[indent:] for line in lines[i + 1 : end])
            blocks.append(Block(page, i + 1, code + "\n", _marker_before(lines, i, where)))
        i = end + 1
    return blocks


RUNNER = r"""
import importlib, json, sys, traceback, types
try:
    import torchvision  # noqa: F401
except Exception:  # PyPI's torchvision beside a CPU torch: the zoo's one import, stubbed
    sys.modules.pop("torchvision", None)
    utils = types.ModuleType("torchvision.models.utils")
    def _refuse(*a, **k):
        raise RuntimeError("the doc-block test never downloads weights")
    utils.load_state_dict_from_url = _refuse
    sys.modules["torchvision"] = types.ModuleType("torchvision")
    sys.modules["torchvision.models"] = types.ModuleType("torchvision.models")
    sys.modules["torchvision.models.utils"] = utils
import matplotlib
matplotlib.use("Agg")
namespace = {"__name__": "__main__"}
for where, code in json.load(sys.stdin):
    try:
        exec(compile(code, where, "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"DOC-BLOCK FAILED: {where}", file=sys.stderr)
        sys.exit(1)
print("DOC-BLOCKS OK")
"""


def _pages_with_blocks() -> list[Path]:
    return [p for p in PAGES if extract_blocks(p)]


def test_the_pages_have_blocks():
    names = {p.relative_to(REPO).as_posix() for p in _pages_with_blocks()}
    assert {"README.md", "docs/getting-started.md", "docs/guides/spikingjelly.md"} <= names


def test_extractor_keeps_nested_fences_and_markers(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text(
        "````markdown\n```python\nnot a block\n```\n````\n\n"
        "<!-- skip: needs CUDA -->\n```python\nx = 1\n```\n\n"
        "<!-- needs: torch>=999 from the future -->\n\n```python\ny = 2\n```\n"
        "  ```python\n  z = 3\n  ```\n",
        encoding="utf-8",
    )
    blocks = extract_blocks(page)
    assert [b.code for b in blocks] == ["x = 1\n", "y = 2\n", "z = 3\n"]
    assert blocks[0].skip == "needs CUDA"
    assert blocks[1].skip.startswith("torch ") and "from the future" in blocks[1].skip
    assert blocks[2].skip is None


@pytest.mark.parametrize("page", _pages_with_blocks(), ids=_name)
def test_page_blocks_run_as_written(page: Path, tmp_path: Path):
    blocks = extract_blocks(page)
    runnable = [(f"{_name(page)}:{b.line}", b.code) for b in blocks if not b.skip]
    if not runnable:
        pytest.skip("; ".join(sorted({b.skip for b in blocks})))
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
        BPSN_EXT_CACHE=str(tmp_path / "kcache"),
        OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
        MPLBACKEND="Agg",
    )
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", RUNNER],
        input=json.dumps(runnable),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT_S,
    )
    assert proc.returncode == 0 and "DOC-BLOCKS OK" in proc.stdout, (
        f"a Python block of {page.relative_to(REPO)} fails as written:\n{proc.stderr[-4000:]}"
    )
