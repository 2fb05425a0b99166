"""Generation-distillation (Melas-Kyriazi, Han and Celi 2019): a language model writes new transfer text.

A causal language model (any ``AutoModelForCausalLM`` by hub id or local path;
with no weights, a small GPT-2 trained from scratch with the task tokenizer) is
fine-tuned on the task's text, then samples new texts with nucleus sampling
from prompts (openings of training texts, or BOS alone). The samples are
filtered (length bounds; exact and near duplicates of each other and of the
evaluation split) and cached on disk; the teacher then labels them like any
transfer text.

A scratch generator works over the task tokenizer's vocabulary pruned to the
tokens of its training text (the mBERT vocabulary has 119,547 entries; an
output layer that size would dominate CPU time); the mapping back to the task
tokenizer's ids is stored with it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from transformers import (AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, Trainer,
                          TrainingArguments)

from ..config import GenerationArguments
from ..errors import ConfigError
from ..teachers.training import pin_memory, quiet
from ..utils import atomic_write_json, progress

logger = logging.getLogger(__name__)


@dataclass
class GenerationReport:
    """What the report says about generation."""

    generator: str
    trained_from_scratch: bool
    train_texts: int
    sampled: int
    kept: int
    removed_length: int
    removed_duplicate: int
    removed_near_duplicate: int
    removed_eval_overlap: int
    mean_words: float
    seconds_training: float
    seconds_sampling: float
    samples: list


def shingles(text: str, n: int = 3) -> set:
    """Set of lowercase word ``n``-grams (the whole text when shorter)."""
    w = text.lower().split()
    return {" ".join(w[i:i + n]) for i in range(max(1, len(w) - n + 1))}


def near_duplicate_mask(candidates: Sequence[str], references: Sequence[str], threshold: float,
                        chunk: int = 256) -> np.ndarray:
    """``mask[i]`` is True when candidate ``i`` has Jaccard similarity >= ``threshold`` (word 3-gram sets)
    with some reference text. Sparse binary shingle matrices (scikit-learn), compared in chunks."""
    from sklearn.feature_extraction.text import HashingVectorizer  # deferred: scikit-learn takes 2-3 s to import

    if not len(candidates) or not len(references):
        return np.zeros(len(candidates), dtype=bool)
    # the same shingle sets as :func:`shingles` (a text shorter than 3 words is one shingle)
    vec = HashingVectorizer(analyzer=lambda t: list(shingles(t)), binary=True, norm=None, alternate_sign=False,
                            n_features=2 ** 22)
    cand = vec.transform(candidates).tocsr()
    ref = vec.transform(references).tocsr()
    cand.data[:] = 1
    ref.data[:] = 1
    c_size = np.asarray(cand.sum(1)).ravel()
    r_size = np.asarray(ref.sum(1)).ravel()
    out = np.zeros(len(candidates), dtype=bool)
    ref_t = ref.T.tocsc()
    for a in range(0, cand.shape[0], chunk):
        inter = (cand[a:a + chunk] @ ref_t).tocoo()
        if inter.nnz == 0:
            continue
        union = c_size[a + inter.row] + r_size[inter.col] - inter.data
        jac = inter.data / np.maximum(union, 1)
        hit = inter.row[jac >= threshold]
        out[a + np.unique(hit)] = True
    return out


def filter_generated(texts: Sequence[str], eval_texts: Sequence[str], args: GenerationArguments) -> tuple[list[str], dict]:
    """Apply the length bounds, then drop exact duplicates, near duplicates of earlier kept texts and
    near duplicates of the evaluation split. Returns ``(kept, counts of removals)``."""
    counts = {"removed_length": 0, "removed_duplicate": 0, "removed_near_duplicate": 0, "removed_eval_overlap": 0}
    stage1, seen = [], set()
    for t in texts:
        n = len(t.split())
        if n < args.min_words or n > args.max_words:
            counts["removed_length"] += 1
            continue
        key = " ".join(t.lower().split())
        if key in seen:
            counts["removed_duplicate"] += 1
            continue
        seen.add(key)
        stage1.append(t)
    overlap = near_duplicate_mask(stage1, list(eval_texts), args.near_duplicate)
    counts["removed_eval_overlap"] = int(overlap.sum())
    stage2 = [t for t, o in zip(stage1, overlap) if not o]
    kept: list[str] = []
    kept_sh: list[set] = []
    # near duplicates among the samples: compare each text with the kept ones sharing a shingle
    index: dict[str, list[int]] = {}
    for t in stage2:
        sh = shingles(t)
        cands = {j for s in sh for j in index.get(s, ())}
        if any(len(sh & kept_sh[j]) / max(1, len(sh | kept_sh[j])) >= args.near_duplicate for j in cands):
            counts["removed_near_duplicate"] += 1
            continue
        for s in sh:
            index.setdefault(s, []).append(len(kept))
        kept.append(t)
        kept_sh.append(sh)
    return kept, counts


class _Texts(torch.utils.data.Dataset):
    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return {"input_ids": self.rows[i]}


class _Collator:
    """Right-pads generator rows with ``pad``; the loss ignores padding (labels -100)."""

    def __init__(self, pad: int):
        self.pad = pad

    def __call__(self, batch):
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad, dtype=torch.long)
        att = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            ids[i, : len(b["input_ids"])] = torch.as_tensor(b["input_ids"])
            att[i, : len(b["input_ids"])] = 1
        labels = ids.masked_fill(att == 0, -100)
        return {"input_ids": ids, "attention_mask": att, "labels": labels}


@dataclass
class _Generator:
    """A causal LM ready to train on ``rows`` (token ids with BOS/EOS) and the way back to text."""

    model: object
    rows: list
    pad: int
    decode: object      # generator ids -> text
    scratch: bool


def _scratch_generator(args: GenerationArguments, tokenizer, train_texts: Sequence[str]) -> _Generator:
    """A small GPT-2 over the task tokenizer's vocabulary pruned to the tokens of ``train_texts``."""
    ids = tokenizer(list(train_texts), add_special_tokens=False, truncation=True,
                    max_length=args.generator_max_length - 2)["input_ids"]
    bos, eos = tokenizer.cls_token_id, tokenizer.sep_token_id
    seen = sorted({i for x in ids for i in x} | {bos, eos, tokenizer.pad_token_id, tokenizer.unk_token_id})
    to_gen = {t: i for i, t in enumerate(seen)}
    from_gen = np.asarray(seen)
    rows = [[to_gen[bos], *(to_gen[i] for i in x), to_gen[eos]] for x in ids]
    cfg = GPT2Config(vocab_size=len(seen), n_positions=max(args.generator_max_length, 32), n_embd=args.generator_hidden_size,
                     n_layer=args.generator_layers, n_head=args.generator_heads, bos_token_id=to_gen[bos],
                     eos_token_id=to_gen[eos], pad_token_id=to_gen[tokenizer.pad_token_id])
    model = GPT2LMHeadModel(cfg)
    logger.info("generator: GPT-2 trained from scratch (%d layers, hidden %d) over %d task-tokenizer tokens",
                args.generator_layers, args.generator_hidden_size, len(seen))

    def decode(row):
        return tokenizer.decode([int(from_gen[x]) for x in row], skip_special_tokens=True)

    return _Generator(model, rows, to_gen[tokenizer.pad_token_id], decode, True)


