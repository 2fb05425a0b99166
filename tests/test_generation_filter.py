"""The filter of generated transfer text: word 3-gram shingles, near-duplicate detection (Jaccard) and
``filter_generated`` (length bounds, exact and near duplicates, overlap with the held-out splits:
validation and evaluation)."""

from __future__ import annotations

from types import SimpleNamespace

import datasets
import numpy as np
import pytest

from xdistill.adapters.sequence_classification import SequenceClassificationAdapter
from xdistill.config import GenerationArguments
from xdistill.transfer.filters import filter_generated, near_duplicate_mask, shingles
from xdistill.transfer.generated import held_out_index

ARGS = dict(augment="generate", transfer="unlabeled,generated", min_words=5, max_words=50, near_duplicate=0.8)

# 13 words -> 11 word 3-grams
A = "the quick brown fox jumps over the lazy dog near the river bank"
# the last word changed: 10 of 11 shingles shared, union 12 -> Jaccard 10/12 = 0.83
A_EDIT = "the quick brown fox jumps over the lazy dog near the river side"
EVAL = "a quiet film about two sisters who move to the coast and open a small bakery"
EVAL_EDIT = "a quiet film about two sisters who move to the coast and open a small cafe"
UNRELATED = "space pirates steal a moon and the galaxy council holds an emergency vote"


def jaccard(a: str, b: str) -> float:
    x, y = shingles(a), shingles(b)
    return len(x & y) / len(x | y)


# --------------------------------------------------------------------------- shingles


def test_shingles():
    assert shingles("A b C d") == {"a b c", "b c d"}
    assert shingles("one two three") == {"one two three"}
    assert shingles("Two  words") == {"two words"}  # shorter than n: the whole text
    assert shingles("x") == {"x"}
    assert shingles("a b a b a") == {"a b a", "b a b"}
    assert shingles("a b c d e", n=2) == {"a b", "b c", "c d", "d e"}
    assert shingles("") == {""}
    assert len(shingles(A)) == 11


def test_fixture_similarities():
    assert jaccard(A, A_EDIT) == pytest.approx(10 / 12)
    assert jaccard(EVAL, EVAL_EDIT) >= 0.8
    assert jaccard(A, UNRELATED) < 0.1


# --------------------------------------------------------------------------- near_duplicate_mask


def test_near_duplicate_mask_finds_a_lightly_edited_copy():
    mask = near_duplicate_mask([A_EDIT, UNRELATED, A.upper(), "  ".join(A.split())], [EVAL, A], 0.8)
    assert mask.dtype == bool
    assert mask.tolist() == [True, False, True, True]


def test_near_duplicate_mask_threshold():
    j = jaccard(A, A_EDIT)
    assert near_duplicate_mask([A_EDIT], [A], j - 1e-6).tolist() == [True]
    assert near_duplicate_mask([A_EDIT], [A], j + 1e-6).tolist() == [False]
    assert near_duplicate_mask([A_EDIT], [A], 1.0).tolist() == [False]
    assert near_duplicate_mask([A], [A], 1.0).tolist() == [True]


def test_near_duplicate_mask_empty_inputs_and_chunks():
    assert near_duplicate_mask([], [A], 0.8).shape == (0,)
    assert near_duplicate_mask([A, UNRELATED], [], 0.8).tolist() == [False, False]
    cands = [UNRELATED, A_EDIT, EVAL, "completely different words in this one sentence here", EVAL_EDIT]
    full = near_duplicate_mask(cands, [A, EVAL], 0.8)
    assert full.tolist() == [False, True, True, False, True]
    assert near_duplicate_mask(cands, [A, EVAL], 0.8, chunk=2).tolist() == full.tolist()


def test_near_duplicate_mask_short_texts():
    assert near_duplicate_mask(["great movie"], ["Great movie"], 0.8).tolist() == [True]


# --------------------------------------------------------------------------- filter_generated


