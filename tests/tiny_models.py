"""Tiny, offline models and tokenizers for unit tests (no hub access).

* :func:`make_tokenizer`: a cased WordPiece ``BertTokenizer`` over :data:`VOCAB`.
* :func:`make_teacher`: a ``BertForTokenClassification`` with the sizes of
  transformers' ``BertModelTester`` (hidden 32, 2 layers, 2 heads, FFN 37).
* :func:`make_student_dir`: a saved BiLSTM student folder as the pipeline writes it.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["Anna", "Bob", "Carl", "Berlin", "Paris", "Zürich", "Schweiz", "visited", "lives", "in", "is",
         "the", "and", "met", ",", ".", "##ed", "##ing"]
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [chr(c) for c in range(ord("A"), ord("Z") + 1)]
VOCAB = SPECIALS + WORDS + LETTERS + ["##" + c for c in LETTERS]

# Labeled sentences (words, IOB2 tags) for the teacher and the evaluation files.
SENTENCES = [
    (["Anna", "visited", "Berlin", "."], ["B-PER", "O", "B-LOC", "O"]),
    (["Bob", "lives", "in", "Paris", "."], ["B-PER", "O", "O", "B-LOC", "O"]),
    (["Carl", "met", "Anna", "in", "Zürich", "."], ["B-PER", "O", "B-PER", "O", "B-LOC", "O"]),
    (["the", "Schweiz", "is", "big"], ["O", "B-LOC", "O", "O"]),
    (["Anna", "Bob", "and", "Carl"], ["B-PER", "I-PER", "O", "B-PER"]),
    (["Berlin", "and", "Paris"], ["B-LOC", "O", "B-LOC"]),
    (["Bob", "visited", "the", "Schweiz"], ["B-PER", "O", "O", "B-LOC"]),
    (["Carl", "lives", "in", "Berlin", "."], ["B-PER", "O", "O", "B-LOC", "O"]),
]


#: teacher options of a one-layer scratch teacher that fine-tunes in a second (tests of the teacher's training)
SCRATCH_TEACHER_SIZES = dict(teacher_hidden_size=32, teacher_layers=1, teacher_heads=2, teacher_intermediate_size=37,
                             teacher_epochs=1.0, teacher_batch_size=4, teacher_lr=1e-3)


def write_vocab(directory: Path, vocab: Sequence[str] = VOCAB) -> Path:
    """Write ``vocab.txt`` (one token per line) into ``directory``; return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    p = directory / "vocab.txt"
    p.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return p


def make_tokenizer(directory: Path):
    """A cased WordPiece tokenizer over :data:`VOCAB` (vocab.txt written to ``directory``)."""
    from transformers import BertTokenizer

    vocab_txt = write_vocab(directory)
    return BertTokenizer(vocab=str(vocab_txt), do_lower_case=False, strip_accents=False)


#: fixture text for a sentencepiece model: German, English and Swahili sentences with punctuation
SP_TEXT = [
    "Angela Merkel besuchte Paris.", "Bob lives in Berlin, and Anna visited Zürich.", "Die Schweiz ist schön.",
    "Carl traf Anna in München (Bayern).", "Paris ist die Hauptstadt von Frankreich.", "Mji mkuu wa Kenya ni Nairobi.",
    "The city of Hamburg lies on the Elbe.", "Wakati wa mvua, watu hukaa nyumbani.", "Berlin und Paris sind Städte.",
    "Anna Schmidt arbeitet bei Siemens in Erlangen.", "Nairobi iko Afrika Mashariki.", "Bob met Carl at Acme Corp.",
]


def make_sentencepiece_tokenizer(directory: Path, texts: Sequence[str] = SP_TEXT, vocab_size: int = 120):
    """An ``XLMRobertaTokenizer`` over a unigram sentencepiece model trained here on ``texts``, with
    XLM-R's layout (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3, pieces, ``<mask>`` last); saved to
    ``directory`` (``save_pretrained``). Its pre-tokenizer splits on whitespace only, as XLM-R's does."""
    import io

    import sentencepiece as spm
    from transformers import XLMRobertaTokenizer

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(list(texts) * 4), model_writer=buf, vocab_size=vocab_size,
                                   model_type="unigram", character_coverage=1.0, pad_id=-1, bos_id=-1, eos_id=-1,
                                   unk_id=0, hard_vocab_limit=False, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size()) if not sp.is_unknown(i)]
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + pieces + [("<mask>", 0.0)]
    tok = XLMRobertaTokenizer(vocab=vocab)
    tok.save_pretrained(directory)
    return tok


def bert_config(vocab_size: int, labels: Sequence[str] = LABELS, **kw):
    from transformers import BertConfig

    id2label = dict(enumerate(labels))
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, initializer_range=0.2,
                 max_position_embeddings=64)
    sizes.update(kw)
    return BertConfig(vocab_size=vocab_size, num_labels=len(labels), id2label=id2label,
                      label2id={v: k for k, v in id2label.items()}, **sizes)