def _pretrained_generator(args: GenerationArguments, train_texts: Sequence[str]) -> _Generator:
    """``--generator``: any ``AutoModelForCausalLM`` with its own tokenizer.

    Raises:
        ConfigError: it cannot be loaded.
    """
    try:
        gen_tok = AutoTokenizer.from_pretrained(args.generator)
        model = AutoModelForCausalLM.from_pretrained(args.generator)
    except Exception as e:  # transformers raises OSError, ValueError or its own types
        raise ConfigError(f"--generator: could not load {args.generator!r} (hub id or local directory): {e}") from e
    if gen_tok.pad_token is None:
        gen_tok.pad_token = gen_tok.eos_token
    enc = gen_tok(list(train_texts), truncation=True, max_length=args.generator_max_length - 1)["input_ids"]
    bos = gen_tok.bos_token_id if gen_tok.bos_token_id is not None else gen_tok.eos_token_id
    rows = [[bos, *x, gen_tok.eos_token_id] for x in enc]
    logger.info("generator: fine-tuning %s", args.generator)

    def decode(row):
        return gen_tok.decode(row, skip_special_tokens=True)

    return _Generator(model, rows, gen_tok.pad_token_id, decode, False)


def _train(gen: _Generator, args: GenerationArguments, out_dir: Path, seed: int) -> None:
    """Causal-LM training with ``transformers.Trainer`` (length-grouped batches of 16)."""
    targs = TrainingArguments(output_dir=str(Path(out_dir) / "checkpoints" / "generator"), num_train_epochs=args.generator_epochs,
                              learning_rate=args.generator_lr, per_device_train_batch_size=16, warmup_steps=0.05,
                              weight_decay=0.01, save_strategy="no", logging_steps=50, report_to=[], seed=seed,
                              disable_tqdm=True, train_sampling_strategy="group_by_length",
                              dataloader_pin_memory=pin_memory())
    quiet(Trainer(model=gen.model, args=targs, train_dataset=_Texts(gen.rows), data_collator=_Collator(gen.pad)),
          "generator").train()


