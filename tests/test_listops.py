"""ListOps generator: grammar, labels against an independent evaluator, lengths, TSV round trip."""

import statistics

import pytest

from bpsn_ext.data.listops import OPERATORS, evaluate, generate, read_tsv, write_tsv


def reference_value(tokens):
    """An independent recursive-descent evaluator (not the library's stack machine)."""
    pos = 0

    def parse():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok.isdigit():
            return int(tok)
        args = []
        while tokens[pos] != "]":
            args.append(parse())
        pos += 1
        if tok == "[MIN":
            return min(args)
        if tok == "[MAX":
            return max(args)
        if tok == "[SM":
            return sum(args) % 10
        return int(statistics.median(args))

    value = parse()
    assert pos == len(tokens)
    return value


def test_labels_equal_an_independent_evaluator_and_lengths_hold():
    samples = generate(300, seed=1, min_length=20, max_length=200)
    assert len(samples) == 300 and len({s.source for s in samples}) == 300
    for s in samples:
        assert 20 < len(s.tokens) < 200
        assert s.label == reference_value(list(s.tokens)) == evaluate(s.tokens)
        assert s.tokens[0] in OPERATORS  # long enough samples are operator trees
    labels = [s.label for s in samples]
    assert len(set(labels)) >= 8  # a real 10-class task, not a constant


def test_seeded_and_lra_defaults_produce_long_sequences():
    a = generate(20, seed=7, min_length=30, max_length=100)
    assert a == generate(20, seed=7, min_length=30, max_length=100)
    assert a != generate(20, seed=8, min_length=30, max_length=100)
    lra = generate(3, seed=0)  # LRA: 500 < length < 2000
    assert all(500 < len(s.tokens) < 2000 for s in lra)


def test_evaluator_semantics_and_errors():
    assert evaluate("[MED 1 2 3 4 ]") == 2  # int(2.5)
    assert evaluate("( ( [SM 9 8 ) ] )") == 7  # LRA files carry parentheses
    assert evaluate("[MAX 2 [MIN 5 3 ] 1 ]") == 3
    with pytest.raises(ValueError, match="never closed"):
        evaluate("[MAX 1 2")
    with pytest.raises(ValueError, match="unknown ListOps token 'x'"):
        evaluate("[MAX 1 x ]")


def test_tsv_round_trip_and_malformed_rows(tmp_path):
    samples = generate(25, seed=3, min_length=10, max_length=60)
    path = tmp_path / "listops-1000" / "basic_train.tsv"
    write_tsv(samples, path)
    assert list(read_tsv(path)) == samples
    bad = tmp_path / "bad.tsv"
    bad.write_text("Source\tTarget\n[MAX 1 2 ]\t2\n[MIN 3 4 ]\tseven\n")
    with pytest.raises(ValueError, match=r"bad.tsv:3: expected"):
        list(read_tsv(bad))
    with pytest.raises(ValueError, match="need 0 <= min_length < max_length - 1"):
        generate(1, min_length=10, max_length=5)