def make_teacher(vocab_size: int, labels: Sequence[str] = LABELS, seed: int = 0):
    """A tiny ``BertForTokenClassification`` in eval mode, with random non-zero classifier bias."""
    from transformers import BertForTokenClassification

    torch.manual_seed(seed)
    model = BertForTokenClassification(bert_config(vocab_size, labels))
    with torch.no_grad():  # a non-zero bias so that a label permutation is visible in the logits
        model.classifier.bias.copy_(torch.randn(len(labels)))
    model.eval()
    return model


def teacher_of(model, tokenizer, fingerprint: str = "fp0"):
    """A :class:`xdistill.teachers.Teacher` around a tiny model (info filled for tests)."""
    from xdistill.teachers import Teacher, TeacherInfo

    cfg = model.config
    info = TeacherInfo(source="tiny", trained_from_scratch=True, fine_tuned_here=False, architecture=type(model).__name__,
                       parameters=sum(p.numel() for p in model.parameters()), hidden_size=cfg.hidden_size,
                       num_layers=cfg.num_hidden_layers, path="", fingerprint=fingerprint,
                       family=getattr(cfg, "model_type", "bert"), vocab_size=len(tokenizer))
    return Teacher(model, tokenizer, info)


def wikiann_adapter():
    from xdistill.adapters import make_adapter
    from xdistill.adapters import load_task

    return make_adapter(load_task("wikiann"))


def encode(adapter, tokenizer, sentences, labeled: bool = True, max_length: int = 32):
    """Encode ``(words, tags)`` pairs with the adapter (tags dropped when ``labeled`` is False)."""
    ds = {"tokens": [list(w) for w, _ in sentences],
          "tags": [list(t) if labeled else [] for _, t in sentences]}
    return adapter.encode(ds, tokenizer, max_length)


@torch.no_grad()
def reference_outputs(model, input_ids: Sequence[int], layer: int):
    """The model's own logits and layer-``layer`` hidden states for one unpadded row (float32 numpy)."""
    ids = torch.tensor([list(input_ids)])
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    return out.logits[0].float().numpy(), out.hidden_states[layer][0].float().numpy()


def make_student_dir(directory: Path, tokenizer, labels: Sequence[str] = LABELS, max_length: int = 32,
                     constant_label: str | None = None, seed: int = 0) -> Path:
    """Build and save a tiny BiLSTM student as ``pipeline.run`` does (tokenizer files and ``extra`` keys).

    With ``constant_label`` the classifier's weights are zero and its bias picks
    that label, so every word is predicted as ``constant_label``.
    """
    from xdistill.students.bilstm import BiLSTMStudent
    from xdistill.students.vocab import prune_vocabulary

    kept, vocab_map = prune_vocabulary([list(range(len(tokenizer)))], len(tokenizer), tokenizer.pad_token_id,
                                       tokenizer.unk_token_id, tokenizer.all_special_ids)
    student = BiLSTMStudent.build(vocab_map=vocab_map, student_vocab_size=len(kept), embedding_dim=8, hidden_size=8,
                                  num_labels=len(labels), dropout=0.0, seed=seed)
    if constant_label is not None:
        with torch.no_grad():
            student.classifier.weight.zero_()
            bias = torch.full((len(labels),), -5.0)
            bias[list(labels).index(constant_label)] = 5.0
            student.classifier.bias.copy_(bias)
    extra = {"task": "wikiann", "task_type": "token-classification", "labels": list(labels), "max_length": max_length,
             "groups": ["xx"], "teacher": "scratch", "teacher_trained_from_scratch": True, "reference": "mbert-base"}
    student.eval()
    student.save(directory, tokenizer=tokenizer, extra=extra)
    return Path(directory)


def make_classifier_dir(directory: Path, tokenizer, pooling: str = "max", constant: str | None = None, seed: int = 0,
                        max_length: int = 32, labels: Sequence[str] = ("neg", "pos")) -> Path:
    """A tiny saved IMDB-task BiLSTM classifier (E=H=8). With ``constant`` (a label) it always says that label."""
    from xdistill.students.bilstm import BiLSTMStudent
    from xdistill.students.vocab import prune_vocabulary

    kept, vocab_map = prune_vocabulary([list(range(len(tokenizer)))], len(tokenizer), tokenizer.pad_token_id,
                                       tokenizer.unk_token_id, tokenizer.all_special_ids)
    s = BiLSTMStudent.build(vocab_map=vocab_map, student_vocab_size=len(kept), embedding_dim=8, hidden_size=8,
                            num_labels=len(labels), dropout=0.0, pooling=pooling, seed=seed)
    if constant is not None:
        with torch.no_grad():
            s.classifier.weight.zero_()
            s.classifier.bias.copy_(torch.tensor([5.0 if lab == constant else -5.0 for lab in labels]))
    s.eval()
    s.save(directory, tokenizer=tokenizer, extra={"task": "imdb", "task_type": "sequence-classification",
                                                  "labels": list(labels), "max_length": max_length})
    return Path(directory)


def write_panx(path: Path, sentences) -> Path:
    """Write ``(words, tags)`` pairs as a PAN-X ``token<TAB>tag`` file."""
    blocks = ["\n".join(f"{w}\t{t}" for w, t in zip(words, tags)) for words, tags in sentences]
    Path(path).write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return Path(path)


def as_float32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


@contextmanager
def single_thread():
    """Run torch on one thread (tiny models are much faster so on a busy 2-core machine); restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
