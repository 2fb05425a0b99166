"""Generation-distillation (Melas-Kyriazi, Han and Liang 2019, arXiv 2002.00733): a language model
writes new transfer text.

A causal language model (any ``AutoModelForCausalLM`` by hub id or local path; with no weights, a
small GPT-2 trained from scratch with the task tokenizer) is fine-tuned on the task's text of every
group (language) at once, each text prefixed by its group's tag when the task has groups, then
samples texts per group with nucleus sampling from prompts (the tag and the opening of one of the
group's training texts, or the tag alone). The trained generator and its samples are cached on disk
(``OUTPUT/generated/KEY/``): a change of sampling options samples anew from the cached generator,
a change of the filters (:mod:`xdistill.transfer.filters`) only filters again.

A scratch generator works over the task tokenizer's vocabulary pruned to the tokens of its training
text (the mBERT vocabulary has 119,547 entries; an output layer that size would dominate CPU time)
plus one id per group tag; the mapping back to the task tokenizer's ids is stored with it. A hub
generator gets its group tags as added special tokens (``<xdistill:de>``), its embeddings resized.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from transformers import (AutoConfig, AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, Trainer,
                          TrainingArguments)

from ..config import GenerationOptions
from ..errors import ConfigError
from ..teachers.training import pin_memory, quiet
from ..utils import atomic_write_json, progress, publish_folder

logger = logging.getLogger(__name__)

#: the generator options that change its weights (the others only change sampling or filtering)
TRAINING_OPTIONS = ("generator", "generator_layers", "generator_hidden_size", "generator_heads", "generator_epochs",
                    "generator_lr", "generator_max_length", "generator_train_texts")
SAMPLING_OPTIONS = ("top_p", "temperature_sampling", "prompt", "prompt_words", "generator_max_length")


#: texts (spread over the groups) the generator's perplexity is measured on, of its samples and of held-out text
PERPLEXITY_TEXTS = 500


def group_tag(group: str) -> str:
    """The prompt token of a group (language): ``<xdistill:de>``."""
    return f"<xdistill:{group}>"


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
class Generator:
    """A causal LM over its own ids and the way to and from text.

    Attributes:
        model: the ``PreTrainedModel`` (GPT-2 from scratch, or the ``--generator`` checkpoint).
        tokenizer: the generator's tokenizer (``None`` for a scratch generator, which uses ``task_tokenizer``).
        bos, eos, pad: its special ids; ``tags``: group -> tag id (empty without groups).
        vocab: scratch generator: ``(V,)`` task-tokenizer id of each generator id (tags excluded).
        scratch: trained from scratch here.
    """

    model: object
    tokenizer: object
    task_tokenizer: object
    bos: int
    eos: int
    pad: int
    tags: dict = field(default_factory=dict)
    vocab: np.ndarray | None = None
    scratch: bool = True

    def encode(self, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
        """Generator ids of each text, at most ``max_tokens``, without BOS, tag or EOS."""
        if self.vocab is None:
            return self.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_tokens)["input_ids"]
        to_gen = {int(t): i for i, t in enumerate(self.vocab)}
        unk = to_gen[self.task_tokenizer.unk_token_id]
        ids = self.task_tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_tokens)["input_ids"]
        return [[to_gen.get(i, unk) for i in x] for x in ids]

    def rows(self, texts: Sequence[str], group: str | None, max_length: int) -> list[list[int]]:
        """Training rows ``[BOS, tag, ids..., EOS]`` (no tag without groups), at most ``max_length``."""
        head = [self.bos] + ([self.tags[group]] if self.tags else [])
        return [[*head, *x, self.eos] for x in self.encode(texts, max_length - len(head) - 1)]

    def decode(self, row: Sequence[int]) -> str:
        """Text of generator ids; special ids and tags are dropped."""
        if self.vocab is None:
            return self.tokenizer.decode(list(row), skip_special_tokens=True)
        ids = [int(self.vocab[x]) for x in row if x < len(self.vocab)]
        return self.task_tokenizer.decode(ids, skip_special_tokens=True)

    def save(self, path: Path) -> None:
        """The model (and tokenizer, or the vocabulary map) under ``path`` (written complete or not at all)."""
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(tmp)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(tmp)
        if self.vocab is not None:
            np.save(tmp / "vocab.npy", self.vocab)
        atomic_write_json(tmp / "xdistill_generator.json", {"bos": self.bos, "eos": self.eos, "pad": self.pad,
                                                           "tags": self.tags, "scratch": self.scratch})
        publish_folder(tmp, path)

    @classmethod
    def load(cls, path: Path, task_tokenizer) -> "Generator":
        """A generator :meth:`save` wrote."""
        meta = json.loads((path / "xdistill_generator.json").read_text())
        vocab = np.load(path / "vocab.npy") if (path / "vocab.npy").is_file() else None
        tok = None if vocab is not None else AutoTokenizer.from_pretrained(path)
        return cls(AutoModelForCausalLM.from_pretrained(path), tok, task_tokenizer, meta["bos"], meta["eos"],
                   meta["pad"], meta["tags"], vocab, meta["scratch"])


def check_generator(args: GenerationOptions) -> None:
    """Before anything slow runs: ``--generator`` (when given) must name a loadable causal-LM
    configuration (a hub id, or a local folder with ``config.json``).

    Raises:
        ConfigError: it cannot be loaded (names ``--generator``).
    """
    if args.generator is None:
        return
    try:
        AutoConfig.from_pretrained(args.generator)
    except Exception as e:  # transformers raises OSError, ValueError or its own types
        raise ConfigError(f"--generator: could not load {args.generator!r} (hub id or local directory with a causal "
                          f"language model): {e}") from e


def scratch_generator(args: GenerationOptions, tokenizer, texts: dict[str, list[str]], tagged: bool) -> Generator:
    """A small GPT-2 over the task tokenizer's vocabulary pruned to the tokens of ``texts`` (per group),
    plus one id per group tag when ``tagged``."""
    flat = [t for v in texts.values() for t in v]
    ids = tokenizer(flat, add_special_tokens=False, truncation=True, max_length=args.generator_max_length)["input_ids"]
    specials = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id}
    vocab = np.asarray(sorted({i for x in ids for i in x} | specials))
    to_gen = {int(t): i for i, t in enumerate(vocab)}
    tags = {g: len(vocab) + k for k, g in enumerate(texts)} if tagged else {}
    cfg = GPT2Config(vocab_size=len(vocab) + len(tags), n_positions=max(args.generator_max_length, 32),
                     n_embd=args.generator_hidden_size, n_layer=args.generator_layers, n_head=args.generator_heads,
                     bos_token_id=to_gen[tokenizer.cls_token_id], eos_token_id=to_gen[tokenizer.sep_token_id],
                     pad_token_id=to_gen[tokenizer.pad_token_id])
    logger.info("generator: GPT-2 trained from scratch (%d layers, hidden %d) over %d task-tokenizer tokens and %d group tags",
                args.generator_layers, args.generator_hidden_size, len(vocab), len(tags))
    return Generator(GPT2LMHeadModel(cfg), None, tokenizer, cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id,
                     tags, vocab, True)


def pretrained_generator(args: GenerationOptions, tokenizer, groups: Sequence[str], tagged: bool) -> Generator:
    """``--generator``: any ``AutoModelForCausalLM`` with its own tokenizer; group tags are added as
    special tokens (the embedding matrix grows by one row per group).

    Raises:
        ConfigError: it cannot be loaded, or its tokenizer has neither a BOS nor an EOS token to prompt with.
    """
    try:
        gen_tok = AutoTokenizer.from_pretrained(args.generator)
        model = AutoModelForCausalLM.from_pretrained(args.generator)
    except Exception as e:  # transformers raises OSError, ValueError or its own types
        raise ConfigError(f"--generator: could not load {args.generator!r} (hub id or local directory): {e}") from e
    bos = gen_tok.bos_token_id if gen_tok.bos_token_id is not None else gen_tok.eos_token_id
    if bos is None:
        raise ConfigError(f"--generator: the tokenizer of {args.generator!r} has neither a BOS nor an EOS token to "
                          "prompt with; give a causal LM whose tokenizer defines one")
    if gen_tok.pad_token is None:
        gen_tok.pad_token = gen_tok.eos_token or gen_tok.bos_token
    tags = {}
    if tagged:
        gen_tok.add_special_tokens({"additional_special_tokens": [group_tag(g) for g in groups]})
        model.resize_token_embeddings(len(gen_tok))
        tags = {g: gen_tok.convert_tokens_to_ids(group_tag(g)) for g in groups}
    logger.info("generator: fine-tuning %s%s", args.generator, f" with {len(tags)} group tags" if tags else "")
    eos = gen_tok.eos_token_id if gen_tok.eos_token_id is not None else bos
    return Generator(model, gen_tok, tokenizer, bos, eos, gen_tok.pad_token_id, tags, None, False)


def train_generator(gen: Generator, rows: list[list[int]], args: GenerationOptions, out_dir: Path, seed: int) -> None:
    """Causal-LM training with ``transformers.Trainer`` (length-grouped batches of 16)."""
    targs = TrainingArguments(output_dir=str(Path(out_dir) / "checkpoints" / "generator"), num_train_epochs=args.generator_epochs,
                              learning_rate=args.generator_lr, per_device_train_batch_size=16, warmup_steps=0.05,
                              weight_decay=0.01, save_strategy="no", logging_steps=50, report_to=[], seed=seed,
                              disable_tqdm=True, train_sampling_strategy="group_by_length",
                              dataloader_pin_memory=pin_memory())
    quiet(Trainer(model=gen.model, args=targs, train_dataset=_Texts(rows), data_collator=_Collator(gen.pad)),
          "generator").train()


def draw(logits: torch.Tensor, temperature: float, top_p: float, top_k: int = 50) -> torch.Tensor:
    """One token per row from ``(B, V)`` next-token logits: the ``top_k`` most likely, divided by
    ``temperature``, cut to the smallest prefix with probability mass ``top_p`` (nucleus sampling,
    Holtzman et al. 2020), then drawn. The distribution of ``transformers``' ``generate`` with its
    default ``top_k=50``; drawing among ``top_k`` ids instead of over the whole vocabulary is what
    makes it fast on a CPU (``torch.multinomial`` over 256 x 53,700 takes 0.3 s, over 256 x 50 under 1 ms).
    Returns ``(B,)`` ids."""
    v, i = torch.topk(logits.float(), min(top_k, logits.shape[-1]), dim=-1)
    probs = torch.softmax(v / temperature, dim=-1)
    before = probs.cumsum(-1) - probs  # mass of the more likely ids
    probs = probs.masked_fill(before >= top_p, 0.0)
    return i.gather(1, torch.multinomial(probs, 1)).squeeze(1)


def key_value_cache_argument(model: torch.nn.Module) -> str:
    """The name under which ``model.forward`` takes its key-value cache and its output returns it:
    ``cache`` since transformers 5.24, ``past_key_values`` before (deprecated in 5.24, removed in 5.40),
    so that sampling works with every transformers 5 release the package allows."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def sample(gen: Generator, prompts: list[list[int]], args: GenerationOptions, strip_prompt: bool,
           batch: int = 256) -> list[str]:
    """A text from each prompt: tokens drawn by :func:`draw` (``args.top_p``,
    ``args.temperature_sampling``) with the model's key-value cache until EOS or
    ``args.generator_max_length`` tokens. Prompts of equal length share a batch (no padding, so any
    causal LM's positions are right); the prompt is part of the text unless ``strip_prompt``."""
    model = gen.model
    model.eval()
    device = next(model.parameters()).device
    cache_kwarg = key_value_cache_argument(model)
    by_length: dict[int, list[int]] = {}
    for k, p in enumerate(prompts):
        by_length.setdefault(len(p), []).append(k)
    chunks = [(n, rows[a:a + batch]) for n, rows in sorted(by_length.items()) for a in range(0, len(rows), batch)]
    texts: list[str] = [""] * len(prompts)
    for n, rows in progress(chunks, f"generator samples (batches of up to {batch})", log=logger):
        ids = torch.as_tensor([prompts[k] for k in rows], device=device)
        out = model(input_ids=ids, use_cache=True)
        done = torch.zeros(len(rows), dtype=torch.bool, device=device)
        drawn = []
        for _ in range(args.generator_max_length - n):
            nxt = draw(out.logits[:, -1], args.temperature_sampling, args.top_p).masked_fill(done, gen.pad)
            drawn.append(nxt)
            done |= nxt == gen.eos
            if bool(done.all()):
                break
            out = model(input_ids=nxt[:, None], use_cache=True, **{cache_kwarg: out[cache_kwarg]})
        new = torch.stack(drawn, 1).cpu().tolist() if drawn else [[] for _ in rows]
        for k, tail in zip(rows, new):
            tail = tail[: tail.index(gen.eos)] if gen.eos in tail else tail
            texts[k] = gen.decode(tail if strip_prompt else [*prompts[k], *tail])
    return texts


