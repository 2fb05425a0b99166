"""Per-language NER splits: labeled budget, validation, teacher data, transfer set, evaluation.

Data comes through Hugging Face ``datasets``: from the hub
(``datasets.load_dataset("unimelb-nlp/wikiann", lang)``) or from local files in
the XTREME/PAN-X layout (``wikiann/{split}-{lang}.tsv``) read by
:mod:`xdistill.data.readers` and wrapped in ``datasets.Dataset``. Unlabeled
sentences (Leipzig, Tatoeba) are split into words by the task's word splitter
(:mod:`xdistill.data.words`), as the gold files are split, whatever the teacher's
tokenizer.

Splits per language (seeded, disjoint where it matters):

* ``validation``: held out of train, for early stopping and model selection; held out by text
  too: train and unlabeled sentences with a validation sentence's words are in no other split
  (:mod:`xdistill.data.heldout`);
* ``labeled``: the student's labeled budget, from the rest of train;
* ``teacher_labeled``: the teacher's fine-tuning data, a superset of ``labeled``
  (a scratch teacher may see more labeled data than the student);
* ``transfer``: train minus validation minus ``labeled``, labels dropped, plus
  unlabeled sentences;
* ``evaluation``: the labeled evaluation split (dev locally), never used for selection; the
  sentences whose words also stand in the train file are counted (``eval_text_in_train``: WikiANN
  repeats sentences across its splits, and a score on them partly measures memory) and their
  positions kept (``evaluation_in_train``), so that every model is also scored without them.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import datasets
from datasets import Dataset, Features, Sequence, Value

from ..config import NERDataArguments
from ..errors import ConfigError, DataFormatError, UnknownLanguageError
from .heldout import positions_in, without_texts
from .languages import LanguageRegistry, unlabeled_files
from .readers import Sentence, read_ner_file, repair_iob2
from .taskspec import TaskSpec
from .types import GroupData, TaskData
from .words import WordSplitter

logger = logging.getLogger(__name__)


FEATURES = Features({"tokens": Sequence(Value("string")), "tags": Sequence(Value("string")), "lang": Value("string")})


def _to_dataset(lang: str, sentences) -> Dataset:
    return Dataset.from_dict({
        "tokens": [list(t) for t, _ in sentences],
        "tags": [list(g) for _, g in sentences],
        "lang": [lang] * len(sentences),
    }, features=FEATURES)


class NERSource:
    """Where labeled NER data comes from. Subclasses: :class:`LocalSource`, :class:`HubSource`."""

    name = "source"

    def available_languages(self) -> set[str]:
        raise NotImplementedError

    def incomplete_languages(self) -> dict[str, str]:
        """Languages with a train split but no evaluation split: ``{lang: what is missing}``."""
        return {}

    def load(self, lang: str, split: str) -> list[Sentence]:
        """Labeled sentences of ``split`` ("train" or "eval") for ``lang``."""
        raise NotImplementedError

    def describe(self, lang: str, split: str) -> str:
        raise NotImplementedError


class LocalSource(NERSource):
    """Labeled files below ``data_dir`` as named by the task spec's ``[local]`` table:
    PAN-X (``token<TAB>tag``) or CoNLL columns (``format = "panx" | "conll" | "auto"``)."""

    def __init__(self, data_dir: str | Path, spec: TaskSpec):
        self.data_dir = Path(data_dir)
        self.spec = spec
        self.name = f"local files in {self.data_dir}"
        if not spec.local:
            raise ConfigError(f"task {spec.name!r} ({spec.path}) declares no [local] source")
        self.stats: dict[str, dict] = {}

    def path(self, lang: str, split: str) -> Path:
        return self.data_dir / self.spec.local[split].format(lang=lang)

    def _train_languages(self) -> set[str]:
        pattern = self.spec.local["train"]
        prefix, _, suffix = pattern.partition("{lang}")
        folder = (self.data_dir / prefix).parent
        name_prefix = Path(prefix).name if not prefix.endswith("/") else ""
        langs = set()
        if folder.is_dir():
            for p in folder.iterdir():
                if p.name.startswith(name_prefix) and p.name.endswith(suffix) and len(p.name) > len(name_prefix + suffix):
                    langs.add(p.name[len(name_prefix):len(p.name) - len(suffix)])
        return langs

    def available_languages(self) -> set[str]:
        """Languages with both a train and an evaluation file."""
        return {lang for lang in self._train_languages() if self.path(lang, "eval").is_file()}

    def incomplete_languages(self) -> dict[str, str]:
        return {lang: f"{self.path(lang, 'eval')} is missing (the train file {self.path(lang, 'train')} is there)"
                for lang in self._train_languages() if not self.path(lang, "eval").is_file()}

    def load(self, lang: str, split: str) -> list[Sentence]:
        p = self.path(lang, split)
        if not p.is_file():
            raise UnknownLanguageError(f"--langs: no {split} file for {lang!r}: looked for {p}")
        sentences, stats = read_ner_file(p, format=self.spec.local.get("format", "auto"), label_set=self.spec.labels)
        self.stats[f"{lang}/{split}"] = {"file": str(p), "sentences": stats.n_sentences, "repaired_tags": stats.n_repaired}
        return sentences

    def describe(self, lang: str, split: str) -> str:
        return str(self.path(lang, split))


class HubSource(NERSource):
    """The task's hub data set through ``datasets.load_dataset(path, config)``."""

    def __init__(self, spec: TaskSpec, registry: LanguageRegistry):
        if not spec.hub:
            raise ConfigError(f"task {spec.name!r} ({spec.path}) declares no [hub] source")
        self.spec = spec
        self.registry = registry
        self.name = f"the Hugging Face hub data set {spec.hub['path']}"
        self.stats: dict[str, dict] = {}

    def available_languages(self) -> set[str]:
        return set(self.registry.with_source("wikiann"))

    def load(self, lang: str, split: str) -> list[Sentence]:
        hub = self.spec.hub
        split_name = hub["train_split" if split == "train" else "eval_split"]
        try:
            ds = datasets.load_dataset(hub["path"], hub["config"].format(lang=lang), split=split_name)
        except Exception as e:  # network, missing config: say where we looked
            raise UnknownLanguageError(
                f"--langs: could not load {lang!r} from {hub['path']} (config {hub['config'].format(lang=lang)!r}, "
                f"split {split_name!r}): {e}. Without hub access use --data-dir with local files.") from e
        feature = ds.features[hub["tags_column"]].feature
        names = getattr(feature, "names", None)
        out, repaired = [], 0
        for i, row in enumerate(ds):
            tags = [names[t] if names else t for t in row[hub["tags_column"]]]
            bad = [t for t in tags if t not in self.spec.labels]
            if bad:
                raise DataFormatError(f"{hub['path']}/{lang}/{split_name}", i + 1, f"unknown tag {bad[0]!r}",
                                      f"one of {', '.join(self.spec.labels)}")
            fixed, changed = repair_iob2(tags)
            repaired += len(changed)
            out.append(Sentence(tokens=tuple(row[hub["tokens_column"]]), tags=tuple(fixed), line=i + 1))
        if repaired:
            logger.warning("%s/%s/%s: repaired %d I- tags that did not continue an entity", hub["path"], lang, split_name, repaired)
        self.stats[f"{lang}/{split}"] = {"file": f"{hub['path']}:{lang}:{split_name}", "sentences": len(out), "repaired_tags": repaired}
        return out

    def describe(self, lang: str, split: str) -> str:
        return f"{self.spec.hub['path']} config {lang}"


