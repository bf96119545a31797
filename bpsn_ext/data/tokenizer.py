"""WordPiece tokenisation for GLUE, offline (HF ``tokenizers``; nothing is downloaded).

* `WordPieceTokenizer.from_vocab`: a local BERT ``vocab.txt`` (or a directory holding
  one, e.g. a ``save_pretrained`` BERT checkpoint);
* `WordPieceTokenizer.train`: a vocabulary learned from the training texts
  (deterministic: characters + frequent words; or HF's WordPiece trainer);
* `WordPieceTokenizer.load` / `save`: the ``tokenizers`` JSON file.

Encoding follows BERT: ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]``, segment ids 0 / 1,
truncation of the longer text first to ``max_length``.

Long texts: only a prefix of each text is tokenised, so memory follows ``max_length``, not the
longest line.  ``encode`` tokenises growing prefixes (whole words only) until it has the tokens
it needs, which gives exactly the tokens of the whole text, up to ``MAX_CHARS_PER_TOKEN`` (64)
characters per needed token; beyond that (a text whose first tokens are spread over more
characters: long runs of spaces or control characters) the prefix of that length is used.
``train(..., max_chars=N)`` learns the vocabulary from the first N characters of each text.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable

__all__ = ["WordPieceTokenizer", "SPECIAL_TOKENS"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
MAX_CHARS_PER_TOKEN = 64  # the most characters tokenised per needed token


def _require_tokenizers():
    try:
        import tokenizers
    except ImportError as exc:  # pragma: no cover
        raise ImportError(
            "GLUE tokenisation needs the 'tokenizers' package (pip install tokenizers)"
        ) from exc
    return tokenizers


class WordPieceTokenizer:
    """A BERT-style WordPiece tokenizer around a ``tokenizers.Tokenizer``."""

    def __init__(self, tokenizer, lowercase: bool = True) -> None:
        self.tokenizer = tokenizer
        self.lowercase = lowercase
        for tok in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
            if tokenizer.token_to_id(tok) is None:
                raise ValueError(f"the vocabulary lacks the special token {tok}")
        self.pad_id = tokenizer.token_to_id("[PAD]")
        self.cls_id = tokenizer.token_to_id("[CLS]")
        self.sep_id = tokenizer.token_to_id("[SEP]")

    # -- construction -------------------------------------------------------------------
    @staticmethod
    def _pipeline(model, lowercase: bool):
        tk = _require_tokenizers()
        tok = tk.Tokenizer(model)
        tok.normalizer = tk.normalizers.BertNormalizer(lowercase=lowercase)
        tok.pre_tokenizer = tk.pre_tokenizers.BertPreTokenizer()
        tok.decoder = tk.decoders.WordPiece()
        return tok

    @classmethod
    def from_vocab(cls, path: str | os.PathLike, lowercase: bool = True) -> WordPieceTokenizer:
        """From a local ``vocab.txt`` (one token per line) or a directory containing one."""
        tk = _require_tokenizers()
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "vocab.txt")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"no WordPiece vocabulary at {os.path.abspath(path)!r} "
                "(expected vocab.txt, one token per line)"
            )
        model = tk.models.WordPiece.from_file(path, unk_token="[UNK]")
        return cls(cls._pipeline(model, lowercase), lowercase)

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8000,
        lowercase: bool = True,
        min_frequency: int = 1,
        algorithm: str = "words",
        max_chars: int | None = None,
    ) -> WordPieceTokenizer:
        """Learn a vocabulary of at most ``vocab_size`` tokens from ``texts``.

        ``algorithm="words"`` (default, deterministic): the special tokens, every character
        seen (as a word start and as a ``##`` continuation, most frequent first), then the
        most frequent whole words (ties in alphabetical order); unknown words fall back to
        characters.  ``"wordpiece"``: HF ``tokenizers``' ``WordPieceTrainer`` (sub-word
        pieces), whose tie-breaking differs between runs, so two processes can get different
        vocabularies: use it with one process, or save it and pass the file.
        ``max_chars``: learn from the first ``max_chars`` characters of each text only.
        """
        tk = _require_tokenizers()
        if max_chars is not None:
            texts = (t[:max_chars] for t in texts)
        if vocab_size < len(SPECIAL_TOKENS) + 1:
            raise ValueError(f"vocab_size must be > {len(SPECIAL_TOKENS)}, got {vocab_size}")
        if algorithm == "wordpiece":
            tok = cls._pipeline(tk.models.WordPiece(unk_token="[UNK]"), lowercase)
            trainer = tk.trainers.WordPieceTrainer(
                vocab_size=vocab_size,
                min_frequency=min_frequency,
                special_tokens=list(SPECIAL_TOKENS),
                show_progress=False,
            )
            tok.train_from_iterator(texts, trainer=trainer)
            return cls(tok, lowercase)
        if algorithm != "words":
            raise ValueError(f"algorithm must be 'words' or 'wordpiece', got {algorithm!r}")
        probe = cls._pipeline(tk.models.WordPiece({"[UNK]": 0}, unk_token="[UNK]"), lowercase)
        words: Counter[str] = Counter()
        for text in texts:
            norm = probe.normalizer.normalize_str(text)
            words.update(w for w, _ in probe.pre_tokenizer.pre_tokenize_str(norm))
        chars: Counter[str] = Counter()
        for w, n in words.items():
            chars[w[0]] += n
            for c in w[1:]:
                chars["##" + c] += n
        budget = vocab_size - len(SPECIAL_TOKENS)
        pieces = sorted(chars, key=lambda p: (-chars[p], p))[:budget]
        taken = set(pieces)
        whole = [
            w
            for w in sorted(words, key=lambda w: (-words[w], w))
            if words[w] >= min_frequency and w not in taken
        ]
        tokens = [*SPECIAL_TOKENS, *pieces, *whole[: budget - len(pieces)]]
        model = tk.models.WordPiece({t: i for i, t in enumerate(tokens)}, unk_token="[UNK]")
        return cls(cls._pipeline(model, lowercase), lowercase)

    @classmethod
    def load(cls, path: str | os.PathLike) -> WordPieceTokenizer:
        """From a file written by `save`; a truncated, damaged or oversized file raises
        ValueError naming it."""
        from bpsn_ext.util.files import read_json

        tk = _require_tokenizers()
        path = os.fspath(path)
        read_json(path)  # names the file of a truncated, deep or oversized JSON
        try:
            tok = tk.Tokenizer.from_file(path)
        except Exception as err:  # tokenizers raises its own Exception type
            raise ValueError(
                f"{path}: not a tokenizer file written by this program ({err})"
            ) from None
        lowercase = bool(getattr(tok.normalizer, "lowercase", True))
        return cls(tok, lowercase)

    def save(self, path: str | os.PathLike) -> None:
        """Write the ``tokenizers`` JSON (atomically)."""
        from bpsn_ext.util.files import atomic_open

        with atomic_open(path) as f:
            f.write(self.tokenizer.to_str())

    # -- use ----------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def tokenize(self, text: str) -> list[str]:
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def encode(
        self, text_a: str, text_b: str | None = None, max_length: int = 128
    ) -> tuple[list[int], list[int]]:
        """``(ids, segment_ids)`` of ``[CLS] a [SEP] (b [SEP])``, at most ``max_length`` long."""
        if max_length < (5 if text_b is not None else 3):
            raise ValueError(f"max_length={max_length} leaves no room for text")
        budget = max_length - (3 if text_b is not None else 2)
        # neither text can keep more than `budget` tokens: tokenise only that many of each
        a = self._head(text_a, budget)
        b = [] if text_b is None else self._head(text_b, budget)
        while len(a) + len(b) > budget:  # BERT's rule: shorten the longer text (b on a tie)
            if len(a) > len(b):
                a.pop()
            else:
                b.pop()
        ids = [self.cls_id, *a, self.sep_id]
        segments = [0] * len(ids)
        if text_b is not None:
            ids += [*b, self.sep_id]
            segments += [1] * (len(b) + 1)
        return ids, segments

    def _head(self, text: str, n: int) -> list[int]:
        """The ids of the first ``n`` tokens of ``text`` (fewer if it has fewer), tokenising
        a prefix of at most ``MAX_CHARS_PER_TOKEN * n`` characters."""
        limit = MAX_CHARS_PER_TOKEN * n
        size = min(8 * n + 256, limit)
        while size < len(text):
            enc = self.tokenizer.encode(text[:size], add_special_tokens=False)
            if size >= limit:
                return enc.ids[:n]
            last = enc.word_ids[-1] if enc.word_ids else None  # may be cut: not counted
            ids = [i for i, w in zip(enc.ids, enc.word_ids) if w != last]
            if len(ids) >= n:
                return ids[:n]
            size = min(4 * size, limit)
        return self.tokenizer.encode(text, add_special_tokens=False).ids[:n]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)