@torch.no_grad()
def perplexity(gen: Generator, rows: list[list[int]], batch: int = 16) -> float:
    """The generator's perplexity on ``rows`` (exp of the mean next-token NLL over their real tokens)."""
    if not rows:
        return float("nan")
    gen.model.eval()
    device = next(gen.model.parameters()).device
    collate = _Collator(gen.pad)
    nll, n = 0.0, 0
    for a in range(0, len(rows), batch):
        b = collate([{"input_ids": r} for r in rows[a:a + batch]])
        logits = gen.model(input_ids=b["input_ids"].to(device), attention_mask=b["attention_mask"].to(device)).logits
        target = b["labels"][:, 1:].to(device)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), target.flatten(),
                                                 ignore_index=-100, reduction="sum")
        nll += float(loss)
        n += int((target != -100).sum())
    return math.exp(nll / max(1, n))


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique word ``n``-grams over all word ``n``-grams of ``texts``, percent."""
    grams = [tuple(w[i:i + n]) for t in texts for w in [t.split()] for i in range(len(w) - n + 1)]
    return round(100 * len(set(grams)) / max(1, len(grams)), 2)


def _key(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class GeneratedSamples:
    """What :func:`generate_samples` returns: raw samples per group (before the filters) and how
    they came about (for the report)."""

    texts: dict[str, list[str]]
    generator: str
    trained_from_scratch: bool
    train_texts: int
    seconds_training: float
    seconds_sampling: float
    cached: bool
    perplexity: dict


def _prompts(gen: Generator, rows: dict[str, list[list[int]]], args: GenerationOptions, per_group: int,
             seed: int) -> list[tuple[str, list[int]]]:
    rng = random.Random(seed)
    out = []
    head_len = 1 + (1 if gen.tags else 0)
    for g, rs in rows.items():
        for _ in range(per_group):
            r = rs[rng.randrange(len(rs))]
            out.append((g, r[: head_len + args.prompt_words] if args.prompt == "train" else r[:head_len]))
    return out


def generate_samples(args: GenerationOptions, tokenizer, train_texts: dict[str, list[str]],
                     held_out: dict[str, list[str]], per_group: int, tagged: bool, out_dir: Path,
                     seed: int) -> GeneratedSamples:
    """Train (or load from the cache) the generator on ``train_texts`` (per group, capped at
    ``args.generator_train_texts`` each) and sample ``per_group`` texts for every group (cached too).
    ``held_out`` texts (per group, never trained on) give the perplexity of real text beside the
    samples'.

    Raises:
        ConfigError: ``--generator`` cannot be loaded or prompted.
    """
    cap = args.generator_train_texts
    train_texts = {g: list(v if cap < 0 else v[:cap]) for g, v in train_texts.items() if v}
    if not train_texts:
        raise ConfigError("--augment generate: no training text for the generator in any group")
    gen_key = _key({"options": {k: getattr(args, k) for k in TRAINING_OPTIONS}, "seed": seed, "tagged": tagged,
                    "texts": {g: hashlib.sha256("\n".join(v).encode()).hexdigest() for g, v in train_texts.items()}})
    folder = Path(out_dir) / "generated" / gen_key
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rows: dict[str, list[list[int]]] = {}  # the training texts as generator rows, encoded once when needed

    def training_rows() -> dict[str, list[list[int]]]:
        if not rows:
            rows.update({g: gen.rows(v, g, args.generator_max_length) for g, v in train_texts.items()})
        return rows

    if (folder / "generator" / "xdistill_generator.json").is_file():
        gen = Generator.load(folder / "generator", tokenizer)
        logger.info("generator read from cache %s", folder / "generator")
        cached_model = True
    else:
        gen = (scratch_generator(args, tokenizer, train_texts, tagged) if args.generator is None
               else pretrained_generator(args, tokenizer, list(train_texts), tagged))
        train_generator(gen, [r for v in training_rows().values() for r in v], args, out_dir, seed)
        folder.mkdir(parents=True, exist_ok=True)
        gen.save(folder / "generator")
        cached_model = False
    t_train = time.perf_counter() - t0
    sample_file = folder / f"samples-{_key({k: getattr(args, k) for k in SAMPLING_OPTIONS} | {'n': per_group, 'seed': seed})}.json"
    t1 = time.perf_counter()
    if sample_file.is_file():
        texts = json.loads(sample_file.read_text())
        logger.info("generated samples read from cache %s", sample_file)
    else:
        prompts = _prompts(gen, training_rows(), args, per_group, seed)
        torch.manual_seed(seed)
        out = sample(gen, [p for _, p in prompts], args, strip_prompt=args.prompt == "bos")
        texts = {g: [] for g in train_texts}
        for (g, _), t in zip(prompts, out):
            texts[g].append(t)
        atomic_write_json(sample_file, texts)
    t_sample = time.perf_counter() - t1
    rng = random.Random(seed)
    per = max(1, PERPLEXITY_TEXTS // len(train_texts))  # the output layer spans the whole pruned vocabulary: keep it small
    pick = lambda d: [r for g, v in d.items() if v  # noqa: E731
                      for r in gen.rows(rng.sample(v, min(len(v), per)), g, args.generator_max_length)]
    ppl = {"samples": perplexity(gen, pick(texts)),
           "held_out": perplexity(gen, pick({g: v for g, v in held_out.items() if g in train_texts}))}
    return GeneratedSamples(texts, args.generator or "GPT-2 trained from scratch", gen.scratch,
                            sum(map(len, train_texts.values())), round(t_train, 1), round(t_sample, 1),
                            cached_model, {k: round(v, 2) for k, v in ppl.items()})
