"""Batch-inference latency of students, their teachers and their reference models (``python -m xdistill benchmark``).

The setting follows the XtremeDistil paper's speedup measurement (Mukherjee & Hassan Awadallah 2020:
1000 queries of 32 tokens in batches of 32 on a CPU): every model is timed on batches of random token ids of
exactly ``--sequence-length`` tokens (attention mask all ones), at each of ``--batch-sizes``
(default 1 and 32), in three runtimes:

* ``torch-fp32``: PyTorch eager (``torch.inference_mode``);
* ``onnx-fp32``: ONNX Runtime on the exported graph;
* ``onnx-int8``: ONNX Runtime on the dynamically int8-quantized graph.

Latency is the wall time (``time.perf_counter``) of one call on one batch: after ``--warmup``
untimed calls, ``--repeats`` timed calls give the median, 90th percentile (``np.percentile``),
mean, min and max in milliseconds; throughput is ``batch_size / median`` sequences per second.
PyTorch and ONNX Runtime use the same fixed number of threads (``--threads``).

Each student and teacher is compared with the reference model of its family (mBERT-base or
XLM-R-base, :mod:`xdistill.teachers.references`) with the task head (output level and labels) of
the models compared with it: speedup is the reference's median over the model's in the same
runtime and at the same batch size, compression its parameters over the model's. A reference
comes from ``--reference KEY=ID_OR_DIR`` (``--mbert ID_OR_DIR`` for mBERT-base) or the registry's
hub id; when the hub is not reachable and the id is not cached, it is built from the registry's
configuration with random weights (latency does not depend on weight values; the reports say so).
The teachers' and reference models' ONNX files are cached in ``$XDISTILL_CACHE/onnx`` (default
``~/.cache/xdistill/onnx``) and reused across runs; students use their own
``onnx/model[.int8].onnx`` from ``python -m xdistill export``.

Writes ``OUTPUT/latency.json`` (``settings``, ``machine``, ``references``, ``rows``, ``goals``),
``OUTPUT/latency.md`` and ``OUTPUT/latency.png``, and for each student ``STUDENT/latency.json``
(its rows and its reference model's) and its model card.

Modules: :mod:`.options` (settings, parser), :mod:`.candidates` (students and teachers),
:mod:`.references` (reference models), :mod:`.exports` (cached ONNX files), :mod:`.timing`
(inputs, timed calls, statistics), :mod:`.results` (rows, speedups, goals), :mod:`.render` (reports).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .candidates import Candidate, LogitsModule, load_candidates
from .exports import prepare_onnx, prepare_reference_onnx, prepare_teacher_onnx
from .options import RUNTIMES, ReferenceChoice, Settings, build_parser, reference_choices, settings_from_args
from .references import ReferenceSource, build_references, resolve_reference, resolve_references
from .render import check_plotting, print_summary, write_outputs
from .results import goals, machine_info, make_rows
from .timing import latency_stats, make_inputs, measure


def export_references(refs: dict[tuple[str, str, int], Candidate], infos: list[dict],
                      sources: dict[str, ReferenceSource], s: Settings) -> None:
    """Export (or reuse) each reference model's ONNX files; adds ``onnx`` (export seconds, parity) and
    ``onnx_files`` to its ``latency.json`` entry.

    Raises:
        ExportError: an export or quantization failed.
    """
    for ((key, _, _), c), info in zip(refs.items(), infos):
        info["onnx"] = prepare_reference_onnx(c, sources[key], info["weights"], s.seed, s.threads)
        info["onnx_files"] = {k: str(v) for k, v in c.onnx.items()}


def run_benchmark(a: argparse.Namespace, s: Settings) -> dict:
    """Load the students and teachers, build their reference models, export (teachers, references),
    time everything, write the reports and return the ``latency.json`` dictionary (times in ms,
    throughput in sequences/s).

    Raises:
        ConfigError: bad ``--reference``/``--mbert``, a folder without a student, a student without
            ONNX files, a teacher folder without a checkpoint, or an unusable reference source.
        ExportError: an ONNX export or quantization failed.
    """
    out_dir = Path(a.output_dir)
    choices = reference_choices(a)
    students, teachers = load_candidates(a.students, a.teachers, a.no_teachers, s.sequence_length)
    models = [*students, *teachers]
    sources = resolve_references(models, choices)
    refs, infos = build_references(models, sources, s.seed, s.sequence_length)
    export_references(refs, infos, sources, s)
    for t in teachers:
        prepare_teacher_onnx(t, s.threads)
    measured = [(c, measure(c, s)) for c in [*models, *refs.values()]]
    rows = make_rows(measured, refs, s)
    result = {"settings": s.as_dict(), "machine": machine_info(s.threads), "references": infos,
              "rows": rows, "goals": goals(students, rows, s)}
    write_outputs(result, out_dir, students)
    return result


def main(argv: list[str]) -> int:
    """``python -m xdistill benchmark``: time students, teachers and their reference models; write the reports.

    Returns 0. PyTorch's thread count is restored afterwards.

    Raises:
        ConfigError: bad options, a folder without a student, a student without ONNX files, a teacher
            folder without a checkpoint, an unusable ``--reference``/``--mbert``, or no matplotlib.
        ExportError: an ONNX export or quantization failed.
    """
    a = build_parser().parse_args(argv)
    s = settings_from_args(a)
    check_plotting()
    before = torch.get_num_threads()
    torch.set_num_threads(s.threads)
    try:
        result = run_benchmark(a, s)
    finally:
        torch.set_num_threads(before)
    print_summary(result, Path(a.output_dir))
    return 0


__all__ = ["RUNTIMES", "Candidate", "LogitsModule", "ReferenceChoice", "ReferenceSource", "Settings", "build_parser",
           "build_references", "export_references", "latency_stats", "main", "make_inputs", "make_rows", "measure",
           "prepare_onnx", "prepare_teacher_onnx", "reference_choices", "resolve_reference", "resolve_references",
           "run_benchmark", "settings_from_args"]