@torch.no_grad()
def _sample(gen: _Generator, args: GenerationArguments, rng: random.Random) -> list[str]:
    """Nucleus (top-p) sampling with temperature; prompts are training openings (BOS and the first
    ``prompt_words`` subwords) or BOS alone; left-padded batches of 64."""
    model = gen.model
    model.eval()
    device = next(model.parameters()).device
    prompts = []
    for _ in range(args.generate):
        if args.prompt == "train":
            r = gen.rows[rng.randrange(len(gen.rows))]
            prompts.append(r[: 1 + args.prompt_words])
        else:
            prompts.append(gen.rows[0][:1])
    texts: list[str] = []
    batch = 64
    for a in progress(range(0, len(prompts), batch), "generator samples (batches of 64)", log=logger):
        chunk = prompts[a:a + batch]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), gen.pad, dtype=torch.long)
        att = torch.zeros_like(ids)
        for i, p in enumerate(chunk):  # left padding for generation
            ids[i, width - len(p):] = torch.as_tensor(p)
            att[i, width - len(p):] = 1
        out = model.generate(input_ids=ids.to(device), attention_mask=att.to(device), do_sample=True,
                             top_p=args.top_p, temperature=args.temperature_sampling,
                             max_length=args.generator_max_length, pad_token_id=gen.pad,
                             eos_token_id=model.config.eos_token_id)
        for row in out.cpu().numpy():
            row = row[width:] if args.prompt == "bos" else row
            texts.append(gen.decode([int(x) for x in row if x != gen.pad]))
    return texts


def _cache_key(args: GenerationArguments, seed: int, train_texts: Sequence[str], eval_texts: Sequence[str]) -> str:
    h = hashlib.sha256(json.dumps({"args": asdict(args), "seed": seed}, sort_keys=True).encode())
    for t in train_texts:
        h.update(t.encode())
    h.update(str(len(eval_texts)).encode())
    for t in eval_texts[:: max(1, len(eval_texts) // 200)]:
        h.update(t.encode())
    return h.hexdigest()[:16]


def generate_transfer_text(args: GenerationArguments, tokenizer, train_texts: Sequence[str], eval_texts: Sequence[str],
                           out_dir: Path, seed: int) -> tuple[list[str], GenerationReport]:
    """Fine-tune (or train from scratch) the generator, sample, filter; cached in ``out_dir/generated``.

    The cache key hashes the generation settings, the training texts and the
    evaluation texts, so a change in any of them samples anew.

    Raises:
        ConfigError: ``--generator`` cannot be loaded.
    """
    n_train = len(train_texts) if args.generator_train_texts < 0 else min(args.generator_train_texts, len(train_texts))
    train_texts = list(train_texts[:n_train])
    cache = Path(out_dir) / "generated" / _cache_key(args, seed, train_texts, eval_texts)
    if (cache / "report.json").is_file():
        rep = GenerationReport(**json.loads((cache / "report.json").read_text()))
        texts = json.loads((cache / "texts.json").read_text())
        logger.info("generated transfer text read from cache %s (%d texts)", cache, len(texts))
        return texts, rep

    torch.manual_seed(seed)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    gen = _scratch_generator(args, tokenizer, train_texts) if args.generator is None else _pretrained_generator(args, train_texts)
    _train(gen, args, out_dir, seed)
    t_train = time.perf_counter() - t0
    t1 = time.perf_counter()
    texts = _sample(gen, args, rng)
    t_sample = time.perf_counter() - t1
    kept, counts = filter_generated(texts, eval_texts, args)
    rep = GenerationReport(
        generator=args.generator or "GPT-2 trained from scratch", trained_from_scratch=gen.scratch, train_texts=len(gen.rows),
        sampled=len(texts), kept=len(kept), mean_words=float(np.mean([len(t.split()) for t in kept])) if kept else 0.0,
        seconds_training=round(t_train, 1), seconds_sampling=round(t_sample, 1), samples=kept[:5], **counts)
    logger.info("generation: sampled %d, kept %d (length %d, duplicates %d, near duplicates %d, eval overlap %d)",
                rep.sampled, rep.kept, rep.removed_length, rep.removed_duplicate, rep.removed_near_duplicate,
                rep.removed_eval_overlap)
    tmp = cache.with_name(cache.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    atomic_write_json(tmp / "texts.json", kept)
    atomic_write_json(tmp / "report.json", asdict(rep))
    shutil.rmtree(cache, ignore_errors=True)
    tmp.rename(cache)
    return kept, rep
