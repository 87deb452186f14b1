"""New inputs for the teacher to label (``teacher.augment_copies``), made from the training texts alone.

A student distilled on the training split alone sees the teacher's view of the very examples it also
has labels for. More in-domain inputs, labelled by the teacher, carry more of what the teacher knows
(TinyBERT's task distillation rests on this). Nothing here reads validation or test text.

- A single text becomes contiguous spans of its words, at least two words long and shorter than the
  text: SST-2's phrases are spans of treebank sentences at the parser's boundaries, these are spans at
  any boundary. A text of fewer than three words yields none.
- A pair keeps both texts with each word dropped at ``PAIR_WORD_DROPOUT`` (at least one word kept per
  text), as a span of one text would lose what the pair compares.

The same texts and seed give the same inputs in the same order.
"""

from __future__ import annotations

import numpy as np

PAIR_WORD_DROPOUT = 0.1
MIN_SPAN_WORDS = 2


def augment(texts: list[str], pairs: list[str] | None, copies: int, seed: int) -> tuple[list[str], list[str] | None]:
    """``copies`` new inputs per training example (fewer for texts too short to cut), in example order."""
    rng = np.random.default_rng(seed)
    if pairs is None:
        return [span for text in texts for span in spans(text.split(), copies, rng)], None
    new_texts, new_pairs = [], []
    for text, pair in zip(texts, pairs):
        for _ in range(copies):
            new_texts.append(drop_words(text.split(), rng))
            new_pairs.append(drop_words(pair.split(), rng))
    return new_texts, new_pairs


def spans(words: list[str], copies: int, rng: np.random.Generator) -> list[str]:
    """Up to ``copies`` contiguous spans of ``words`` from ``MIN_SPAN_WORDS`` words to one fewer than all."""
    if len(words) <= MIN_SPAN_WORDS:
        return []
    lengths = rng.integers(MIN_SPAN_WORDS, len(words), size=copies)  # the upper bound is excluded
    starts = (rng.random(copies) * (len(words) - lengths + 1)).astype(int)
    return [" ".join(words[start : start + length]) for start, length in zip(starts, lengths)]


def drop_words(words: list[str], rng: np.random.Generator) -> str:
    keep = rng.random(len(words)) >= PAIR_WORD_DROPOUT
    if not keep.any():
        keep[rng.integers(len(words))] = True
    return " ".join(word for word, kept in zip(words, keep) if kept)
