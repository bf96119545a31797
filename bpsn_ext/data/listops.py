"""ListOps (Nangia & Bowman 2018, as used by the Long Range Arena), generated locally.

Re-implements the LRA generation procedure (no code copied):
* a random tree: below ``max_depth`` a node is a digit 0-9 with probability 0.75, otherwise an
  operator with 2..``max_args`` children; at ``max_depth`` it is always a digit;
* operators ``[MIN``, ``[MAX``, ``[MED`` (the integer part of the median) and ``[SM`` (sum
  modulo 10), each closed by ``]``;
* only trees whose token count lies strictly between ``min_length`` and ``max_length`` are kept
  (LRA: 500 and 2000); the label is the value of the tree (10 classes).

Samples are written in the ``lra_release/listops-1000`` TSV layout (header ``Source\tTarget``,
space-separated tokens).  The LRA files also wrap sub-trees in parentheses; readers drop them
(as S4 does), so both forms read the same.
"""

from __future__ import annotations

import csv
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

from bpsn_ext.data._files import lift_csv_field_limit, not_utf8
from bpsn_ext.util.errors import DataSourceError
from bpsn_ext.util.files import atomic_open

__all__ = [
    "OPERATORS",
    "VOCAB",
    "MAX_EXPECTED_TOKENS",
    "expected_tokens",
    "check_depth",
    "generate",
    "evaluate",
    "write_tsv",
    "read_tsv",
    "ListOpsSample",
]

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
VOCAB = ("<pad>", *[str(d) for d in range(10)], *OPERATORS, "]")
LEAF_PROBABILITY = 0.75


@dataclass(frozen=True)
class ListOpsSample:
    tokens: tuple[str, ...]
    label: int

    @property
    def source(self) -> str:
        return " ".join(self.tokens)


def _apply(op: str, args: list[int]) -> int:
    if op == "[MIN":
        return min(args)
    if op == "[MAX":
        return max(args)
    if op == "[MED":
        ordered = sorted(args)
        mid = len(ordered) // 2
        median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
        return int(median)
    return sum(args) % 10


MAX_EXPECTED_TOKENS = 1000
"""`generate` refuses settings whose trees average more tokens than this (`expected_tokens`):
the tree size grows exponentially with ``max_depth`` when an operator has more than four
children on average, and so does the time to draw trees of a given length."""


def expected_tokens(max_depth: int, max_args: int) -> float:
    """The mean token count of a random tree (before the length filter).

    Example:
        >>> round(expected_tokens(10, 10))
        132
    """
    mean_children = (2 + max_args) / 2
    size = 1.0  # a node at max_depth is a digit
    for _ in range(min(max_depth - 1, 10_000)):
        grown = LEAF_PROBABILITY + (1 - LEAF_PROBABILITY) * (2 + mean_children * size)
        if grown == size or grown > 1e300:  # converged, or beyond any bound: stop early
            return grown
        size = grown
    return size if max_depth <= 10_001 else math.inf  # still growing after 10^4 levels


def check_depth(max_depth: int, max_args: int) -> None:
    """Refuse a ``max_depth`` / ``max_args`` whose trees are too large to draw in time."""
    size = expected_tokens(max_depth, max_args)
    if size <= MAX_EXPECTED_TOKENS:
        return
    deepest = 1
    while expected_tokens(deepest + 1, max_args) <= MAX_EXPECTED_TOKENS:
        deepest += 1
    raise DataSourceError(
        f"{{max_depth:{max_depth}}} with {{max_args:{max_args}}} draws trees of {size:.3g} "
        f"tokens on average (at most {MAX_EXPECTED_TOKENS} can be drawn in reasonable time); "
        f"choose {{max_depth:{deepest}}} or less, or fewer max_args"
    )


def _tree(rng: random.Random, max_depth: int, max_args: int) -> tuple[list[str], int]:
    """Tokens and value of a random tree, drawn depth first without recursion (the order of
    draws is that of the recursive definition: node, operator, arity, children)."""
    tokens: list[str] = []
    stack: list[list] = []  # open operators: [op, children still to draw, values, depth]
    depth = 1
    while True:
        if depth >= max_depth or rng.random() < LEAF_PROBABILITY:
            value = rng.randrange(10)
            tokens.append(str(value))
            while stack:  # close every operator whose last child this was
                frame = stack[-1]
                frame[2].append(value)
                frame[1] -= 1
                if frame[1]:
                    break
                stack.pop()
                tokens.append("]")
                value = _apply(frame[0], frame[2])
            if not stack:
                return tokens, value
            depth = stack[-1][3] + 1
        else:
            op = rng.choice(OPERATORS)
            tokens.append(op)
            stack.append([op, rng.randint(2, max_args), [], depth])
            depth += 1


