"""Reference models (mBERT-base, XLM-R-base): where each comes from, and building one per
(reference, output level, number of labels) with the task head of the models compared with it.

A reference comes from its :class:`~.options.ReferenceChoice`: a local folder with ``config.json``
(weights used if present), else the hub (probed first with a short timeout, so that an offline
machine fails in about a second instead of half a minute of retries), else the local hub cache,
else, for the registry's own hub id only, the registry's configuration
(:attr:`~xdistill.teachers.ReferenceModel.config`) with random weights: latency does not depend on
weight values, and the reports say which weights were used.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HFValidationError, RepositoryNotFoundError,
                                    RevisionNotFoundError)
from torch import nn
from transformers import AutoConfig

from ...adapters import OutputLevel
from ...errors import ConfigError
from ...teachers import ReferenceModel
from ...utils import count_parameters
from .candidates import Candidate, LogitsModule, check_positions, known_config_ids
from .options import ReferenceChoice

logger = logging.getLogger(__name__)

RANDOM_NOTE = "random weights: latency does not depend on weight values"
#: seconds to wait for the hub before falling back to the cache or the built-in configuration
HUB_TIMEOUT_S = 5.0


@dataclass
class ReferenceSource:
    """Where a reference model comes from, resolved: ``config`` (a ``transformers`` config),
    ``weights`` ``"pretrained"`` (loaded from ``weights_from``) or ``"random"``, a ``source`` and a
    ``note`` for the reports; ``local_only`` loads without the network."""

    choice: ReferenceChoice
    source: str
    config: object
    weights: str
    weights_from: str | None
    note: str
    local_only: bool = False

    @property
    def model(self) -> ReferenceModel:
        return self.choice.model


def hub_probe(repo_id: str, option: str, timeout: float = HUB_TIMEOUT_S) -> tuple[bool, str]:
    """``(reachable, reason)``: one HEAD request for ``repo_id``'s config.json, no retries, waiting at
    most ``timeout`` seconds. ``HF_HUB_OFFLINE`` counts as unreachable.

    Raises:
        ConfigError: the hub answered that ``repo_id`` does not exist (or is not a valid id); names ``option``.
    """
    if hub_constants.HF_HUB_OFFLINE:
        return False, "HF_HUB_OFFLINE is set"
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=timeout)
    except (RepositoryNotFoundError, EntryNotFoundError, RevisionNotFoundError, GatedRepoError, HFValidationError) as e:
        raise ConfigError(f"{option}: not a folder with config.json and not a usable hub model ({type(e).__name__})") from e
    except Exception as e:  # connection refused, DNS, timeouts, proxies: the hub is not reachable
        return False, f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}".rstrip(": ")
    return True, ""


def cached_hub_file(repo_id: str, filename: str) -> str | None:
    """The path of ``filename`` of ``repo_id`` in the local hub cache, or ``None``."""
    try:
        p = try_to_load_from_cache(repo_id, filename)
    except Exception:  # an id the cache cannot hold (HFValidationError) counts as not cached
        return None
    return p if isinstance(p, str) else None


def builtin_config(ref: ReferenceModel):
    """The ``transformers`` config of ``ref``'s checkpoint from the registry (no network):
    ``AutoConfig.for_model(ref.model_type, **ref.config)``."""
    return AutoConfig.for_model(ref.model_type, **ref.config)


def config_summary(c) -> str:
    """Sizes of a ``transformers`` config in a few words (layers, hidden, heads, vocabulary, positions)."""
    return (f"{c.num_hidden_layers} layers, hidden {c.hidden_size}, {c.num_attention_heads} heads, intermediate "
            f"{c.intermediate_size}, vocabulary {c.vocab_size:,}, {c.max_position_embeddings} positions")


def _has_weights(d: Path) -> bool:
    return any(d.glob("*.safetensors")) or any(d.glob("pytorch_model*.bin"))


def _from_folder(choice: ReferenceChoice, d: Path) -> ReferenceSource:
    if not (d / "config.json").is_file():
        raise ConfigError(f"{choice.option}: expected a hub id or a folder with config.json")
    config = AutoConfig.from_pretrained(d)
    if _has_weights(d):
        return ReferenceSource(choice, f"local folder {d}", config, "pretrained", str(d),
                               f"weights from {d}; the task head is randomly initialised where it does not match", True)
    return ReferenceSource(choice, f"local folder {d} (config.json only)", config, "random", None,
                           f"{RANDOM_NOTE}; configuration of {d}: {config_summary(config)}")


def _from_cache(choice: ReferenceChoice, reason: str) -> ReferenceSource | None:
    repo = choice.spec
    if not cached_hub_file(repo, "config.json"):
        return None
    config = AutoConfig.from_pretrained(repo, local_files_only=True)
    if cached_hub_file(repo, "model.safetensors") or cached_hub_file(repo, "pytorch_model.bin"):
        return ReferenceSource(choice, f"hub cache {repo} (hub not reachable: {reason})", config, "pretrained", repo,
                               f"pretrained weights of {repo} from the local cache; the task head is randomly initialised", True)
    return ReferenceSource(choice, f"hub cache {repo}, configuration only (hub not reachable: {reason})", config, "random",
                           None, f"{RANDOM_NOTE}; configuration of {repo}: {config_summary(config)}")


def _builtin(choice: ReferenceChoice, reason: str) -> ReferenceSource:
    config = builtin_config(choice.model)
    return ReferenceSource(choice, f"configuration of {choice.spec} built in (hub not reachable: {reason})", config,
                           "random", None, f"{RANDOM_NOTE}; built from {choice.spec}'s configuration: {config_summary(config)}")


def resolve_reference(choice: ReferenceChoice) -> ReferenceSource:
    """Where the reference model of ``choice`` comes from: a local folder with config.json (weights
    used if present); else the hub (probed first, see :func:`hub_probe`); else the local hub cache;
    else, for the registry's own hub id only, :func:`builtin_config` with random weights.

    Raises:
        ConfigError: a folder without config.json, a hub id the hub says does not exist, or an id
            other than the registry's that is neither reachable nor cached.
    """
    p = Path(choice.spec)
    if p.exists():
        return _from_folder(choice, p)
    reachable, reason = hub_probe(choice.spec, choice.option)
    if reachable:
        return ReferenceSource(choice, f"hub {choice.spec}", AutoConfig.from_pretrained(choice.spec), "pretrained",
                               choice.spec, f"pretrained weights of {choice.spec}; the task head is randomly initialised")
    cached = _from_cache(choice, reason)
    if cached is not None:
        return cached
    if not choice.is_default:
        raise ConfigError(f"{choice.option}: not a local folder with config.json, and the hub is not reachable ({reason})")
    return _builtin(choice, reason)


def resolve_references(models: Sequence[Candidate], choices: dict[str, ReferenceChoice]) -> dict[str, ReferenceSource]:
    """Registry key -> :class:`ReferenceSource` for every reference model that ``models`` are compared
    with (``choices`` where given, else the registry's hub id). A choice no model needs is ignored (logged).

    Raises:
        ConfigError: see :func:`resolve_reference`.
    """
    needed = {c.reference.key: c.reference for c in models}
    for key, choice in choices.items():
        if key not in needed:
            logger.warning("%s: no student or teacher is compared with %s; ignored", choice.option, choice.model.name)
    return {key: resolve_reference(choices.get(key) or ReferenceChoice.default(ref)) for key, ref in needed.items()}


def build_reference_model(src: ReferenceSource, level: OutputLevel, num_labels: int, seed: int) -> tuple[nn.Module, str]:
    """The reference model with a ``level`` head of ``num_labels`` classes, in eval mode; returns
    ``(model, weights)`` where ``weights`` is ``"pretrained"`` or ``"random"`` (a failed weight
    download falls back to random weights seeded with ``seed``, and says so in the log)."""
    config = copy.deepcopy(src.config)
    config.num_labels = num_labels
    cls = level.auto_model_class
    if src.weights == "pretrained":
        try:
            model = cls.from_pretrained(src.weights_from, config=config, ignore_mismatched_sizes=True,
                                        local_files_only=src.local_only)
            return model.eval(), "pretrained"
        except Exception as e:  # a download that fails half-way: latency does not need the weights
            logger.warning("%s weights from %s could not be loaded (%s); using random weights", src.model.name,
                           src.weights_from, e)
    torch.manual_seed(seed)
    return cls.from_config(config).eval(), "random"


def reference_name(ref: ReferenceModel, level: OutputLevel, num_labels: int) -> str:
    """The row name of a reference model: ``mBERT-base (token, 7 labels)``."""
    return f"{ref.name} ({level.name}, {num_labels} labels)"


def reference_candidate(src: ReferenceSource, level: OutputLevel, num_labels: int, tasks: Sequence[str], seed: int,
                        sequence_length: int) -> tuple[Candidate, dict]:
    """The reference model of ``src`` with a ``level`` head of ``num_labels`` classes, and its entry
    of ``latency.json``'s ``references`` (source, weights, note, parameters).

    Raises:
        ConfigError: ``sequence_length`` (tokens) is longer than its position embeddings.
    """
    ref = src.model
    check_positions(src.choice.option, src.config, sequence_length)
    model, weights = build_reference_model(src, level, num_labels, seed)
    c = Candidate(name=reference_name(ref, level, num_labels), role="reference", task=",".join(sorted(set(tasks))) or "?",
                  path=src.choice.spec, level=level, num_labels=num_labels, parameters=count_parameters(model),
                  known_ids=known_config_ids(src.config), forward=LogitsModule(model).eval(), reference=ref,
                  max_positions=src.config.max_position_embeddings)
    note = src.note if weights == src.weights else \
        f"{RANDOM_NOTE} (the pretrained weights of {src.weights_from} could not be loaded)"
    info = {"name": c.name, "key": ref.key, "model": ref.name, "hub_id": ref.hub_id, "level": level.name,
            "num_labels": num_labels, "tasks": sorted(set(tasks)), "source": src.source, "weights": weights,
            "note": note, "parameters": c.parameters, "paper_parameters": ref.parameters}
    return c, info


def build_references(models: Sequence[Candidate], sources: dict[str, ReferenceSource], seed: int,
                     sequence_length: int) -> tuple[dict[tuple[str, str, int], Candidate], list[dict]]:
    """One reference model per :attr:`Candidate.ref_key` that ``models`` need; returns them by key and
    their ``latency.json`` entries (same order).

    Raises:
        ConfigError: see :func:`reference_candidate`.
    """
    tasks: dict[tuple[str, str, int], list[str]] = {}
    levels: dict[tuple[str, str, int], OutputLevel] = {}
    for c in models:
        tasks.setdefault(c.ref_key, []).append(c.task)
        levels[c.ref_key] = c.level
    refs, infos = {}, []
    for key, names in tasks.items():
        ref_key, _, num_labels = key
        refs[key], info = reference_candidate(sources[ref_key], levels[key], num_labels, names, seed, sequence_length)
        infos.append(info)
    return refs, infos