def make_source(args: NERDataArguments, spec: TaskSpec, registry: LanguageRegistry) -> NERSource:
    """The labeled-data source that ``args.source`` selects."""
    if args.source == "local":
        return LocalSource(args.data_dir, spec)
    return HubSource(spec, registry)


def read_unlabeled(path: Path, limit: int, rng: random.Random) -> list[str]:
    """Non-empty lines of a UTF-8 text file (one sentence per line), seeded sample of ``limit`` (-1: all).

    Raises:
        DataFormatError: the file is not UTF-8 (names the line).
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataFormatError(path, line, "not UTF-8 text", "UTF-8 encoded sentences, one per line") from e
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if 0 <= limit < len(lines):
        lines = rng.sample(lines, limit)
    return lines


def _sample(rng: random.Random, items: list, n: int) -> list:
    return list(items) if n < 0 or n >= len(items) else rng.sample(items, n)


def repeat_shuffled(items: list, copies: int, rng: random.Random) -> list:
    """``items`` followed by ``copies - 1`` shuffled copies of them (same objects, not duplicated)."""
    out = list(items)
    for _ in range(copies - 1):
        copy = list(items)
        rng.shuffle(copy)
        out += copy
    return out


def build_language_data(lang: str, source: NERSource, args: NERDataArguments, splitter: WordSplitter,
                        registry: LanguageRegistry, use_unlabeled: bool = True) -> GroupData:
    """Build every split of one language (see the module docstring).

    A language whose train split is used up by validation and the labeled
    budget, and that has no unlabeled text, gets an empty transfer split and a
    warning; :func:`check_transfer_set` rejects a run whose whole transfer set is empty.

    Raises:
        UnknownLanguageError: the language's files are missing (names where it looked).
        DataFormatError: a malformed file.
    """
    rng = random.Random(f"{args.seed}:{lang}")
    train = source.load(lang, "train")
    evaluation = source.load(lang, "eval")
    n = len(train)
    idx = list(range(n))
    rng.shuffle(idx)
    n_val = min(args.validation_per_lang, max(1, n // 5))
    if n_val < args.validation_per_lang:
        logger.warning("%s: only %d train sentences; validation split reduced to %d", lang, n, n_val)
    val_idx, rest = idx[:n_val], idx[n_val:]
    texts = [tuple(s.tokens) for s in train]
    held = {texts[i] for i in val_idx}
    rest, train_dups = without_texts(rest, texts.__getitem__, held)
    n_lab = min(args.labeled_per_lang, len(rest))
    lab_idx = rest[:n_lab]
    n_teacher = len(rest) if args.teacher_labeled_per_lang < 0 else min(args.teacher_labeled_per_lang, len(rest))
    teacher_idx = rest[:max(n_teacher, n_lab)]
    transfer_idx = rest[n_lab:]
    if args.transfer_per_lang >= 0:
        transfer_idx = transfer_idx[: args.transfer_per_lang]
    from_labeled = lab_idx if args.transfer_with_labeled else []
    transfer_words = [list(train[i].tokens) for i in from_labeled + transfer_idx]
    unl_counts: dict[str, int] = {}
    unl_dups = 0
    if use_unlabeled and args.unlabeled_per_lang != 0 and args.data_dir and lang in registry:
        for path in unlabeled_files(Path(args.data_dir), registry.get(lang)):
            lines = read_unlabeled(path, args.unlabeled_per_lang, rng)
            words = splitter.words(lines)
            kept = [w for w in words if w]
            if len(kept) != len(words):
                logger.info("%s: %d lines of %s had no words after normalisation", lang, len(words) - len(kept), path)
            kept, dups = without_texts(kept, tuple, held)
            unl_dups += dups
            transfer_words.extend(kept)
            unl_counts[path.parent.name] = len(kept)
    if args.transfer_repeat > 1 and transfer_words:
        transfer_words = repeat_shuffled(transfer_words, args.transfer_repeat, random.Random(f"{args.seed}:{lang}:repeat"))
        logger.warning("%s: the transfer text repeated %d times (%d sentences; --transfer-repeat, for scaling "
                       "benchmarks: repeats teach nothing new)", lang, args.transfer_repeat, len(transfer_words))
    if not transfer_words:
        logger.warning("%s: no transfer text for this language (train has %d sentences: %d validation, %d in the "
                       "labeled budget; no unlabeled text found); it contributes labeled data only", lang, n, n_val, n_lab)
    if train_dups or unl_dups:
        logger.info("%s: %d train and %d unlabeled sentences repeat a validation sentence's words; left out of the "
                    "other splits", lang, train_dups, unl_dups)
    eval_sel = sorted(_sample(rng, list(range(len(evaluation))), args.eval_per_lang))
    pick = lambda ids: [(train[i].tokens, train[i].tags) for i in ids]  # noqa: E731
    seen = positions_in(set(texts), [tuple(evaluation[i].tokens) for i in eval_sel])
    counts = {
        "train_sentences": n,
        "validation": len(val_idx),
        "validation_text_elsewhere": {"train": train_dups, "unlabeled": unl_dups},
        "labeled": len(lab_idx),
        "teacher_labeled": len(teacher_idx),
        "transfer_from_train": len(transfer_idx),
        "transfer_from_labeled": len(from_labeled),
        "transfer_unlabeled": unl_counts,
        "transfer": len(transfer_words),
        "transfer_repeat": args.transfer_repeat,
        "eval_sentences": len(evaluation),
        "n_eval": len(eval_sel),
        "eval_text_in_train": len(seen),
        "eval_file": source.describe(lang, "eval"),
    }
    return GroupData(
        lang=lang,
        labeled=_to_dataset(lang, pick(lab_idx)),
        validation=_to_dataset(lang, pick(val_idx)),
        teacher_labeled=_to_dataset(lang, pick(teacher_idx)),
        transfer=_to_dataset(lang, [(w, []) for w in transfer_words]),
        evaluation=_to_dataset(lang, [(evaluation[i].tokens, evaluation[i].tags) for i in eval_sel]),
        counts=counts,
        evaluation_in_train=seen,
    )


def resolve_languages(spec_str: str, source: NERSource, registry: LanguageRegistry) -> tuple[list[str], list[str]]:
    """Resolve ``--langs`` against the languages the source has; warn about group members it lacks.

    Raises:
        UnknownLanguageError: no language has data, a named language has none (or lacks its evaluation
            file: the message names it), or an unknown code.
    """
    available = source.available_languages()
    incomplete = source.incomplete_languages()
    named = [t.strip().lower() for t in spec_str.split(",") if t.strip().lower() in incomplete]
    if named:
        raise UnknownLanguageError("--langs: " + "; ".join(f"{lang}: {incomplete[lang]}" for lang in named))
    if not available:
        extra = f" ({'; '.join(f'{k}: {v}' for k, v in sorted(incomplete.items()))})" if incomplete else ""
        raise UnknownLanguageError(f"--langs: no language has labeled data in {source.name}{extra}")
    if incomplete:
        logger.warning("--langs %s: skipped for lack of an evaluation file: %s", spec_str,
                       "; ".join(f"{k}: {v}" for k, v in sorted(incomplete.items())))
    selected, missing = registry.resolve(spec_str, available=available, source=source.name)
    if missing:
        logger.warning("--langs %s: %d languages have no labeled data in %s and are skipped: %s",
                       spec_str, len(missing), source.name, ", ".join(missing))
    return selected, missing


def check_transfer_set(data: dict[str, GroupData]) -> None:
    """Raise ConfigError when no language has transfer text (nothing to distil on)."""
    if not any(len(d.transfer) for d in data.values()):
        detail = ", ".join(f"{lang}: train {d.counts['train_sentences']}, labeled {d.counts['labeled']}, "
                           f"validation {d.counts['validation']}" for lang, d in data.items())
        raise ConfigError("--langs: the transfer set is empty: every sentence of train is in the labeled budget or the "
                          f"validation split and no unlabeled text was found ({detail}); lower --labeled-per-lang "
                          "or add unlabeled text")


def build_ner_data(spec: TaskSpec, args: NERDataArguments, registry: LanguageRegistry,
                   splitter: WordSplitter) -> TaskData:
    """Splits of every requested language, as a :class:`~xdistill.data.types.TaskData`.

    Raises:
        UnknownLanguageError: a requested language has no data where we looked.
        DataFormatError: a malformed file.
        ConfigError: the whole transfer set is empty.
    """
    source = make_source(args, spec, registry)
    langs, missing = resolve_languages(args.langs, source, registry)
    logger.info("languages (%d): %s", len(langs), ", ".join(langs))
    data = {}
    for lang in langs:
        data[lang] = build_language_data(lang, source, args, splitter, registry,
                                         use_unlabeled=bool(spec.local.get("unlabeled", False)))
        c = data[lang].counts
        logger.info("%s: train %d, validation %d, labeled %d, teacher labeled %d, transfer %d, eval %d",
                    lang, c["train_sentences"], c["validation"], c["labeled"], c["teacher_labeled"], c["transfer"], c["n_eval"])
    check_transfer_set(data)
    teacher = ("all of train minus validation" if args.teacher_labeled_per_lang < 0
               else f"up to {args.teacher_labeled_per_lang} per language")
    return TaskData(groups=data, missing=missing, source=source.name, requested=args.langs,
                    student_budget=f"up to {args.labeled_per_lang} per language", teacher_budget=teacher)
