"""Adversarial examples for zero-shot distillation (MATE-KD: Rashid, Lioutas, Ghaddar & Rezagholizadeh,
ACL 2021, arXiv 2105.05912, sec. 3, Algorithm 1; in the zero-shot setting of Rashid et al., EMNLP 2021,
arXiv 2012.15495, sec. 3).

A masked-language-model generator rewrites a fraction of the tokens of an out-of-domain row: the
chosen positions are replaced by ``[MASK]``, the generator's logits over its replacement vocabulary
(the tokens of the OOD text, which the student's pruned vocabulary keeps; its ``top_k`` most likely
per position) are turned into one-hot tokens by a straight-through Gumbel-softmax (Jang, Gu & Poole 2017; forward one-hot, backward the
softmax's gradient), and the one-hot tokens, times each model's word-embedding rows, are fed to the
teacher and the student as input embeddings. Rounds alternate:

- **generator**: ``generator_steps`` Adam updates that *ascend* the divergence KL(teacher || student)
  of the two models' softmax outputs (per token for NER, MATE-KD eq. 3), the gradient reaching the
  generator through both models;
- **student**: the next ``student_steps`` updates of the distillation loop add the stage's logit loss
  on perturbed rows (generator samples as hard tokens, the teacher run live on them, its outputs
  cannot be cached) to its loss on the original rows (MATE-KD eq. 4).

:class:`AdversarialExamples` is a loop plugin (:mod:`xdistill.distill.hooks`): active in stages that
match the student's logits to the teacher's, it carries the generator and its optimizer across
checkpoints so that ``--resume`` continues exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..adapters import OutputLevel
from ..teachers import Teacher
from ..teachers.mlm import mlm_head
from .hooks import DistillPlugin
from .losses import kl_div_loss
from .optim import adam


def choose_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor, special_ids: torch.Tensor,
                     fraction: float) -> torch.Tensor:
    """``(B, T)`` bool: each real, non-special token chosen with probability ``fraction`` (torch's global
    generator), at least one per row that has a real token."""
    candidates = attention_mask.bool() & ~torch.isin(input_ids, special_ids)
    chosen = candidates & (torch.rand(input_ids.shape, device=input_ids.device) < fraction)
    empty = candidates.any(1) & ~chosen.any(1)
    if bool(empty.any()):  # rows where the draw chose nothing get their first candidate
        first = candidates.float().argmax(1)
        chosen[empty.nonzero(as_tuple=True)[0], first[empty]] = True
    return chosen


def straight_through_one_hot(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``(M, V)`` logits -> ``(M, V)`` one-hot samples whose gradient is that of the Gumbel-softmax at
    ``temperature`` (``torch.nn.functional.gumbel_softmax(hard=True)``; Jang et al. 2017, sec. 2.2)."""
    return F.gumbel_softmax(logits.float(), tau=temperature, hard=True)


def masked_logits(generator: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  positions: torch.Tensor, vocab_ids: torch.Tensor) -> torch.Tensor:
    """The generator's logits at the chosen positions over the replacement vocabulary: ``(M, V_g)`` for
    ``M = positions.sum()`` and ``V_g = len(vocab_ids)``. The output head runs on the ``M`` positions
    only where the model family's head is known (:func:`~xdistill.teachers.mlm.mlm_head`)."""
    head = mlm_head(generator)
    if head is not None:
        encoder = getattr(generator, generator.base_model_prefix)
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = head(hidden[positions])
    else:
        logits = generator(input_ids=input_ids, attention_mask=attention_mask).logits[positions]
    return logits[:, vocab_ids]


