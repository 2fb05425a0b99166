"""The per-word Python NER path as it was before the vectorised one (xdistill 5bddcd1): encoding,
first-subword decoding and span building, kept here as the reference the fast path must equal."""

from __future__ import annotations

import numpy as np

from xdistill.adapters.token_classification import IGNORE, windows, word_pieces
from xdistill.data.types import EncodedBuilder
from xdistill.data.readers import repair_iob2


def reference_encode(adapter, dataset, tokenizer, max_length: int):
    """Rows of ``dataset`` (``tokens``, ``tags`` lists) as the previous ``encode`` built them."""
    budget = max_length - 2
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    cache: dict = {}
    enc = EncodedBuilder()
    n_split = n_cut = 0
    for e, (words, tags) in enumerate(zip(dataset["tokens"], dataset["tags"])):
        pieces = word_pieces(tokenizer, words, cache)
        enc.n_words.append(len(words))
        spans = windows(pieces, budget)
        n_split += len(spans) > 1
        for a, b in spans:
            ids, labels, widx = [cls_id], [IGNORE], [-1]
            for w in range(a, b):
                p = pieces[w]
                if len(p) > budget:
                    n_cut += len(p) - budget
                    p = p[:budget]
                ids.extend(p)
                labels.append(adapter.label2id[tags[w]] if tags else IGNORE)
                labels.extend([IGNORE] * (len(p) - 1))
                widx.append(w)
                widx.extend([-1] * (len(p) - 1))
            ids.append(sep_id)
            labels.append(IGNORE)
            widx.append(-1)
            enc.add_row(ids, labels, widx, e)
    return enc.build({"examples": len(enc.n_words), "windows": len(enc.example),
                      "examples_split_into_windows": n_split, "subwords_cut_from_overlong_words": n_cut})


def reference_decode(adapter, logits, encoded) -> list[list[str]]:
    """Word tags: the argmax at each word's first subword, one row and position at a time."""
    preds = [[None] * n for n in encoded.n_words]
    for row, lg in enumerate(logits):
        best = np.asarray(lg).argmax(-1)
        ex = preds[encoded.example[row]]
        for pos, w in enumerate(encoded.word_index[row]):
            if w >= 0:
                ex[w] = adapter.labels[int(best[pos])]
    return preds


def reference_predict(adapter, model, texts) -> list[dict]:
    """``predict_texts`` one word at a time: words, tags (repaired to valid IOB2 by the readers'
    :func:`~xdistill.data.readers.repair_iob2`) and entity spans."""
    words = adapter.splitter.spans(texts)
    ds = {"tokens": [[w for w, _, _ in ws] for ws in words], "tags": [[] for _ in words]}
    enc = reference_encode(adapter, ds, model.tokenizer, model.max_length)
    tags = reference_decode(adapter, model.logits(enc), enc)
    out = []
    for text, ws, tg in zip(texts, words, tags):
        ents, cur = [], None
        for (w, s, e), t in zip(ws, tg):
            if t.startswith("B-") or (t.startswith("I-") and (cur is None or cur["type"] != t[2:])):
                cur = {"type": t[2:], "start": s, "end": e}
                ents.append(cur)
            elif t.startswith("I-"):
                cur["end"] = e
            else:
                cur = None
        out.append({"text": text, "words": [w for w, _, _ in ws], "tags": repair_iob2(tg)[0],
                    "entities": [{"text": text[x["start"]:x["end"]], **x} for x in ents]})
    return out
