"""Draw the documentation figures into docs/img/ (deterministic, offline, ~100 dpi).

    python scripts/draw_figures.py [FOLDER]

The benchmark plots read the committed JSON in benchmarks/results/, so they stay true to it;
re-run this after `bpsn-ext bench bpsn|ssm --json ...` replaces those files.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bpsn_ext.plots import draw_all  # noqa: E402

if __name__ == "__main__":
    for path in draw_all(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "img", ROOT):
        print(path)
