"""Tiny offline building blocks shared by the unit tests (no downloads).

A WordPiece tokenizer over a 30-entry vocabulary, the wikiann task adapter, a
2-layer BERT teacher with hidden size 32 (as in transformers' BertModelTester),
a small BiLSTM student and random IOB2-tagged sentences over the vocabulary.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from xdistill.data.types import Encoded
from xdistill.adapters.token_classification import TokenClassificationAdapter
from xdistill.students.bilstm import BiLSTMStudent
from xdistill.students.vocab import prune_vocabulary, svd_embeddings
from xdistill.adapters import load_task

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Whole words, then word pieces: "Hamburg" -> Ham ##burg, "Montreal" -> Mont ##re ##al.
WORDS = ["Anna", "Bob", "Carla", "lives", "in", "visited", "and", "the", "Paris", "Ham", "New", "York",
         "Mont", "Acme", "Corp", ".", ",", "long"]
PIECES = ["##burg", "##re", "##al", "##er", "##est"]
VOCAB = SPECIALS + WORDS + PIECES

PER = ["Anna", "Bob", "Carla"]
LOC = ["Paris", "Hamburg", "Montreal"]
OTHER = ["lives", "in", "visited", "and", "the", ".", ",", "longerest", "unknownword"]

HIDDEN = 32


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """One torch thread for the module (tiny tensors: with a busy machine, more threads only
    spin and slow an LSTM step down a hundredfold); the previous setting is restored after.
    Import it into a test module to use it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_tokenizer(directory: Path):
    """A WordPiece ``BertTokenizer`` (case kept) over :data:`VOCAB`."""
    from transformers import BertTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return BertTokenizer(vocab=str(path), do_lower_case=False, strip_accents=False)


def make_adapter() -> TokenClassificationAdapter:
    """The NER adapter with the wikiann label set (O, B-PER, I-PER, B-ORG, I-ORG, B-LOC, I-LOC)."""
    return TokenClassificationAdapter(load_task("wikiann"))


def make_teacher(tokenizer, num_labels: int = 7, seed: int = 0):
    """A random 2-layer BERT token classifier (hidden 32), in eval mode."""
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=37, num_labels=num_labels, max_position_embeddings=64,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForTokenClassification(cfg).eval()


def sentences(n: int, seed: int, labeled: bool = True, min_words: int = 2, max_words: int = 7) -> dict:
    """``{"tokens": [...], "tags": [...]}`` columns of ``n`` random sentences (tags ``[]`` if unlabeled)."""
    rng = random.Random(seed)
    tokens, tags = [], []
    for _ in range(n):
        words, t = [], []
        for _ in range(rng.randint(min_words, max_words)):
            kind = rng.random()
            if kind < 0.2:
                words.append(rng.choice(PER)), t.append("B-PER")
            elif kind < 0.35:
                words.append(rng.choice(LOC)), t.append("B-LOC")
            elif kind < 0.45:
                words += ["Acme", "Corp"]
                t += ["B-ORG", "I-ORG"]
            else:
                words.append(rng.choice(OTHER)), t.append("O")
        tokens.append(words)
        tags.append(t if labeled else [])
    return {"tokens": tokens, "tags": tags}


def make_student(tokenizer, teacher, encodings: list[Encoded], num_labels: int = 7, embedding_dim: int = 8,
                 hidden_size: int = 8, seed: int = 0, pooling: str = "none", dropout: float = 0.0) -> BiLSTMStudent:
    """A BiLSTM student built the way the pipeline builds it (pruned vocabulary, SVD embeddings)."""
    kept, vocab_map = prune_vocabulary((ids for enc in encodings for ids in enc.input_ids), len(tokenizer),
                                       tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.all_special_ids)
    emb = svd_embeddings(teacher.get_input_embeddings().weight, kept, embedding_dim, seed=seed)
    return BiLSTMStudent.build(vocab_map=vocab_map, student_vocab_size=len(kept), embedding_dim=embedding_dim,
                               hidden_size=hidden_size, num_labels=num_labels, dropout=dropout, pooling=pooling,
                               init_embeddings=emb, seed=seed)


def random_student(vocab_size: int = 20, num_labels: int = 7, embedding_dim: int = 6, hidden_size: int = 5,
                   seed: int = 0, pooling: str = "none", dropout: float = 0.0) -> BiLSTMStudent:
    """A student over an identity vocabulary map of ``vocab_size`` ids (no tokenizer, no teacher)."""
    return BiLSTMStudent.build(vocab_map=np.arange(vocab_size), student_vocab_size=vocab_size,
                               embedding_dim=embedding_dim, hidden_size=hidden_size, num_labels=num_labels, dropout=dropout,
                               pooling=pooling, seed=seed)


def packed_logits(s: BiLSTMStudent, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The student's logits with its encoder over ``pack_padded_sequence`` (the reference for the
    masked encoder it runs on CPUs): ``(B, T)`` -> ``(B, T, C)``, or ``(B, C)`` when pooled."""
    x = s.dropout(s.embed(ids))
    packed = pack_padded_sequence(x, mask.sum(1).clamp(min=1), batch_first=True, enforce_sorted=False)
    h, _ = pad_packed_sequence(s.encoder(packed)[0], batch_first=True, total_length=ids.size(1))
    return s.classifier(s.pool(s.dropout(h), mask))


def state_equal(a: dict, b: dict) -> bool:
    """Two state dicts hold the same keys and bit-identical tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def load_script(name: str) -> ModuleType:
    """``scripts/NAME.py`` imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
