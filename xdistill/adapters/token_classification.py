"""Token classification (NER) adapter: first-subword label alignment, windowing, seqeval F1."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import torch

from ..data.readers import entity_types
from ..batching import collate
from .base import Encoded, TaskAdapter

logger = logging.getLogger(__name__)

IGNORE = -100


def word_pieces(tokenizer, words: Sequence[str], cache: dict[str, list[int]] | None = None) -> list[list[int]]:
    """Subword ids of each word, tokenized alone (as ``is_split_into_words`` does).

    A word the tokenizer reduces to nothing (e.g. only control characters)
    becomes ``[UNK]`` so that every word still gets a prediction.
    """
    cache = {} if cache is None else cache
    todo = list({w for w in words if w not in cache})
    if todo:
        ids = tokenizer(todo, add_special_tokens=False)["input_ids"]
        for w, i in zip(todo, ids):
            cache[w] = i if i else [tokenizer.unk_token_id]
    return [cache[w] for w in words]


def windows(pieces: Sequence[Sequence[int]], budget: int) -> list[tuple[int, int]]:
    """Split a sentence's words into consecutive windows of at most ``budget`` subwords.

    Returns ``(first_word, end_word)`` pairs covering every word once. A single
    word longer than the budget gets a window of its own (its pieces are cut to
    the budget by the caller; its first subword, which carries the prediction, is kept).
    """
    out, start, used = [], 0, 0
    for i, p in enumerate(pieces):
        n = min(len(p), budget)
        if used + n > budget and i > start:
            out.append((start, i))
            start, used = i, 0
        used += n
    out.append((start, len(pieces)))
    return out


class TokenClassificationAdapter(TaskAdapter):
    """NER with IOB2 tags: the label of a word sits on its first subword (others -100);
    all non-special positions are distilled (logits ``(B, T, C)``, hidden states
    ``(B, T, D)``); predictions are word-level; the metric is seqeval's
    entity-level micro F1 (CoNLL scoring) in percent, with per-type scores."""

    level = "token"
    primary_metric = "f1"

    @property
    def auto_model_class(self):
        from transformers import AutoModelForTokenClassification
        return AutoModelForTokenClassification

    def encode(self, dataset, tokenizer, max_length: int) -> Encoded:
        """Windows of at most ``max_length`` tokens (``[CLS]`` and ``[SEP]`` included).

        Labels are aligned to first subwords; an example with no tags (transfer
        text) gets -100 everywhere.
        """
        if max_length < 3:
            raise ValueError(f"max_length must be at least 3 ([CLS], one token, [SEP]), got {max_length}")
        budget = max_length - 2
        cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
        cache: dict[str, list[int]] = {}
        enc = Encoded([], [], [], [], [])
        n_windows_split = n_pieces_cut = 0
        tokens_col, tags_col = dataset["tokens"], dataset["tags"]
        for e, (words, tags) in enumerate(zip(tokens_col, tags_col)):
            pieces = word_pieces(tokenizer, words, cache)
            enc.n_words.append(len(words))
            spans = windows(pieces, budget)
            n_windows_split += len(spans) > 1
            for a, b in spans:
                ids, labels, widx = [cls_id], [IGNORE], [-1]
                for w in range(a, b):
                    p = pieces[w]
                    if len(p) > budget:
                        n_pieces_cut += len(p) - budget
                        p = p[:budget]
                    ids.extend(p)
                    labels.append(self.label2id[tags[w]] if tags else IGNORE)
                    labels.extend([IGNORE] * (len(p) - 1))
                    widx.append(w)
                    widx.extend([-1] * (len(p) - 1))
                ids.append(sep_id)
                labels.append(IGNORE)
                widx.append(-1)
                enc.input_ids.append(ids)
                enc.labels.append(labels)
                enc.word_index.append(widx)
                enc.example.append(e)
        enc.stats = {"examples": len(enc.n_words), "windows": len(enc.input_ids),
                     "examples_split_into_windows": n_windows_split, "subwords_cut_from_overlong_words": n_pieces_cut}
        if n_windows_split:
            logger.info("%d sentences longer than %d tokens were split into windows", n_windows_split, max_length)
        return enc

    def decode(self, logits: Sequence[np.ndarray], encoded: Encoded) -> list[list[str]]:
        """Word-level tags per example: the argmax at each word's first subword."""
        preds: list[list[str | None]] = [[None] * n for n in encoded.n_words]
        for row, lg in enumerate(logits):
            best = np.asarray(lg).argmax(-1)
            ex = preds[encoded.example[row]]
            for pos, w in enumerate(encoded.word_index[row]):
                if w >= 0:
                    ex[w] = self.labels[int(best[pos])]
        for e, p in enumerate(preds):
            if any(t is None for t in p):  # an internal error, never expected
                raise RuntimeError(f"example {e}: {sum(t is None for t in p)} words got no prediction")
        return preds  # type: ignore[return-value]

    def gold(self, dataset) -> list[list[str]]:
        return [list(t) for t in dataset["tags"]]

    def score(self, predictions: list[list[str]], gold: list[list[str]]) -> dict[str, Any]:
        """seqeval entity-level scores in percent: ``f1``, ``precision``, ``recall``, ``per_type``."""
        from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

        if len(predictions) != len(gold):
            raise ValueError(f"{len(predictions)} predictions for {len(gold)} gold sentences")
        if not gold:
            return {"f1": 0.0, "precision": 0.0, "recall": 0.0, "per_type": {}, "n": 0}
        rep = classification_report(gold, predictions, output_dict=True, zero_division=0)
        per_type = {t: {"f1": 100 * rep[t]["f1-score"], "precision": 100 * rep[t]["precision"],
                        "recall": 100 * rep[t]["recall"], "support": int(rep[t]["support"])}
                    for t in entity_types(self.labels) if t in rep}
        return {
            "f1": 100 * f1_score(gold, predictions, zero_division=0),
            "precision": 100 * precision_score(gold, predictions, zero_division=0),
            "recall": 100 * recall_score(gold, predictions, zero_division=0),
            "per_type": per_type,
            "n": len(gold),
        }

    def distill_mask(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` bool: real subword positions, without ``[CLS]`` and the final ``[SEP]``."""
        mask = attention_mask.bool().clone()
        mask[:, 0] = False
        lengths = attention_mask.sum(1)
        mask[torch.arange(mask.size(0)), lengths - 1] = False
        return mask

    def teacher_outputs(self, logits: torch.Tensor, hidden: torch.Tensor, lengths: Sequence[int]):
        """Per row: logits ``(T_i, C)`` and hidden states ``(T_i, D)`` up to the row's length."""
        return ([logits[i, :n] for i, n in enumerate(lengths)], [hidden[i, :n] for i, n in enumerate(lengths)])

    def positions_per_row(self, lengths: np.ndarray) -> np.ndarray:
        return np.asarray(lengths)

    def collate(self, encoded: Encoded, rows: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
        return collate(encoded, rows, pad_id, sequence_level=False)

    def row_logits(self, logits: torch.Tensor, lengths: Sequence[int]) -> list[np.ndarray]:
        """Per row ``(T_i, C)`` float32 arrays."""
        return [logits[j, :n].float().numpy() for j, n in enumerate(lengths)]

    def teacher_batch(self, teacher, rows: Sequence[int], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, width, C)`` logits and ``(B, width, D)`` hidden states."""
        return teacher.batch(rows, width)

    def student_pooling(self, requested: str) -> str:
        return "none"

    def trainer_example(self, encoded: Encoded, i: int) -> dict:
        return {"input_ids": encoded.input_ids[i], "labels": encoded.labels[i]}

    def trainer_collator(self, tokenizer):
        from transformers import DataCollatorForTokenClassification
        return DataCollatorForTokenClassification(tokenizer)

    def trainer_metrics(self, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Entity F1 over first-subword positions of each window."""
        preds = logits.argmax(-1)
        gold_seqs, pred_seqs = [], []
        for pr, lb in zip(preds, labels):
            keep = lb != IGNORE
            gold_seqs.append([self.labels[i] for i in lb[keep]])
            pred_seqs.append([self.labels[i] for i in pr[keep]])
        return {"f1": self.score(pred_seqs, gold_seqs)["f1"]}

    def texts(self, dataset) -> list[str]:
        return [" ".join(t) for t in dataset["tokens"]]

    def predict_texts(self, model, texts: Sequence[str]) -> list[dict]:
        """Entity spans per text: ``{"text", "entities": [{"text", "type", "start", "end"}]}`` (character offsets)."""
        from ..data.ner import words_of

        words = words_of(model.tokenizer, texts) if texts else []
        ds = {"tokens": [[w for w, _, _ in ws] for ws in words], "tags": [[] for _ in words]}
        enc = self.encode(ds, model.tokenizer, model.max_length)
        tags = self.decode(model.logits(enc), enc)
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
            out.append({"text": text, "entities": [{"text": text[x["start"]:x["end"]], **x} for x in ents]})
        return out

    def read_labeled_file(self, path, fmt: str):
        """A PAN-X or CoNLL file (``fmt``: auto, panx, conll) as ``{"tokens", "tags"}``."""
        from ..data.readers import read_ner_file

        sentences, stats = read_ner_file(path, format=fmt, label_set=self.labels)
        ds = {"tokens": [list(s.tokens) for s in sentences], "tags": [list(s.tags) for s in sentences]}
        return ds, {"sentences": stats.n_sentences, "tokens": stats.n_tokens, "repaired_tags": stats.n_repaired}

    def unlabeled_dataset(self, texts: Sequence[str]):
        from datasets import Dataset

        from ..data.ner import FEATURES
        return Dataset.from_dict({"tokens": [t.split() for t in texts], "tags": [[] for _ in texts],
                                  "lang": ["generated"] * len(texts)}, features=FEATURES)
