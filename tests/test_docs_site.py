"""``mkdocs build --strict`` of the documentation site (mkdocs.yml, docs/), as CI runs it.

Strict mode turns every warning into a failure: a missing page in the nav, a broken link or
``#anchor``, a griffe/mkdocstrings docstring problem, a ``bpsn-ext`` subcommand named on the CLI
page that the parser no longer has. One environment is enough (griffe reads the sources
statically; the CLI help is the same), so it runs where SpikingJelly 2.0.0 is installed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")
pytest.importorskip("material")


def _primary_env() -> bool:
    try:
        return version("spikingjelly").startswith("2.")
    except PackageNotFoundError:
        return True


pytestmark = pytest.mark.skipif(
    not _primary_env(), reason="the site is built in the SpikingJelly 2.0.0 environment only"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1", BPSN_EXT_CACHE=str(out.parent / "kcache"))
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _page(site: Path, name: str) -> str:
    path = site / name / "index.html"
    assert path.is_file(), f"{name} was not built"
    return path.read_text(encoding="utf-8")


def test_api_reference_is_generated_from_docstrings(site: Path):
    page = _page(site, "api/bpsn_ext")
    assert 'id="bpsn_ext.BPSN"' in page
    assert "Bidirectional parallel spiking neuron" in page  # BPSN's docstring
    assert 'id="bpsn_ext.surrogate.S2NN"' in page
    assert 'id="bpsn_ext.spikingjelly.BPSNNode"' in _page(site, "api/spikingjelly")
    assert 'id="bpsn_ext.snntorch.SingleStepLeaky"' in _page(site, "api/snntorch")
    assert 'id="bpsn_ext.energy.estimate.estimate"' in _page(site, "api/energy")


def test_cli_page_shows_the_live_help(site: Path):
    page = _page(site, "cli")
    assert "bpsn-ext-help" not in page  # every marker was replaced by the hook
    for words in (
        "demo",
        "bench single-step",
        "bench bpsn",
        "bench ssm",
        "bench gpu",
        "train lra",
        "evaluate glue",
        "generate listops",
        "pretrain",
        "generate wordnet-glosses",
    ):
        assert f"usage: bpsn-ext {words}" in page, words


def test_guides_and_results_are_built(site: Path):
    for name in (
        "getting-started",
        "concepts",
        "guides/spikingjelly",
        "guides/snntorch",
        "examples",
        "reconstruction",
        "benchmarks",
        "results",
        "snn_bert",
    ):
        _page(site, name)
    assert "Single-step (S3NN) vs multi-step" in _page(site, "benchmarks")  # RESULTS.md included


# -- figures, notebooks, raw reST roles ------------------------------------------------------
IMG = re.compile(r"<img\b[^>]*?\bsrc=\"([^\"]+)\"")
ALT = re.compile(r"<img\b[^>]*?\balt=\"([^\"]*)\"")
# a reST role left in the text: ":class:`X`" raw, or its rendered forms ":class:<code>X</code>"
# and ":mod: bpsn_ext" (the backticks became a code span or vanished)
RAW_ROLE = re.compile(r":(?:class|mod|func|meth|attr|exc|obj|data):(?:`|<code>|\s*[A-Za-z_])")


def _html_pages(site: Path) -> list[Path]:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20, pages
    return pages


def test_every_image_resolves_and_has_alt_text(site: Path):
    broken, no_alt, seen = [], [], set()
    for page in _html_pages(site):
        html = page.read_text(encoding="utf-8")
        for src in IMG.findall(html):
            if src.startswith(("http://", "https://", "data:")):
                continue
            target = (page.parent / src.split("#")[0].split("?")[0]).resolve()
            seen.add(target)
            if not target.is_file():
                broken.append(f"{page.relative_to(site)}: {src}")
        no_alt += [f"{page.relative_to(site)}" for alt in ALT.findall(html) if not alt.strip()]
        if html.count("<img") != len(ALT.findall(html)):
            no_alt.append(f"{page.relative_to(site)} (an <img> without alt)")
    assert not broken, "broken images:\n" + "\n".join(broken)
    assert not no_alt, f"images without alt text: {no_alt}"
    assert "css/extra.css" in _page(site, "concepts")  # wide code blocks wrap (docs/css)
    from bpsn_ext.plots import FIGURES

    for name in FIGURES:  # every figure the script draws is committed and shown somewhere
        assert (REPO / "docs" / "img" / name).is_file(), f"{name}: run scripts/draw_figures.py"
        assert (site / "img" / name).resolve() in seen, f"docs/img/{name} is on no page"


def test_notebooks_are_pages_linked_from_the_examples_page(site: Path):
    page = _page(site, "examples")
    for nb in sorted((REPO / "examples").glob("*.ipynb")):
        built = _page(site, f"examples/{nb.stem}")
        assert f'href="{nb.stem}/"' in page, f"the Examples page does not link {nb.stem}"
        assert "<pre" in built and "<h1" in built, nb.stem
        assert f'href="../{nb.stem}.ipynb"' in built, f"{nb.stem}: no download link"
        assert f'href="{nb.stem}.ipynb"' in page, f"the Examples page does not offer {nb.stem}"
        assert (site / "examples" / f"{nb.stem}.ipynb").read_bytes() == nb.read_bytes()
    thumbs = re.findall(r'src="([^"]*/fig0\.png)"', page)
    assert thumbs, "no notebook thumbnail on the Examples page (did the notebooks execute?)"
    assert "03_bpsn_masks_firing" in " ".join(thumbs)  # the notebook with plots


def test_no_raw_rest_roles_in_guide_pages(site: Path):
    found = [
        f"{p.relative_to(site)}: {m.group(0)!r}"
        for p in _html_pages(site)
        if "api" not in p.relative_to(site).parts
        for m in RAW_ROLE.finditer(p.read_text(encoding="utf-8"))
    ]
    assert not found, "raw reST roles (use Markdown code spans / links):\n" + "\n".join(found)


def test_no_raw_rest_roles_in_api_pages(site: Path):
    found = [
        f"{p.relative_to(site)}: {m.group(0)!r}"
        for p in _html_pages(site)
        if "api" in p.relative_to(site).parts
        for m in RAW_ROLE.finditer(p.read_text(encoding="utf-8"))
    ]
    assert not found, "raw reST roles in docstrings:\n" + "\n".join(found[:40])


def test_api_reference_hides_internal_hooks(site: Path):
    api = "".join(_page(site, f"api/{n}") for n in ("layers", "bpsn_ext", "models", "energy"))
    for name in ("energy_ops", "extra_repr", "cuda_kernel_config", "uses_native_kernel"):
        assert f'.{name}"' not in api, name


# -- equations: KaTeX, served with the site, typeset in a headless browser -------------------
def _chromium() -> str | None:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def _rendered_dom(browser: str, page: Path, tmp: Path) -> str:
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp}",
            "--virtual-time-budget=10000",  # let the page's scripts run before the dump
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_equations_are_math_served_with_the_site(site: Path):
    page = _page(site, "concepts")
    assert page.count('class="arithmatex"') >= 4  # the equations are math, not code blocks
    for asset in ("katex.min.js", "katex.min.css", "contrib/auto-render.min.js"):
        assert (site / "assets" / "katex" / asset).is_file(), asset
        assert f"assets/katex/{asset}" in page, f"{asset} is not loaded by the page"
    assert "cdn." not in page.split("<body", 1)[0]  # nothing fetched from a CDN: works offline
    css = (site / "assets" / "katex" / "katex.min.css").read_text(encoding="utf-8")
    fonts = re.findall(r"url\((fonts/[^)]+\.woff2)\)", css)
    assert fonts and all((site / "assets" / "katex" / f).is_file() for f in fonts)


def test_equations_render_in_a_headless_browser(site: Path, tmp_path: Path):
    """Needs Chromium (Debian: ``apt-get install chromium``), which the project does not
    install: skipped where it is absent."""
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on PATH (apt-get install chromium)")
    dom = _rendered_dom(browser, site / "concepts" / "index.html", tmp_path / "profile")
    assert dom.count('class="katex-display"') >= 4, "KaTeX did not typeset the equations"
    assert 'class="katex-error"' not in dom, "KaTeX could not parse an equation"
    assert "\\begin{cases}" not in re.sub(r"<annotation.*?</annotation>", "", dom, flags=re.S)
