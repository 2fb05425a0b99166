"""Reports of a run (``report.json``, ``report.md``) from a :class:`~xdistill.reporting.results.RunResult`,
and the model cards of saved students (:mod:`~xdistill.reporting.model_card`)."""

from .model_card import LATENCY_FILE, load_training_summary, write_model_card, write_training_summary
from .report import build_report, render_markdown, write_report
from .results import ModelScores, RunResult, TaskInfo

__all__ = ["LATENCY_FILE", "ModelScores", "RunResult", "TaskInfo", "build_report", "load_training_summary",
           "render_markdown", "write_model_card", "write_report", "write_training_summary"]