def generate(
    n: int,
    *,
    seed: int = 0,
    min_length: int = 500,
    max_length: int = 2000,
    max_depth: int = 10,
    max_args: int = 10,
    max_tries: int = 10_000_000,
) -> list[ListOpsSample]:
    """``n`` distinct samples with ``min_length < len(tokens) < max_length`` (LRA defaults).

    Short lengths (e.g. 20..200) make a CPU-sized task with the same grammar.
    """
    if not 0 <= min_length < max_length - 1:
        raise ValueError(
            f"need 0 <= min_length < max_length - 1, got min_length={min_length}, "
            f"max_length={max_length}"
        )
    if n < 0 or max_depth < 1 or max_args < 2:
        raise ValueError(
            f"need n >= 0, max_depth >= 1, max_args >= 2; got {n}, {max_depth}, {max_args}"
        )
    check_depth(max_depth, max_args)
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[ListOpsSample] = []
    for _ in range(max_tries):
        if len(out) == n:
            return out
        tokens, value = _tree(rng, max_depth, max_args)
        if not min_length < len(tokens) < max_length:
            continue
        source = " ".join(tokens)
        if source in seen:
            continue
        seen.add(source)
        out.append(ListOpsSample(tuple(tokens), value))
    raise RuntimeError(
        f"found only {len(out)} of {n} samples with {min_length} < length < {max_length} in "
        f"{max_tries} tries; widen the length range or raise max_depth/max_args"
    )


def evaluate(tokens: list[str] | tuple[str, ...] | str) -> int:
    """Value of a ListOps expression (parentheses are ignored), by a stack machine."""
    if isinstance(tokens, str):
        tokens = tokens.split()
    stack: list[list] = []
    result = None
    for i, tok in enumerate(tokens):
        if tok in ("(", ")"):
            continue
        if tok in OPERATORS:
            stack.append([tok])
        elif tok == "]":
            if not stack or len(stack[-1]) < 2:
                raise ValueError(f"unbalanced or empty operator closed at token {i}")
            op, *args = stack.pop()
            value = _apply(op, args)
            if stack:
                stack[-1].append(value)
            else:
                result = value
        elif tok.isdigit() and len(tok) == 1:
            if stack:
                stack[-1].append(int(tok))
            else:
                result = int(tok)
        else:
            raise ValueError(f"unknown ListOps token {tok!r} at position {i}")
    if stack or result is None:
        raise ValueError("incomplete ListOps expression (an operator was never closed)")
    return result


def write_tsv(samples: list[ListOpsSample], path: str | os.PathLike) -> None:
    """Write ``Source\\tTarget`` rows (the lra_release layout), atomically."""
    with atomic_open(path, newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(["Source", "Target"])
        for s in samples:
            writer.writerow([s.source, s.label])


def read_tsv(path: str | os.PathLike) -> Iterator[ListOpsSample]:
    """Rows of an LRA ListOps TSV (rows of any length); a malformed row (not UTF-8, wrong
    fields) raises ValueError naming file and line."""
    lift_csv_field_limit()
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        try:
            yield from _rows(reader, path)
        except UnicodeDecodeError as err:
            raise not_utf8(path, err) from err
        except csv.Error as err:
            raise ValueError(
                f"{path}:{reader.line_num}: {err}; expected 'expression<TAB>label' rows"
            ) from err


def _rows(reader, path) -> Iterator[ListOpsSample]:
    header = next(reader, None)
    if header != ["Source", "Target"]:
        raise ValueError(f"{path}: expected the header 'Source\\tTarget', got {header!r}")
    for line, row in enumerate(reader, start=2):
        if len(row) != 2 or not row[1].strip().isdigit() or not 0 <= int(row[1]) <= 9:
            raise ValueError(f"{path}:{line}: expected 'expression<TAB>label 0-9', got {row!r}")
        tokens = tuple(t for t in row[0].split() if t not in ("(", ")"))
        yield ListOpsSample(tokens, int(row[1]))
