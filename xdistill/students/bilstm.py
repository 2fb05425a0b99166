"""The BiLSTM student of XtremeDistil (Mukherjee & Hassan Awadallah 2020, sec. 3.1).

Word embeddings over the teacher's WordPiece vocabulary pruned to the tokens
seen in the training and transfer data, initialised by SVD of the teacher's
input embeddings to E dimensions; a BiLSTM with H units per direction; a tag
classifier on the BiLSTM states; and a projection GELU(W h + b) to the
teacher's hidden size for the representation loss. Positions align 1:1 with
the teacher's WordPiece tokens: the model maps teacher ids to its own through
a vocabulary buffer, so it takes the teacher tokenizer's output unchanged.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..utils import count_parameters
from .base import Student, StudentOutput

PAD, UNK = 0, 1


def prune_vocabulary(rows: Iterable[Sequence[int]], teacher_vocab_size: int, pad_id: int, unk_id: int,
                     keep_ids: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Keep the teacher token ids seen in ``rows`` (plus ``keep_ids``, e.g. special tokens).

    Returns ``(kept, vocab_map)``: ``kept[s]`` is the teacher id of student id
    ``s`` (student 0 = padding, 1 = unknown), and ``vocab_map`` ``(V_teacher,)``
    maps every teacher id to its student id (unseen ids -> 1).
    """
    seen = np.zeros(teacher_vocab_size, dtype=bool)
    for r in rows:
        seen[np.asarray(r, dtype=np.int64)] = True
    for i in keep_ids:
        seen[i] = True
    seen[pad_id] = seen[unk_id] = False
    kept = np.concatenate([[pad_id, unk_id], np.flatnonzero(seen)]).astype(np.int64)
    vocab_map = np.full(teacher_vocab_size, UNK, dtype=np.int64)
    vocab_map[kept] = np.arange(len(kept))
    return kept, vocab_map


def svd_embeddings(teacher_embeddings: torch.Tensor, kept: Sequence[int], dim: int, seed: int = 0) -> torch.Tensor:
    """SVD initialisation of the student embeddings (XtremeDistil sec. 3.1).

    ``teacher_embeddings`` ``(V_teacher, D)``; the kept rows ``W`` ``(V_s, D)`` are
    factorised ``W = U S V^T`` and projected onto the top ``dim`` right singular
    vectors, ``W V[:, :dim] = U[:, :dim] S[:dim]`` ``(V_s, dim)``: the best
    rank-``dim`` approximation of the teacher's embeddings in ``dim`` coordinates.
    If ``dim`` exceeds the rank available (min(V_s, D)), the remaining columns
    are small random values. Row 0 (padding) is zero.
    """
    w = teacher_embeddings.detach().float().cpu()[torch.as_tensor(np.asarray(kept))]
    _, s, vh = torch.linalg.svd(w, full_matrices=False)
    k = min(dim, vh.size(0))
    out = torch.empty(w.size(0), dim)
    out[:, :k] = w @ vh[:k].T
    if dim > k:
        g = torch.Generator().manual_seed(seed)
        out[:, k:] = torch.randn(w.size(0), dim - k, generator=g) * out[:, :k].std() * 0.1
    out[PAD] = 0.0
    return out