def top_candidates(logits: torch.Tensor, vocab_ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The generator's ``k`` most likely replacements per position: ``(M, V_g)`` logits -> their logits
    ``(M, k)`` and teacher token ids ``(M, k)``. Sampling among them (top-k sampling, Fan et al. 2018)
    instead of all ``V_g`` keeps the Gumbel noise small: ``M x V_g`` random numbers cost more than the
    three models' forward passes on a CPU."""
    values, index = logits.topk(min(k, logits.size(-1)), dim=-1)
    return values, vocab_ids[index]


def mix_embeddings(base: torch.Tensor, positions: torch.Tensor, one_hot: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``base`` ``(B, T, E)`` with the chosen positions ``(B, T)`` replaced by the one-hot mixture of their
    candidates' embeddings: ``one_hot`` ``(M, k)`` times ``rows`` ``(M, k, E)`` (each position's ``k``
    candidate rows); differentiable in ``one_hot``."""
    out = base.clone()
    out[positions] = torch.einsum("mk,mke->me", one_hot.to(rows.dtype), rows)
    return out


@dataclass
class AdversarialOptions:
    """The MATE-KD settings (``--mask-fraction``, ``--generator-steps``, ``--student-steps``,
    ``--adversarial-lr``, ``--adversarial-batch-size``, ``--adversarial-weight``, ``--gumbel-temperature``,
    ``--temperature`` of the divergence, and the ``top_k`` candidates per position sampled from)."""

    mask_fraction: float = 0.3
    generator_steps: int = 10
    student_steps: int = 100
    lr: float = 1e-4
    batch_size: int = 16
    weight: float = 1.0
    gumbel_temperature: float = 1.0
    temperature: float = 1.0
    top_k: int = 64


class AdversarialExamples(DistillPlugin):
    """Adds MATE-KD's adversarial rounds to the stages that distil logits (see the module docstring).

    Args:
        teacher: the teacher (run live on perturbed rows, and differentiated through by the generator).
        generator: an ``AutoModelForMaskedLM`` with the teacher's vocabulary (trained here: its weights change).
        vocab_ids: ``(V_g,)`` teacher token ids the generator may write (the student's vocabulary).
        mask_id: the ``[MASK]`` id; special_ids: token ids never replaced.
        level: the task's output level (which outputs the divergence covers).
        options: :class:`AdversarialOptions`.

    Attributes:
        stats: generator updates, the divergence of each generator round (first and last update),
            perturbed batches, and seconds spent in generator rounds and on perturbed rows.
    """

    def __init__(self, teacher: Teacher, generator: torch.nn.Module, vocab_ids: torch.Tensor, mask_id: int,
                 special_ids: Sequence[int], level: OutputLevel, options: AdversarialOptions):
        self.teacher = teacher
        self.generator = generator.eval()  # no dropout: its samples move only with its updates
        self.vocab_ids = torch.as_tensor(vocab_ids, dtype=torch.long)
        self.mask_id = int(mask_id)
        self.special_ids = torch.as_tensor(sorted(set(int(i) for i in special_ids)), dtype=torch.long)
        self.level = level
        self.opt = options
        self.params = [p for p in generator.parameters() if p.requires_grad]
        self.optimizer = adam(self.params, lr=options.lr)
        self.student_updates = 0
        self.stats = {"generator_updates": 0, "rounds": [], "perturbed_batches": 0, "generator_seconds": 0.0,
                      "perturbed_seconds": 0.0}

    # -- which stages ---------------------------------------------------------------------------
    @staticmethod
    def logits_match(step):
        """The match of ``step``'s stage that distils the teacher's logits, or ``None`` (not active)."""
        return next((m for m in step.stage.matches if m.from_teacher and m.target == "logits"), None)

    def _rows(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``batch_size`` rows of a (shuffled) batch, cut to their longest real length."""
        ids, mask = batch["input_ids"][: self.opt.batch_size], batch["attention_mask"][: self.opt.batch_size]
        width = int(mask.sum(1).max())
        return ids[:, :width], mask[:, :width]

    def _divergence(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                    detach_teacher: bool = True) -> torch.Tensor:
        return kl_div_loss(student_logits, teacher_logits, self.level.distill_mask(mask), self.opt.temperature,
                           detach_teacher=detach_teacher)

    def propose(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The positions to replace ``(B, T)`` bool, and per chosen position the generator's top-k
        candidates: their logits ``(M, k)`` and teacher token ids ``(M, k)``."""
        pos = choose_positions(ids, mask, self.special_ids.to(ids.device), self.opt.mask_fraction)
        vocab = self.vocab_ids.to(ids.device)
        logits = masked_logits(self.generator, ids.masked_fill(pos, self.mask_id), mask, pos, vocab)
        return (pos, *top_candidates(logits, vocab, self.opt.top_k))

    # -- the generator's round ------------------------------------------------------------------
    def generator_update(self, student, ids: torch.Tensor, mask: torch.Tensor) -> float:
        """One generator update that ascends KL(teacher || student) on perturbed ``ids``; returns the
        divergence before the update."""
        pos, values, candidates = self.propose(ids, mask)
        one_hot = straight_through_one_hot(values, self.opt.gumbel_temperature)
        t_in = mix_embeddings(self.teacher.embed(ids).detach(), pos, one_hot, self.teacher.embed(candidates).detach())
        s_in = mix_embeddings(student.embed(ids).detach(), pos, one_hot, student.embed(candidates).detach())
        t_logits = self.teacher.logits_from_embeddings(t_in, mask)
        s_logits = student(ids, mask, inputs_embeds=s_in).logits
        divergence = self._divergence(s_logits, t_logits, mask, detach_teacher=False)
        grads = torch.autograd.grad(-divergence, self.params, allow_unused=True)
        for p, g in zip(self.params, grads):
            p.grad = g
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.stats["generator_updates"] += 1
        return float(divergence.detach())

    def generator_round(self, student, batch: dict[str, torch.Tensor]) -> None:
        """``generator_steps`` updates on the batch's first rows, each with new positions and samples."""
        t0 = time.perf_counter()
        ids, mask = self._rows(batch)
        values = [self.generator_update(student, ids, mask) for _ in range(self.opt.generator_steps)]
        self.stats["rounds"].append([round(values[0], 5), round(values[-1], 5)])
        self.stats["generator_seconds"] += time.perf_counter() - t0

    # -- the student's loss on perturbed rows ------------------------------------------------------
    @torch.no_grad()
    def perturb(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``ids`` ``(B, T)`` with ``mask_fraction`` of the real tokens replaced by generator samples."""
        pos, values, candidates = self.propose(ids, mask)
        choice = straight_through_one_hot(values, self.opt.gumbel_temperature).argmax(-1, keepdim=True)
        out = ids.clone()
        out[pos] = candidates.gather(1, choice).squeeze(1)
        return out

    def batch_loss(self, distiller, step, batch, rows, loss):
        """``loss`` plus ``weight`` times the stage's logit loss on perturbed rows (a generator round first
        every ``student_steps`` student updates)."""
        match = self.logits_match(step)
        if match is None:
            return loss
        student = distiller.student
        if self.student_updates % self.opt.student_steps == 0:
            self.generator_round(student, batch)
        self.student_updates += 1
        t0 = time.perf_counter()
        ids, mask = self._rows(batch)
        perturbed = self.perturb(ids, mask)
        with torch.no_grad():
            target = self.teacher.model(input_ids=perturbed, attention_mask=mask).logits
        out = student(perturbed, mask).logits
        extra = match.loss_value(out, target.float(), self.level.distill_mask(mask))
        self.stats["perturbed_batches"] += 1
        self.stats["perturbed_seconds"] += time.perf_counter() - t0
        return loss + self.opt.weight * extra

    # -- checkpoints --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"generator": self.generator.state_dict(), "optimizer": self.optimizer.state_dict(),
                "student_updates": self.student_updates, "stats": self.stats}

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.student_updates = int(state["student_updates"])
        self.stats = state["stats"]
