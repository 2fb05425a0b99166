"""Teacher predictions decoded from the cache (``xdistill.transfer.profile``), chunk by chunk."""

from __future__ import annotations

import numpy as np

from xdistill.adapters import make_adapter, load_task
from xdistill.data.types import Encoded
from xdistill.transfer import FeatureCache
from xdistill.transfer.profile import cached_predictions


def test_cached_predictions_are_the_same_whatever_the_chunk():
    adapter = make_adapter(load_task("wikiann"))
    rng = np.random.default_rng(0)
    # 7 examples, two of them split into two windows; word_index marks each word's first subword
    lengths = [5, 3, 6, 4, 4, 2, 5, 3, 4]
    example = [0, 1, 1, 2, 3, 4, 4, 5, 6]
    word_index = []
    words = {e: 0 for e in set(example)}
    for n, e in zip(lengths, example):
        row = [-1] * n
        for pos in range(1, n - 1):
            row[pos] = words[e]
            words[e] += 1
        word_index.append(row)
    enc = Encoded([[2] * n for n in lengths], [[-100] * n for n in lengths], word_index, example,
                  [words[e] for e in sorted(words)])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    logits = rng.standard_normal((int(offsets[-1]), len(adapter.labels))).astype(np.float16)
    cache = FeatureCache(path=None, shard_arrays={"logits": [logits]}, offsets=offsets, shards=np.array([0, len(lengths)]),
                         meta={})
    direct = adapter.decode([logits[offsets[i]:offsets[i + 1]].astype(np.float32) for i in range(len(lengths))], enc)
    rows = list(range(len(lengths)))
    for chunk in (1, 2, 3, 4096):
        for batch in (1, 2, 256):
            assert cached_predictions(cache, adapter, enc, rows, batch=batch, chunk_examples=chunk) == direct
    # a sub-selection of whole examples (1 and 4: rows 1, 2, 5, 6) keeps their order
    sub = cached_predictions(cache, adapter, enc, [1, 2, 5, 6], chunk_examples=1)
    assert sub == [direct[1], direct[4]]