class BiLSTMStudent(Student):
    """BiLSTM student.

    Config keys: ``teacher_vocab_size``, ``student_vocab_size``, ``embedding_dim`` (E),
    ``hidden_size`` (H), ``num_labels`` (C), ``teacher_hidden_size`` (D),
    ``dropout``, ``pooling`` (``"none"`` for token tasks; ``"max"`` or ``"attention"`` for sequence tasks).

    ``forward``: ``input_ids`` ``(B, T)`` teacher ids -> logits ``(B, T, C)`` and
    projected states ``(B, T, D)`` (or ``(B, C)`` and ``(B, D)`` with pooling).
    Layer groups, top down: ``classifier`` / ``projection``, ``encoder``, ``embeddings``.
    """

    kind = "bilstm"

    def __init__(self, config: dict):
        super().__init__(config)
        c = self.config
        self.register_buffer("vocab_map", torch.full((c["teacher_vocab_size"],), UNK, dtype=torch.long))
        self.embeddings = nn.Embedding(c["student_vocab_size"], c["embedding_dim"], padding_idx=PAD)
        self.dropout = nn.Dropout(c.get("dropout", 0.0))
        self.encoder = nn.LSTM(c["embedding_dim"], c["hidden_size"], batch_first=True, bidirectional=True)
        self.classifier = nn.Linear(2 * c["hidden_size"], c["num_labels"])
        self.projection = nn.Linear(2 * c["hidden_size"], c["teacher_hidden_size"])
        self.pooling = c.get("pooling", "none")
        if self.pooling not in ("none", "max", "attention"):
            raise ValueError(f"pooling must be none, max or attention, got {self.pooling!r}")
        # Attention pooling (a learned query, Yang et al. 2016): score_t = v . tanh(W h_t).
        self.attention = nn.Sequential(nn.Linear(2 * c["hidden_size"], c["hidden_size"]), nn.Tanh(),
                                       nn.Linear(c["hidden_size"], 1, bias=False)) if self.pooling == "attention" else None

    @classmethod
    def from_config(cls, config: dict) -> "BiLSTMStudent":
        return cls(config)

    @classmethod
    def build(cls, *, vocab_map: np.ndarray, student_vocab_size: int, embedding_dim: int, hidden_size: int,
              num_labels: int, teacher_hidden_size: int, dropout: float, pooling: str = "none",
              init_embeddings: torch.Tensor | None = None, seed: int = 0) -> "BiLSTMStudent":
        """A new student; ``init_embeddings`` ``(V_s, E)`` (e.g. from :func:`svd_embeddings`) or random."""
        torch.manual_seed(seed)
        m = cls({"teacher_vocab_size": int(len(vocab_map)), "student_vocab_size": int(student_vocab_size),
                 "embedding_dim": embedding_dim, "hidden_size": hidden_size, "num_labels": num_labels,
                 "teacher_hidden_size": teacher_hidden_size, "dropout": dropout, "pooling": pooling})
        m.vocab_map.copy_(torch.as_tensor(vocab_map))
        if init_embeddings is not None:
            with torch.no_grad():
                m.embeddings.weight.copy_(init_embeddings)
        return m

    def states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """BiLSTM states over a packed batch, pooled: ``(B, T, 2H)`` (``none``) or ``(B, 2H)``."""
        ids = self.vocab_map[input_ids]
        x = self.dropout(self.embeddings(ids))
        lengths = attention_mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        h, _ = self.encoder(packed)
        h, _ = pad_packed_sequence(h, batch_first=True, total_length=input_ids.size(1))
        return self.pool(self.dropout(h), attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> StudentOutput:
        h = self.states(input_ids, attention_mask)
        return StudentOutput(logits=self.classifier(h), projected=torch.nn.functional.gelu(self.projection(h)))

    def inference_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits only (no projection head): what ``predict``, ``evaluate`` and the benchmark run."""
        return self.classifier(self.states(input_ids, attention_mask))

    def export_module(self) -> nn.Module:
        """The ONNX-exportable inference forward (see :class:`MaskedBiLSTM`)."""
        return ExportableBiLSTM(self)

    def inference_parameters(self) -> int:
        """All parameters but the stage-1 projection (training-only); the vocabulary buffer is not a parameter."""
        return count_parameters(self) - sum(p.numel() for p in self.projection.parameters())

    def pool(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B, T, 2H)`` states -> ``(B, T, 2H)`` (``none``) or ``(B, 2H)`` (``max``: max over real
        positions; ``attention``: softmax-weighted sum over real positions)."""
        if self.pooling == "none":
            return h
        pad = ~attention_mask.bool().unsqueeze(-1)
        if self.pooling == "max":
            return h.masked_fill(pad, -1e4).max(1).values
        scores = self.attention(h).masked_fill(pad, -1e4)
        return (torch.softmax(scores, dim=1) * h).sum(1)

    def unfreeze_groups(self, stage: str) -> list[str]:
        top = "projection" if stage == "representation" else "classifier"
        return [top, "encoder", "embeddings"]

    def group_parameters(self, group: str) -> list[nn.Parameter]:
        if group not in ("projection", "classifier", "encoder", "embeddings"):
            raise KeyError(f"unknown layer group {group!r}")
        params = list(getattr(self, group).parameters())
        if group in ("projection", "classifier") and self.attention is not None:
            params += list(self.attention.parameters())  # the pooling belongs to the head it feeds
        return params


class MaskedBiLSTM(nn.Module):
    """A one-layer bidirectional LSTM over right-padded batches without ``pack_padded_sequence``.

    ``forward(x, lengths)``: ``x`` ``(B, T, E)``, ``lengths`` ``(B,)`` -> ``(B, T, 2H)``. The forward
    direction runs over the padded rows unchanged (padding comes after the real tokens, so it
    cannot reach them); the backward direction reads each row reversed *within its length*
    (position ``t < L`` takes ``x[L - 1 - t]``), runs forwards, and is reversed back. On the real
    positions this equals ``nn.LSTM(bidirectional=True)`` over a packed batch; positions ``>= L``
    hold values that callers must mask. Everything is tensor ops (``gather``, ``where``), so
    ``torch.onnx.export`` emits two ONNX ``LSTM`` nodes with dynamic ``B`` and ``T``.

    The two directions share the parameters of ``lstm`` (``weight_*_l0`` and ``weight_*_l0_reverse``).

    Raises:
        ValueError: ``lstm`` is not a one-layer, bidirectional, batch-first LSTM.
    """

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        if lstm.num_layers != 1 or not lstm.bidirectional or not lstm.batch_first:
            raise ValueError("MaskedBiLSTM needs a one-layer, bidirectional, batch-first nn.LSTM")
        self.fwd = nn.LSTM(lstm.input_size, lstm.hidden_size, batch_first=True, bias=lstm.bias)
        self.bwd = nn.LSTM(lstm.input_size, lstm.hidden_size, batch_first=True, bias=lstm.bias)
        names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if lstm.bias else [])
        for n in names:  # share, do not copy: the exported graph reads the student's own weights
            setattr(self.fwd, f"{n}_l0", getattr(lstm, f"{n}_l0"))
            setattr(self.bwd, f"{n}_l0", getattr(lstm, f"{n}_l0_reverse"))

    @staticmethod
    def reverse_index(lengths: torch.Tensor, width: int) -> torch.Tensor:
        """``(B, T)`` gather index reversing each row's first ``lengths[b]`` positions (an involution)."""
        pos = torch.arange(width, device=lengths.device).unsqueeze(0)
        last = lengths.unsqueeze(1) - 1
        return torch.where(pos <= last, last - pos, pos)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        idx = self.reverse_index(lengths, x.size(1)).unsqueeze(-1)
        h_fwd, _ = self.fwd(x)
        h_rev, _ = self.bwd(x.gather(1, idx.expand(-1, -1, x.size(2))))
        h_bwd = h_rev.gather(1, idx.expand(-1, -1, h_rev.size(2)))
        return torch.cat([h_fwd, h_bwd], dim=-1)


class ExportableBiLSTM(nn.Module):
    """Inference forward of a :class:`BiLSTMStudent` for ONNX export: ``(input_ids, attention_mask)``
    ``(B, T)`` int64 -> logits ``(B, T, C)`` (token tasks) or ``(B, C)`` (pooled sequence tasks).
    No dropout, no projection head; shares the student's weights."""

    def __init__(self, student: BiLSTMStudent):
        super().__init__()
        self.student = student
        self.encoder = MaskedBiLSTM(student.encoder)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        s = self.student
        x = s.embeddings(s.vocab_map[input_ids])
        h = self.encoder(x, attention_mask.sum(1).clamp(min=1))
        return s.classifier(s.pool(h, attention_mask))
