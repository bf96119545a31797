"""mkdocs hook: replace ``<!-- bpsn-ext-help: WORDS -->`` by the live ``--help`` of that command.

The CLI page then always shows the flags of the installed ``bpsn-ext``; a command named on the
page that the parser no longer has is a build warning (an error under ``--strict``).
"""

from __future__ import annotations

import argparse
import logging
import os
import re

log = logging.getLogger("mkdocs.hooks.cli_help")
MARKER = re.compile(r"<!--\s*bpsn-ext-help:\s*([\w\- ]*?)\s*-->")


def _subcommand(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            raise KeyError(" ".join(words))
        parser = subs[0].choices[word]
    return parser


def on_page_markdown(markdown: str, page, config, files) -> str:
    if not MARKER.search(markdown):
        return markdown
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal width: keep pages stable
    from bpsn_ext.cli import build_parser

    parser = build_parser()

    def render(match: re.Match) -> str:
        words = match.group(1).split()
        try:
            text = _subcommand(parser, words).format_help()
        except KeyError:
            log.warning("%s: `bpsn-ext %s` does not exist", page.file.src_path, " ".join(words))
            return f"`bpsn-ext {' '.join(words)}`: not available in this version."
        return "```text\n" + text.rstrip() + "\n```"

    return MARKER.sub(render, markdown)
