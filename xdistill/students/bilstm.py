"""The BiLSTM student of XtremeDistil (Mukherjee & Hassan Awadallah 2020, sec. 3.1).

Word embeddings over the teacher's subword vocabulary pruned to the tokens seen in the run's
data, initialised by SVD of the teacher's input embeddings to E dimensions (random for the
no-distillation baseline); a BiLSTM with H units per direction; and a tag or class classifier
on the BiLSTM states (for sequence tasks after max or attention pooling). Positions align 1:1
with the teacher's subword tokens: the model maps teacher ids to its own through a vocabulary
buffer, so it takes the teacher tokenizer's output unchanged.

Named outputs: ``logits`` and ``hidden_states = (h,)``, the BiLSTM states ``(B, T, 2H)`` (pooled
to ``(B, 2H)`` for sequence tasks). The paper's stage-1 projection GELU(W h + b) to the teacher's
width is a distillation head (:mod:`xdistill.distill.matches`), not part of the saved student.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..config import StudentArguments
from ..data.types import Feature
from .base import Student, StudentContext, StudentOutput, StudentShape
from .registry import register_student
from .vocab import PAD, UNK, svd_embeddings


@register_student
class BiLSTMStudent(Student):
    """BiLSTM student.

    Config keys: ``teacher_vocab_size``, ``student_vocab_size``, ``embedding_dim`` (E),
    ``hidden_size`` (H), ``num_labels`` (C), ``dropout``, ``pooling`` (``"none"`` for token
    tasks; ``"max"``, ``"mean"`` or ``"attention"`` for sequence tasks).

    ``forward``: ``input_ids`` ``(B, T)`` teacher ids -> logits ``(B, T, C)`` and hidden states
    ``((B, T, 2H),)`` (or ``(B, C)`` and ``((B, 2H),)`` with pooling).
    Groups: heads ``classifier`` and ``pooling`` (the attention pooling's parameters, empty
    otherwise); body, top down: ``encoder``, ``embeddings``.

    Raises:
        ValueError: an unknown pooling.
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
        self.pooling = c.get("pooling", "none")
        if self.pooling not in ("none", "max", "mean", "attention"):
            raise ValueError(f"pooling must be none, max, mean or attention, got {self.pooling!r}")
        # Attention pooling (a learned query, Yang et al. 2016): score_t = v . tanh(W h_t).
        self.attention = nn.Sequential(nn.Linear(2 * c["hidden_size"], c["hidden_size"]), nn.Tanh(),
                                       nn.Linear(c["hidden_size"], 1, bias=False)) if self.pooling == "attention" else None

    @classmethod
    def create(cls, args: StudentArguments, ctx: StudentContext) -> "BiLSTMStudent":
        """The teacher's vocabulary pruned to ``ctx.rows``' tokens (special tokens kept; whole with
        ``--student-vocabulary whole``), SVD embeddings
        from ``ctx.teacher_embeddings`` (random when ``None``), E and H from ``args``."""
        kept, vocab_map = ctx.vocabulary(args.student_vocabulary)
        emb = None
        if ctx.teacher_embeddings is not None:
            emb = svd_embeddings(ctx.teacher_embeddings, kept, args.embedding_dim, seed=ctx.seed)
        return cls.build(vocab_map=vocab_map, student_vocab_size=len(kept), embedding_dim=args.embedding_dim,
                         hidden_size=args.hidden_size, num_labels=ctx.num_labels, dropout=args.dropout,
                         pooling=ctx.level.student_pooling(args.pooling), init_embeddings=emb, seed=ctx.seed,
                         embedding_init="svd" if emb is not None else "random")

    @classmethod
    def build(cls, *, vocab_map: np.ndarray, student_vocab_size: int, embedding_dim: int, hidden_size: int,
              num_labels: int, dropout: float, pooling: str = "none", init_embeddings: torch.Tensor | None = None,
              seed: int = 0, embedding_init: str | None = None) -> "BiLSTMStudent":
        """A new student (modules initialised after ``torch.manual_seed(seed)``); ``init_embeddings``
        ``(V_s, E)`` (e.g. from :func:`~xdistill.students.vocab.svd_embeddings`) or random;
        ``embedding_init`` records which (``svd``, ``random``; default ``given`` or ``random``)."""
        torch.manual_seed(seed)
        init = embedding_init or ("given" if init_embeddings is not None else "random")
        m = cls({"teacher_vocab_size": int(len(vocab_map)), "student_vocab_size": int(student_vocab_size),
                 "embedding_dim": embedding_dim, "hidden_size": hidden_size, "num_labels": num_labels,
                 "dropout": dropout, "pooling": pooling, "embedding_init": init})
        m.vocab_map.copy_(torch.as_tensor(vocab_map))
        if init_embeddings is not None:
            with torch.no_grad():
                m.embeddings.weight.copy_(init_embeddings)
        return m

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Word embeddings of teacher ids through the vocabulary map: ``(...)`` -> ``(..., E)``."""
        return self.embeddings(self.vocab_map[input_ids])

    def states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """BiLSTM states over a packed batch, pooled: ``(B, T, 2H)`` (``none``) or ``(B, 2H)``;
        ``inputs_embeds`` ``(B, T, E)`` replaces the embeddings of ``input_ids`` when given."""
        x = self.dropout(self.embed(input_ids) if inputs_embeds is None else inputs_embeds)
        lengths = attention_mask.sum(1).clamp(min=1)
        if x.is_cuda:  # cuDNN runs packed sequences well
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            h, _ = self.encoder(packed)
            h, _ = pad_packed_sequence(h, batch_first=True, total_length=input_ids.size(1))
        else:  # the same values, 1.4-2.5x faster to train on CPUs (see MaskedBiLSTM); 0 beyond each length
            real = torch.arange(x.size(1), device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
            h = self.masked_encoder()(x, lengths) * real.unsqueeze(-1).to(x.dtype)
        return self.pool(self.dropout(h), attention_mask)

    def masked_encoder(self) -> "MaskedBiLSTM":
        """The encoder as a :class:`MaskedBiLSTM` sharing its parameters (made on first use; kept out of
        the module's registered children, so ``state_dict`` and ``parameters()`` are unchanged)."""
        m = self.__dict__.get("_masked_encoder")
        if m is None or m.fwd.weight_ih_l0 is not self.encoder.weight_ih_l0:
            m = self.__dict__["_masked_encoder"] = MaskedBiLSTM(self.encoder)
        return m.train(self.training)

    @classmethod
    def shape(cls, args: StudentArguments) -> StudentShape:
        """One hidden state (the BiLSTM's, 2H wide), no attention."""
        return StudentShape(layers=0, heads=0, hidden=2 * args.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                features: Sequence[Feature] = (), inputs_embeds: torch.Tensor | None = None) -> StudentOutput:
        """``(B, T)`` teacher ids (or their ``inputs_embeds`` ``(B, T, E)``) -> logits ``(B, T, C)`` and
        ``hidden_states = ((B, T, 2H),)`` (pooled: ``(B, C)`` and ``((B, 2H),)``). A BiLSTM has no
        relational ``features``: asking for one is an error when the loss reads it
        (:meth:`StudentOutput.feature`)."""
        h = self.states(input_ids, attention_mask, inputs_embeds)
        return StudentOutput(logits=self.classifier(h), hidden_states=(h,))

    def inference_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits only: what ``predict``, ``evaluate`` and the benchmark run."""
        return self.classifier(self.states(input_ids, attention_mask))

    def export_module(self) -> nn.Module:
        """The ONNX-exportable inference forward (see :class:`MaskedBiLSTM`)."""
        return ExportableBiLSTM(self)

    def pool(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(B, T, 2H)`` states -> ``(B, T, 2H)`` (``none``) or ``(B, 2H)`` (``max``: max over real
        positions; ``mean``: their average, whose scale does not grow with the length as a maximum's
        does; ``attention``: softmax-weighted sum over real positions)."""
        if self.pooling == "none":
            return h
        pad = ~attention_mask.bool().unsqueeze(-1)
        if self.pooling == "max":
            return h.masked_fill(pad, -1e4).max(1).values
        if self.pooling == "mean":
            real = (~pad).to(h.dtype)
            return (h * real).sum(1) / real.sum(1).clamp(min=1)
        scores = self.attention(h).masked_fill(pad, -1e4)
        return (torch.softmax(scores, dim=1) * h).sum(1)

    def body_groups(self) -> list[str]:
        return ["encoder", "embeddings"]

    def head_groups(self, feature: str) -> list[str]:
        """``logits``: the classifier and the pooling that feeds it; ``hidden_states``: the pooling."""
        return ["classifier", "pooling"] if feature == "logits" else ["pooling"]

    def group_parameters(self, group: str) -> list[nn.Parameter]:
        if group == "pooling":
            return list(self.attention.parameters()) if self.attention is not None else []
        if group not in ("classifier", "encoder", "embeddings"):
            raise KeyError(f"unknown layer group {group!r}")
        return list(getattr(self, group).parameters())

    def output_size(self, feature: Feature) -> int:
        """C for ``logits``, 2H (both directions) for ``hidden_states``."""
        return self.config["num_labels"] if feature.name == "logits" else 2 * self.config["hidden_size"]

    def known_input_ids(self) -> np.ndarray:
        """Teacher ids whose ``vocab_map`` entry is not 0 (padding) or 1 (unknown)."""
        return np.flatnonzero(self.vocab_map.cpu().numpy() > UNK).astype(np.int64)

    def describe(self) -> dict:
        c = self.config
        init = {"svd": "SVD of the teacher's input embeddings"}.get(c.get("embedding_init", ""), c.get("embedding_init"))
        return {"name": "BiLSTM", "architecture": "BiLSTM (XtremeDistil)", "kind": self.kind,
                "summary": f"E={c['embedding_dim']} H={c['hidden_size']}", "embedding_dim": c["embedding_dim"],
                "hidden_size": c["hidden_size"], "pooling": self.pooling, "vocabulary": c["student_vocab_size"],
                "embedding_init": init}


class MaskedBiLSTM(nn.Module):
    """A one-layer bidirectional LSTM over right-padded batches without ``pack_padded_sequence``: the
    student's encoder on CPUs (training and inference) and in the ONNX export.

    ``forward(x, lengths)``: ``x`` ``(B, T, E)``, ``lengths`` ``(B,)`` -> ``(B, T, 2H)``. The forward
    direction runs over the padded rows unchanged (padding comes after the real tokens, so it
    cannot reach them); the backward direction reads each row reversed *within its length*
    (position ``t < L`` takes ``x[L - 1 - t]``), runs forwards, and is reversed back. On the real
    positions this equals ``nn.LSTM(bidirectional=True)`` over a packed batch; positions ``>= L``
    hold values that callers must mask. Everything is tensor ops (``gather``, ``where``), so
    ``torch.onnx.export`` emits two ONNX ``LSTM`` nodes with dynamic ``B`` and ``T``. On CPUs it is
    also the faster way to train: each direction runs PyTorch's whole-sequence LSTM kernel, where a
    packed batch runs one time step at a time. Forward and backward of a 35,000 x 50 embedding, this
    encoder (H=200) and a 192-wide projection, one thread, rows of T-5..T tokens: 60 ms against 113
    (B=64, T=30) and 25 against 59 (B=32), equal to 1e-7 in states and 1e-6 in gradients.

    The two directions share the parameters of ``lstm`` (``weight_*_l0`` and ``weight_*_l0_reverse``).

    Raises:
        ValueError: ``lstm`` is not a one-layer, bidirectional, batch-first LSTM.
    """

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        if lstm.num_layers != 1 or not lstm.bidirectional or not lstm.batch_first:
            raise ValueError("MaskedBiLSTM needs a one-layer, bidirectional, batch-first nn.LSTM")
        # on the meta device: no weights of their own are allocated or drawn (the random state is untouched)
        self.fwd = nn.LSTM(lstm.input_size, lstm.hidden_size, batch_first=True, bias=lstm.bias, device="meta")
        self.bwd = nn.LSTM(lstm.input_size, lstm.hidden_size, batch_first=True, bias=lstm.bias, device="meta")
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
