"""Validation held out by text, not only by row: no other split repeats a validation text.

Real training files repeat texts: WikiANN's train splits hold list entries and short captions
many times (with the cpu preset's splits, 609 of the 4,220 validation sentences of the 47
languages also stood in the teacher's training data, 558 in the transfer set), and IMDB's train
split holds duplicate reviews. A validation row whose text the teacher or the student also
trained on measures memory, not generalisation, so early stopping and model selection would
favour over-fitting. Rows held out by index are therefore completed by text: every other row
with a validation row's text (the same words for NER, the same cleaned text for classification)
leaves the labeled budget, the teacher's data and the transfer set, and is counted.

The evaluation split is the data set's own and stays as it is; :func:`positions_in` finds its rows
whose text the train file holds (21% of the cpu preset's WikiANN evaluation sentences): the report
states how many, and scores every model on the other rows too (the ``unseen`` scores).
"""

from __future__ import annotations

from typing import Callable, Hashable, Sequence, TypeVar

T = TypeVar("T")


def without_texts(items: Sequence[T], key: Callable[[T], Hashable], held: set) -> tuple[list[T], int]:
    """``items`` (order kept) whose ``key`` is not in ``held``, and how many were dropped.

    Args:
        items: row indices or rows.
        key: the text of an item: a tuple of words (NER), a string (classification).
        held: the texts of the validation rows.
    """
    kept = [x for x in items if key(x) not in held]
    return kept, len(items) - len(kept)


def positions_in(texts: set, items: Sequence[Hashable]) -> list[int]:
    """The positions of the ``items`` (texts) that ``texts`` holds, e.g. the evaluation rows whose
    text stands in train."""
    return [i for i, x in enumerate(items) if x in texts]
