"""Generated transfer text for any task: sample per group, filter, count, encode.

The generator (:mod:`xdistill.transfer.generation`) samples texts for every group (language) of the
task; the filters (:mod:`xdistill.transfer.filters`) remove, in this order and counted per group:
samples outside the length bounds, samples mostly outside their language's script, exact
duplicates, near duplicates of any held-out text (the validation split, which selects the students,
and the evaluation split), near duplicates of each other; then the teacher
reads what is left, and samples on which it is unsure (normalised entropy above
``--max-teacher-entropy``) or, for a share ``1 - keep_without_entities``, in which it finds nothing
(NER: no entity) are removed; with ``--balance-classes`` the larger predicted classes are downsampled
to the rarest one's size. A group whose every sample was removed gets a warning naming the group
and the filter that removed most of them.
"""

from __future__ import annotations

import logging
import random
import time

import numpy as np

from ..data.types import Encoded
from ..errors import ConfigError
from .context import TransferContext, TransferText
from .filters import NearDuplicateIndex, filter_generated, teacher_entropy
from .generation import distinct_n, generate_samples

logger = logging.getLogger(__name__)

#: removal count -> the option that controls it (for warnings)
FILTER_OPTIONS = {"removed_length": "--min-words/--max-words", "removed_script": "--script-share",
                  "removed_duplicate": "exact duplicates", "removed_near_duplicate": "--near-duplicate",
                  "removed_held_out_overlap": "--near-duplicate (validation or evaluation overlap)",
                  "removed_entropy": "--max-teacher-entropy", "removed_entityless": "--keep-entityless",
                  "removed_balance": "--balance-classes"}


def _scripts(ctx: TransferContext) -> dict[str, str | None]:
    """The script of each group, when the script filter is on.

    Raises:
        ConfigError: a group whose script the adapter (the language registry) does not know.
    """
    if ctx.generation.min_script <= 0:
        return {g: None for g in ctx.data.groups}
    out = {g: ctx.adapter.group_script(g) for g in ctx.data.groups}
    unknown = [g for g, s in out.items() if s is None and ctx.adapter.group_name is not None]
    if unknown:
        raise ConfigError(f"--script-share: the language registry has no script for {', '.join(unknown)}; add it to "
                          "languages/languages.toml or switch the filter off with --script-share 0")
    return out


def held_out_index(ctx: TransferContext) -> NearDuplicateIndex:
    """The near-duplicate index (``--near-duplicate``) of every held-out text of every group: the
    validation split, on which the students are selected and stopped, and the evaluation split. A
    generated text near one of them would let the student see it during distillation."""
    a = ctx.adapter
    return NearDuplicateIndex([t for d in ctx.data.groups.values() for split in (d.validation, d.evaluation)
                               for t in a.texts(split)], ctx.generation.near_duplicate)


def _teacher_filter(ctx: TransferContext, kept: dict[str, list[str]], counts: dict[str, dict]):
    """Encode the kept samples, let the teacher read them and drop the unsure and (a share of) the
    uninformative ones. Returns ``(encoded rows, groups, texts, predictions)`` of what is left."""
    args, a = ctx.generation, ctx.adapter
    order = [(g, t) for g, v in kept.items() for t in v]
    enc = Encoded.concat([a.encode(a.from_texts(v, g), ctx.tokenizer, ctx.max_length, f"generated {g}")
                          for g, v in kept.items() if v])
    logits = ctx.teacher.logits(a.level, enc, ctx.tokenizer.pad_token_id)
    preds = a.decode(logits, enc)
    entropy = teacher_entropy(logits, enc)
    rng = random.Random(ctx.seed)
    keep = []
    for i, ((g, _), p, h) in enumerate(zip(order, preds, entropy)):
        if h > args.max_teacher_entropy:
            counts[g]["removed_entropy"] += 1
        elif not a.informative(p) and rng.random() >= args.keep_without_entities:
            counts[g]["removed_entityless"] += 1
        else:
            keep.append(i)
    if args.balance_labels:
        keep = _balance(keep, preds, order, counts, rng)
    return enc.subset_examples(keep), [order[i][0] for i in keep], [order[i][1] for i in keep], [preds[i] for i in keep]


