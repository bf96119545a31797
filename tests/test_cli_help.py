"""Every option of every ``bpsn-ext`` subcommand says what it does (``--help`` is the manual)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from bpsn_ext.cli import build_parser


def _walk(parser: argparse.ArgumentParser, path: str):
    """Yield ``(command path, action)`` for every action of ``parser`` and its sub-parsers."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _walk(child, f"{path} {name}")
        else:
            yield path, action


def test_every_option_has_help_text():
    actions = list(_walk(build_parser(), "bpsn-ext"))
    assert len({p for p, _ in actions}) > 15  # demo, bench *, train *, evaluate *, generate *...
    missing = [
        f"{path} {'/'.join(a.option_strings) or a.dest}"
        for path, a in actions
        if a.help != argparse.SUPPRESS and not (a.help or "").strip()
    ]
    assert not missing, "options without help text:\n" + "\n".join(missing)


def test_the_walk_sees_an_option_without_help():
    parser = argparse.ArgumentParser(prog="p")
    child = parser.add_subparsers().add_parser("c")
    child.add_argument("--silent")
    assert [(p, a.dest) for p, a in _walk(parser, "p") if not a.help] == [("p c", "silent")]


def test_demo_names_a_missing_package_in_one_line(monkeypatch: pytest.MonkeyPatch):
    from bpsn_ext.cli import main

    monkeypatch.setitem(sys.modules, "sklearn", None)  # `import sklearn` raises ImportError
    with pytest.raises(SystemExit) as info:
        main(["demo", "--parts", "single_step", "--epochs", "1", "--no-progress"])
    message = str(info.value.code)
    assert "scikit-learn" in message and "\n" not in message, message
    assert info.value.__suppress_context__  # no chained traceback behind the line


def test_train_lra_says_where_results_go(tmp_path: Path, capsys: pytest.CaptureFixture):
    from bpsn_ext.cli import main

    tiny = ["--task", "digits", "--d-model", "8", "--n-layers", "1", "--d-state", "4"]
    tiny += ["--epochs", "1", "--limit-train", "32", "--energy-samples", "0", "--no-progress"]
    assert main(["train", "lra", *tiny, "--threads", "1"]) == 0
    assert "no --out given: this run writes nothing" in capsys.readouterr().out
    assert main(["train", "lra", *tiny, "--out", str(tmp_path / "run")]) == 0
    assert f"results go to {tmp_path / 'run' / 'last.pt'}" in capsys.readouterr().out
    assert main(["evaluate", "lra", "--checkpoint-dir", str(tmp_path / "run")]) == 0
    assert f"metrics: {tmp_path / 'run' / 'eval_test.json'}" in capsys.readouterr().out