def test_filter_generated_counts_each_removal():
    args = GenerationArguments(**ARGS)
    long_text = " ".join(f"w{i}" for i in range(60))
    texts = [
        "too short",                  # length (2 words)
        A,                            # kept
        long_text,                    # length (60 words)
        "The  quick brown FOX jumps over the lazy dog near the river bank",  # exact duplicate of A
        A_EDIT,                       # near duplicate of A
        EVAL_EDIT,                    # near duplicate of an eval text
        UNRELATED,                    # kept
        UNRELATED + "\n",             # exact duplicate (whitespace)
        EVAL,                         # an eval text itself
        "one two three four",         # length (4 < 5)
    ]
    kept, counts = filter_generated(texts, [EVAL, "something else entirely in the evaluation split"], args)
    assert kept == [A, UNRELATED]
    assert counts == {"removed_length": 3, "removed_script": 0, "removed_duplicate": 2, "removed_near_duplicate": 1,
                      "removed_held_out_overlap": 2}
    assert len(kept) + sum(counts.values()) == len(texts)


def test_filter_generated_length_bounds_are_inclusive():
    args = GenerationArguments(**ARGS)
    five = "alpha beta gamma delta epsilon"
    fifty = " ".join(f"v{i}" for i in range(50))
    kept, counts = filter_generated([five, fifty, fifty + " extra"], [], args)
    assert kept == [five, fifty]
    assert counts["removed_length"] == 1


def test_filter_generated_near_duplicates_compare_with_kept_texts_only():
    """A sliding window: B is near A (removed), C is near B but not near A (kept, since B was dropped)."""
    args = GenerationArguments(**ARGS)
    words = [f"t{i}" for i in range(36)]
    a, b, c = " ".join(words[0:30]), " ".join(words[3:33]), " ".join(words[6:36])
    # 28 shingles each; a/b and b/c share 25 (25/31 = 0.81), a/c share 22 (22/34 = 0.65)
    assert jaccard(a, b) == pytest.approx(25 / 31) and jaccard(b, c) == pytest.approx(25 / 31)
    assert jaccard(a, c) == pytest.approx(22 / 34)
    kept, counts = filter_generated([a, b, c], [], args)
    assert kept == [a, c]
    assert counts["removed_near_duplicate"] == 1


def test_filter_generated_threshold_from_args():
    strict = GenerationArguments(**{**ARGS, "near_duplicate": 0.9})
    kept, counts = filter_generated([A, A_EDIT], [], strict)
    assert kept == [A, A_EDIT] and counts["removed_near_duplicate"] == 0
    kept, counts = filter_generated([A, A_EDIT], [A_EDIT.upper()], strict)
    assert kept == [A] and counts["removed_held_out_overlap"] == 1


def test_filter_generated_empty():
    kept, counts = filter_generated([], [EVAL], GenerationArguments(**ARGS))
    assert kept == [] and not any(counts.values())
    assert isinstance(near_duplicate_mask([A], [EVAL], 0.8), np.ndarray)


def test_held_out_index_holds_validation_and_evaluation_text_of_every_group():
    """Generated text is filtered against the validation split (model selection) as well as the
    evaluation split, in every group: a near copy of either is removed and counted."""
    adapter = SequenceClassificationAdapter.__new__(SequenceClassificationAdapter)
    val = "two old friends walk across the country to return a stolen violin to its maker"
    split = lambda *texts: datasets.Dataset.from_dict({"text": list(texts)})  # noqa: E731
    groups = {"a": SimpleNamespace(validation=split(val), evaluation=split(EVAL), labeled=split(A)),
              "b": SimpleNamespace(validation=split(), evaluation=split(), labeled=split())}
    args = GenerationArguments(**ARGS)
    ctx = SimpleNamespace(adapter=adapter, generation=args, data=SimpleNamespace(groups=groups))
    index = held_out_index(ctx)
    assert index.mask([val.replace("maker", "owner"), EVAL_EDIT, A, UNRELATED]).tolist() == [True, True, False, False]
    kept, counts = filter_generated([val, EVAL, UNRELATED], index, args)
    assert kept == [UNRELATED] and counts["removed_held_out_overlap"] == 2