def _balance(keep: list[int], preds: list, order: list, counts: dict[str, dict], rng: random.Random) -> list[int]:
    """``keep`` downsampled (seeded) to the size of its rarest predicted label, order kept."""
    by_label: dict = {}
    for i in keep:
        by_label.setdefault(str(preds[i]), []).append(i)
    n = min(len(v) for v in by_label.values()) if by_label else 0
    chosen = {i for v in by_label.values() for i in (v if len(v) == n else rng.sample(v, n))}
    for i in keep:
        if i not in chosen:
            counts[order[i][0]]["removed_balance"] += 1
    return [i for i in keep if i in chosen]


def _examples(groups, texts, preds, informative, per_key: int = 2) -> list[dict]:
    """A few kept samples per group and kind of teacher prediction (a class; for NER: with or without
    an entity, as the adapter's ``informative`` says), with the teacher's prediction."""
    seen: dict = {}
    out = []
    for g, t, p in zip(groups, texts, preds):
        key = (g, p if isinstance(p, str) else informative(p))
        if seen.get(key, 0) < per_key:
            seen[key] = seen.get(key, 0) + 1
            out.append({"group": g, "text": t, "teacher": p})
    return out


def _warn_empty(counts: dict[str, dict]) -> list[str]:
    warnings = []
    for g, c in counts.items():
        if c["sampled"] and not c["kept"]:
            worst = max(FILTER_OPTIONS, key=lambda k: c[k])
            warnings.append(f"--augment generate: every sample of {g} was filtered out ({c['sampled']} sampled; "
                            f"most removed by {FILTER_OPTIONS[worst]}: {c[worst]}); {g} has no generated text")
            logger.warning(warnings[-1])
    return warnings


def generated_text(ctx: TransferContext) -> TransferText:
    """Generated transfer text for ``ctx``'s task, filtered, encoded, with the report's section.

    Raises:
        ConfigError: ``--generator`` cannot be loaded or prompted, a group's script is unknown, or
            every sample of every group was filtered out.
    """
    args, a, groups = ctx.generation, ctx.adapter, ctx.data.groups
    train = {g: a.texts(d.labeled) + a.texts(d.transfer) for g, d in groups.items()}
    held_out = {g: a.texts(d.validation) for g, d in groups.items()}
    scripts = _scripts(ctx)
    gs = generate_samples(args, ctx.tokenizer, train, held_out, args.samples_per_group(len(groups)),
                          a.group_name is not None, ctx.out_dir, ctx.seed)
    t0 = time.perf_counter()
    index = held_out_index(ctx)
    kept, counts = {}, {}
    for g, texts in gs.texts.items():
        kept[g], c = filter_generated(texts, index, args, scripts.get(g))
        counts[g] = {"sampled": len(texts), **c, "removed_entropy": 0, "removed_entityless": 0, "removed_balance": 0}
    if not any(kept.values()):
        raise ConfigError("--augment generate: every generated text was filtered out; lower --min-words, raise "
                          "--near-duplicate or the number of samples")
    enc, kept_groups, kept_texts, preds = _teacher_filter(ctx, kept, counts)
    for g in counts:
        counts[g]["kept"] = kept_groups.count(g)
    warnings = _warn_empty(counts)
    if not kept_texts:
        raise ConfigError("--augment generate: the teacher filters removed every generated text; raise "
                          "--max-teacher-entropy or --keep-entityless")
    real = [t for v in train.values() for t in v]
    rng = random.Random(ctx.seed)
    n = min(len(real), len(kept_texts), 2000)
    section = {
        "generator": gs.generator, "trained_from_scratch": gs.trained_from_scratch, "generator_cached": gs.cached,
        "train_texts": gs.train_texts, "sampled": sum(c["sampled"] for c in counts.values()), "kept": len(kept_texts),
        "removed": {k[len("removed_"):]: sum(c[k] for c in counts.values()) for k in FILTER_OPTIONS},
        "per_group": counts, "mean_words": float(np.mean([len(t.split()) for t in kept_texts])),
        "seconds_training": gs.seconds_training, "seconds_sampling": gs.seconds_sampling,
        "seconds_filtering": round(time.perf_counter() - t0, 1), "perplexity": gs.perplexity,
        "distinct": {name: {f"distinct_{k}": distinct_n(rng.sample(v, n), k) for k in (1, 2)}
                     for name, v in (("generated", kept_texts), ("training_text", real))},
        "samples": _examples(kept_groups, kept_texts, preds, a.informative), "warnings": warnings}
    logger.info("generation: sampled %d, kept %d (removed %s)", section["sampled"], section["kept"],
                ", ".join(f"{k} {v}" for k, v in section["removed"].items()))
    return TransferText(enc, section, kept_groups)
