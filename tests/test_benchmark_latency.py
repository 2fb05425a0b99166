"""The batch-inference latency benchmark (``python -m xdistill benchmark``) on tiny models, offline.

One quick run (module fixture) times a NER student (exported with :func:`export_student`), a
sequence-classification student saved without a ``reference`` key (ONNX written directly), a copy
of the NER student whose config says ``"reference": "xlmr-base"``, the NER student's teacher, and
three tiny reference models built from config folders: mBERT-base with a token and a sequence head
(``--mbert DIR``) and XLM-R-base with a token head (``--reference xlmr-base=DIR``).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForTokenClassification, XLMRobertaConfig

sys.path.insert(0, str(Path(__file__).parent))
from tiny import load_script  # noqa: E402
from tiny_models import (SENTENCES, bert_config, make_classifier_dir, make_student_dir, make_teacher,  # noqa: E402
                         single_thread, write_panx)

from xdistill.adapters import SEQUENCE, TOKEN  # noqa: E402
from xdistill.errors import ConfigError  # noqa: E402
from xdistill.serving import benchmark as bm  # noqa: E402
from xdistill.serving.benchmark import candidates, options, references  # noqa: E402
from xdistill.serving.onnx import META_FINGERPRINT, export_module_to_onnx, onnx_path, quantize_int8  # noqa: E402
from xdistill.utils import cache_root, file_sha256  # noqa: E402
from xdistill.students import load_student  # noqa: E402
from xdistill.teachers import REFERENCE_MODELS  # noqa: E402

BATCHES = [1, 4]
SEQ = 16
RANDOM_NOTE = "latency does not depend on weight values"


def export_classifier(directory: Path) -> Path:
    """ONNX fp32/int8 files of a saved classifier, written directly (no parity.json)."""
    student, _ = load_student(directory)
    example = (torch.tensor([[2, 5, 6, 3], [2, 7, 3, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]))
    export_module_to_onnx(student.export_module().eval(), example, onnx_path(directory, "fp32"), SEQUENCE,
                          {META_FINGERPRINT: file_sha256(directory / "model.safetensors")})
    quantize_int8(onnx_path(directory, "fp32"), onnx_path(directory, "int8"))
    return directory


def set_reference(student_dir: Path, key: str) -> None:
    """Edit a saved student's config.json to name another reference model."""
    p = student_dir / "config.json"
    cfg = json.loads(p.read_text())
    cfg["reference"] = key
    p.write_text(json.dumps(cfg))


def tiny_xlmr_config() -> XLMRobertaConfig:
    """A tiny XLM-R configuration (sizes unlike the tiny mBERT's, so that its rows are told apart)."""
    return XLMRobertaConfig(vocab_size=300, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=24, max_position_embeddings=64)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tok):
    """Tiny students, teacher and reference config folders."""
    from xdistill.serving.export import export_student

    root = tmp_path_factory.mktemp("latency")
    with single_thread():
        ner = make_student_dir(root / "ner" / "student", tok)
        teacher = make_teacher(len(tok))
        teacher.save_pretrained(root / "ner" / "teacher")
        tok.save_pretrained(root / "ner" / "teacher")
        export_student(ner, [write_panx(root / "eval.tsv", SENTENCES)], quantize="int8", threads=1)
        cls = export_classifier(make_classifier_dir(root / "cls" / "student", tok))
    xlmr = shutil.copytree(ner, root / "xlmr" / "student")  # same weights: its ONNX files stay valid
    set_reference(xlmr, "xlmr-base")
    bert_config(len(tok)).save_pretrained(root / "mbert")  # config.json only: random weights
    tiny_xlmr_config().save_pretrained(root / "xlmr-ref")
    return {"root": root, "tok": tok, "ner": ner, "cls": cls, "xlmr": xlmr, "teacher": root / "ner" / "teacher",
            "mbert": root / "mbert", "xlmr_ref": root / "xlmr-ref"}


@pytest.fixture(scope="module")
def result(tiny):
    """One quick benchmark run; ``cls`` is given as its run folder (expanded to the student inside)."""
    out = tiny["root"] / "out"
    argv = ["--students", str(tiny["ner"]), str(tiny["root"] / "cls"), str(tiny["xlmr"]), "--mbert", str(tiny["mbert"]),
            "--reference", f"xlmr-base={tiny['xlmr_ref']}", "--batch-sizes", ",".join(map(str, BATCHES)),
            "--sequence-length", str(SEQ), "--quick", "--threads", "1", "--output-dir", str(out)]
    before = torch.get_num_threads()
    assert bm.main(argv) == 0
    assert torch.get_num_threads() == before  # restored
    return {"out": out, "json": json.loads((out / "latency.json").read_text()), "argv": argv}


NER, CLS, XLMR, TEACHER = "ner/student", "cls/student", "xlmr/student", "ner/teacher"
MB_TOKEN, MB_SEQ, XR_TOKEN = "mBERT-base (token, 7 labels)", "mBERT-base (sequence, 2 labels)", "XLM-R-base (token, 7 labels)"
#: model -> the reference model it is compared with
COMPARED = {NER: MB_TOKEN, CLS: MB_SEQ, XLMR: XR_TOKEN, TEACHER: MB_TOKEN, MB_TOKEN: MB_TOKEN, MB_SEQ: MB_SEQ,
            XR_TOKEN: XR_TOKEN}


def test_outputs_and_schema(result, tiny):
    out, r = result["out"], result["json"]
    for f in ("latency.json", "latency.md", "latency.png"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0
    assert not list(out.glob(".*.tmp"))
    assert list(r) == ["settings", "machine", "references", "rows", "goals"]
    assert r["settings"] == {"batch_sizes": BATCHES, "sequence_length": SEQ, "warmup": 1, "repeats": 3, "threads": 1,
                             "quick": True, "seed": 0}
    m = r["machine"]
    assert {"cpu", "physical_cores", "logical_cores", "threads", "platform", "python", "torch", "onnxruntime",
            "transformers", "numpy"} <= set(m) and m["threads"] == 1 and m["cpu"]
    refs = {i["name"]: i for i in r["references"]}
    assert set(refs) == {MB_TOKEN, MB_SEQ, XR_TOKEN} and len(r["references"]) == 3
    assert {(i["key"], i["level"], i["num_labels"]) for i in refs.values()} == {
        ("mbert-base", "token", 7), ("mbert-base", "sequence", 2), ("xlmr-base", "token", 7)}
    for i in refs.values():
        assert i["weights"] == "random" and RANDOM_NOTE in i["note"] and "config.json only" in i["source"]
        assert i["parameters"] > 0 and i["paper_parameters"] == REFERENCE_MODELS[i["key"]].parameters
        assert set(i["onnx_files"]) == {"fp32", "int8"} and i["onnx"]["cached"] is False
    assert refs[MB_TOKEN]["tasks"] == ["wikiann"] and refs[MB_SEQ]["tasks"] == ["imdb"]
    for f in ("mbert-base-token-7.onnx", "mbert-base-sequence-2.int8.onnx", "xlmr-base-token-7.onnx"):
        assert (cache_root() / "onnx" / f).is_file()  # reused across runs, outside students and outputs
        assert not (out / "onnx").exists()
    for student in (tiny["ner"], tiny["xlmr"]):  # a student's onnx/ holds its own files only
        assert {p.name for p in (student / "onnx").iterdir()} <= {"model.onnx", "model.int8.onnx", "parity.json"}
    md = (out / "latency.md").read_text()
    assert "random weights" in md and "Speedup against the reference model" in md and NER in md
    assert "## Reference models" in md and XR_TOKEN in md and "177.3M" in md and "277.5M" in md
    assert (out / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rows_cover_every_model_runtime_batch(result):
    rows = result["json"]["rows"]
    keys = {(x["model"], x["runtime"], x["batch_size"]) for x in rows}
    assert keys == {(m, rt, b) for m in COMPARED for rt in bm.RUNTIMES for b in BATCHES}
    assert len(rows) == len(keys)
    roles = {x["model"]: x["role"] for x in rows}
    assert roles == {NER: "student", CLS: "student", XLMR: "student", TEACHER: "teacher", MB_TOKEN: "reference",
                     MB_SEQ: "reference", XR_TOKEN: "reference"}
    for x in rows:
        assert x["reference"] == COMPARED[x["model"]]
        assert x["level"] == ("sequence" if x["model"] in (CLS, MB_SEQ) else "token")
        assert 0 < x["min_ms"] <= x["median_ms"] <= x["p90_ms"] <= x["max_ms"]
        assert x["sequences_per_second"] == pytest.approx(x["batch_size"] / (x["median_ms"] / 1000))
        assert x["sequence_length"] == SEQ and x["parameters"] > 0
        assert x["speedup_vs_reference"] is not None and x["speedup_vs_reference"] > 0
        assert not any("mbert" in k for k in x)


def test_speedups_compression_and_metrics(result):
    rows = result["json"]["rows"]
    get = {(x["model"], x["runtime"], x["batch_size"]): x for x in rows}
    for model, ref in COMPARED.items():
        for rt in bm.RUNTIMES:
            for b in BATCHES:
                x, m = get[(model, rt, b)], get[(ref, rt, b)]
                assert x["speedup_vs_reference"] == pytest.approx(m["median_ms"] / x["median_ms"])
                assert x["compression_vs_reference"] == pytest.approx(m["parameters"] / x["parameters"])
    assert get[(MB_TOKEN, "torch-fp32", 1)]["speedup_vs_reference"] == pytest.approx(1.0)
    # the NER student's metric per runtime comes from onnx/parity.json; the classifier has none
    parity = json.loads((Path(get[(NER, "onnx-int8", 1)]["path"]) / "onnx" / "parity.json").read_text())
    x = get[(NER, "onnx-int8", 1)]
    assert x["metric"] == parity["metric"] and x["metric_value"] == parity["scores"]["onnx_int8"][parity["metric"]]
    assert get[(CLS, "torch-fp32", 1)]["metric"] is None and get[(MB_SEQ, "torch-fp32", 1)]["metric_value"] is None


def test_student_is_compared_with_its_own_reference(result, tiny):
    """A student whose config says ``"reference": "xlmr-base"`` is compared with XLM-R-base, built
    from the folder given with ``--reference xlmr-base=DIR``; the others keep mBERT-base."""
    rows = [x for x in result["json"]["rows"] if x["model"] == XLMR]
    ref_rows = {x["model"] for x in result["json"]["rows"] if x["role"] == "reference" and x["model"] == rows[0]["reference"]}
    assert ref_rows == {XR_TOKEN} and rows[0]["reference"].startswith("XLM-R-base")
    for x in rows:
        assert {"speedup_vs_reference", "compression_vs_reference"} <= set(x)
        assert "speedup_vs_mbert_base" not in x and "compression_vs_mbert_base" not in x
    with single_thread():
        built = AutoModelForTokenClassification.from_config(XLMRobertaConfig.from_pretrained(tiny["xlmr_ref"], num_labels=7))
    xr = next(x for x in result["json"]["rows"] if x["model"] == XR_TOKEN)
    assert xr["parameters"] == sum(p.numel() for p in built.parameters())
    assert rows[0]["compression_vs_reference"] == pytest.approx(xr["parameters"] / rows[0]["parameters"])
    ner = next(x for x in result["json"]["rows"] if x["model"] == NER)
    assert ner["parameters"] == rows[0]["parameters"] and ner["compression_vs_reference"] != rows[0]["compression_vs_reference"]
    assert result["json"]["goals"]["students"][XLMR]["reference"] == XR_TOKEN


def test_goals(result):
    g = result["json"]["goals"]
    assert g["batch_size"] == max(BATCHES) and set(g["students"]) == {NER, CLS, XLMR}
    assert g["targets"]["speedup_torch_vs_reference"] == {"token": 300.0}
    ner, cls, xlmr = g["students"][NER], g["students"][CLS], g["students"][XLMR]
    for v in (ner, xlmr):  # token-level students: the 300x goal
        assert v["level"] == "token" and v["speedup_goal"] == 300.0 and isinstance(v["speedup_goal_met"], bool)
    assert cls["level"] == "sequence" and cls["speedup_goal"] is None and cls["speedup_goal_met"] is None
    for name, v in g["students"].items():
        assert v["reference"] == COMPARED[name]
        assert set(v["onnx_fp32_speedup_vs_torch"]) == {str(b) for b in BATCHES}
        assert isinstance(v["onnx_fp32_not_slower_than_torch"], bool) and isinstance(v["int8_faster_than_fp32"], bool)
        assert v["compression_goal_met"] == (v["compression_vs_reference"] >= 35)


def test_per_student_latency_and_card(result, tiny):
    for d, model in ((tiny["ner"], NER), (tiny["cls"], CLS), (tiny["xlmr"], XLMR)):
        s = json.loads((d / "latency.json").read_text())
        assert list(s) == ["settings", "machine", "references", "rows", "goals"]
        assert {x["model"] for x in s["rows"]} == {model, COMPARED[model]} and len(s["rows"]) == 2 * 3 * len(BATCHES)
        assert [i["name"] for i in s["references"]] == [COMPARED[model]]
        assert set(s["goals"]["students"]) == {model}
        card = (d / "README.md").read_text()
        assert "## Latency" in card and "onnx-int8" in card and "speedup_vs_reference" in card


def test_reference_onnx_is_cached(result, tiny):
    """A second export with the same identity reuses the cached file; another identity re-exports."""
    with single_thread():
        torch.manual_seed(0)
        model = AutoModelForTokenClassification.from_config(bert_config(len(tiny["tok"]))).eval()
        c = bm.Candidate(name=MB_TOKEN, role="reference", task="t", path="x", level=TOKEN, num_labels=7, parameters=1,
                         known_ids=np.arange(5, 40), forward=bm.LogitsModule(model).eval(),
                         reference=REFERENCE_MODELS["mbert-base"])
        first = bm.prepare_onnx(c, "test-mbert-base-token-7", "identity-a", 1)
        assert first["cached"] is False and first["max_abs_logit_diff"] < 1e-3
        assert c.onnx["int8"] == cache_root() / "onnx" / "test-mbert-base-token-7.int8.onnx"
        assert bm.prepare_onnx(c, "test-mbert-base-token-7", "identity-a", 1)["cached"] is True
        assert bm.prepare_onnx(c, "test-mbert-base-token-7", "identity-b", 1)["cached"] is False


def test_student_candidate_draws_from_known_ids(tiny):
    c = candidates.load_student_candidate(tiny["ner"])
    model, _ = load_student(tiny["ner"])
    assert np.array_equal(c.known_ids, model.known_input_ids())
    assert tiny["tok"].pad_token_id not in c.known_ids and tiny["tok"].unk_token_id not in c.known_ids
    assert c.level is TOKEN and c.reference.key == "mbert-base" and c.ref_key == ("mbert-base", "token", 7)
    cls = candidates.load_student_candidate(tiny["cls"])  # saved without a "reference" key
    assert cls.level is SEQUENCE and cls.ref_key == ("mbert-base", "sequence", 2)


def test_folder_without_student_is_a_config_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"--students .*empty: no xdistill student here"):
        bm.main(["--students", str(tmp_path / "empty"), "--quick", "--output-dir", str(tmp_path / "out")])
    with pytest.raises(ConfigError, match="no such directory"):
        bm.main(["--students", str(tmp_path / "missing"), "--quick", "--output-dir", str(tmp_path / "out")])


def test_student_without_onnx_is_a_config_error(tmp_path, tiny):
    d = make_student_dir(tmp_path / "run" / "student", tiny["tok"])
    with pytest.raises(ConfigError, match=r"onnx/model\.onnx does not exist.*xdistill export --model .* --quantize int8"):
        bm.main(["--students", str(d), "--quick", "--output-dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_student_with_unknown_reference_is_a_config_error(tmp_path, tiny):
    d = shutil.copytree(tiny["ner"], tmp_path / "student")
    set_reference(d, "gpt-base")
    with pytest.raises(ConfigError, match=r"config\.json: unknown reference model 'gpt-base'"):
        bm.main(["--students", str(d), "--quick", "--output-dir", str(tmp_path / "out")])


def test_parse_batch_sizes():
    assert options.parse_batch_sizes("1,32") == [1, 32]
    assert options.parse_batch_sizes(" 32, 1,1") == [1, 32]
    for bad in ("0", "1,x", "", "1.5", "-1", "1,,2", "4,0"):
        with pytest.raises(ConfigError, match="--batch-sizes"):
            options.parse_batch_sizes(bad)


@pytest.mark.parametrize("option,value", [("--batch-sizes", "0"), ("--batch-sizes", "1,x"), ("--sequence-length", "0"),
                                          ("--repeats", "0"), ("--warmup", "-1"), ("--threads", "two"), ("--seed", "1.5"),
                                          ("--reference", "xlmr-base"), ("--reference", "gpt-base=x")])
def test_main_rejects_bad_options(tmp_path, option, value):
    with pytest.raises(ConfigError, match=option):
        bm.main(["--students", str(tmp_path), option, value, "--output-dir", str(tmp_path / "out")])


def test_settings_defaults_and_quick():
    p = bm.build_parser()
    s = bm.settings_from_args(p.parse_args(["--students", "x"]))
    assert (s.batch_sizes, s.sequence_length, s.warmup, s.repeats, s.quick) == ([1, 32], 32, options.DEFAULT_WARMUP,
                                                                                 options.DEFAULT_REPEATS, False)
    assert s.threads == torch.get_num_threads()
    q = bm.settings_from_args(p.parse_args(["--students", "x", "--quick", "--repeats", "5"]))
    assert (q.warmup, q.repeats, q.quick) == (options.QUICK_WARMUP, 5, True)


def test_reference_options():
    p = bm.build_parser()

    def choices(*argv):
        return bm.reference_choices(p.parse_args(["--students", "x", *argv]))

    assert choices() == {}
    got = choices("--reference", "xlm-roberta-base=some/dir=x", "--mbert", "m")  # a hub id as KEY; '=' in the value
    assert got["xlmr-base"].spec == "some/dir=x" and got["xlmr-base"].model.name == "XLM-R-base"
    assert got["mbert-base"].spec == "m" and got["mbert-base"].option == "--mbert m"
    assert choices("--reference", "mbert-base=a", "--mbert", "a")["mbert-base"].spec == "a"  # the same twice is fine
    with pytest.raises(ConfigError, match="--mbert b: mBERT-base is already given as 'a'"):
        choices("--reference", "mbert-base=a", "--mbert", "b")
    with pytest.raises(ConfigError, match="--reference xlmr-base=: expected KEY=ID_OR_DIR"):
        choices("--reference", "xlmr-base=")
    default = options.ReferenceChoice.default(REFERENCE_MODELS["xlmr-base"])
    assert default.spec == "xlm-roberta-base" and default.is_default


def test_unneeded_reference_override_is_ignored(caplog):
    choice = options.ReferenceChoice(REFERENCE_MODELS["xlmr-base"], "/nowhere", "--reference xlmr-base=/nowhere")
    with caplog.at_level("WARNING"):
        assert bm.resolve_references([], {"xlmr-base": choice}) == {}
    assert "--reference xlmr-base=/nowhere: no student or teacher is compared with XLM-R-base" in caplog.text


def test_inputs_and_stats():
    known = np.array([5, 9, 11])
    ids, mask = bm.make_inputs(known, 4, 7, seed=3)
    assert ids.shape == (4, 7) and ids.dtype == np.int64 and set(ids.ravel()) <= set(known) and mask.all()
    assert np.array_equal(ids, bm.make_inputs(known, 4, 7, seed=3)[0])
    st = bm.latency_stats([1.0, 2.0, 3.0, 4.0, 10.0], batch_size=2)
    assert st["median_ms"] == 3.0 and st["p90_ms"] == pytest.approx(np.percentile([1, 2, 3, 4, 10], 90))
    assert (st["min_ms"], st["max_ms"], st["mean_ms"]) == (1.0, 10.0, 4.0)
    assert st["sequences_per_second"] == pytest.approx(2 / 0.003)


@pytest.fixture
def offline(monkeypatch):
    """The hub is not reachable (the probe fails fast) and nothing is cached."""
    monkeypatch.setattr(references, "hub_probe", lambda repo, option, timeout=references.HUB_TIMEOUT_S:
                        (False, "ConnectError: offline"))
    monkeypatch.setattr(references, "cached_hub_file", lambda repo, name: None)


@pytest.mark.parametrize("key", sorted(REFERENCE_MODELS))
def test_reference_falls_back_to_builtin_config_offline(offline, key):
    """Without the hub and no override: the registry's configuration of each reference, random weights."""
    ref = REFERENCE_MODELS[key]
    src = bm.resolve_reference(options.ReferenceChoice.default(ref))
    c = src.config
    assert src.weights == "random" and RANDOM_NOTE in src.note and "offline" in src.source and "built in" in src.source
    assert c.model_type == ref.model_type and (c.vocab_size, c.num_hidden_layers) == (ref.vocab_size, 12)
    assert {k: getattr(c, k) for k in ref.config} == ref.config
    with pytest.raises(ConfigError, match="--mbert someone/other-model: .*hub is not reachable"):
        bm.resolve_reference(options.ReferenceChoice(ref, "someone/other-model", "--mbert someone/other-model"))


def test_offline_run_reports_the_builtin_reference(offline, monkeypatch, tmp_path, tiny):
    """A run with no override and no hub builds XLM-R-base from the registry's configuration (checked
    here; the model itself is shrunk to 1 layer of width 4, so the 12-layer model is not exported)."""
    seen = []

    def small_model(src, level, num_labels, seed):
        seen.append(src.config)
        sizes = {"hidden_size": 4, "num_hidden_layers": 1, "num_attention_heads": 1, "intermediate_size": 4}
        config = src.config.__class__(**{**src.model.config, **sizes, "num_labels": num_labels})
        torch.manual_seed(seed)
        return level.auto_model_class.from_config(config).eval(), "random"

    monkeypatch.setattr(references, "build_reference_model", small_model)
    d = shutil.copytree(tiny["xlmr"], tmp_path / "run" / "student")
    out = tmp_path / "out"
    assert bm.main(["--students", str(d), "--no-teachers", "--batch-sizes", "2", "--sequence-length", "8", "--quick",
                    "--threads", "1", "--output-dir", str(out)]) == 0
    ref = REFERENCE_MODELS["xlmr-base"]
    assert len(seen) == 1 and seen[0].model_type == ref.model_type
    assert (seen[0].vocab_size, seen[0].num_hidden_layers) == (ref.config["vocab_size"], ref.config["num_hidden_layers"])
    (info,) = json.loads((out / "latency.json").read_text())["references"]
    assert info["name"] == XR_TOKEN and info["key"] == "xlmr-base" and info["weights"] == "random"
    assert "built in" in info["source"] and "hub not reachable" in info["source"]
    assert RANDOM_NOTE in info["note"] and "12 layers" in info["note"] and "250,002" in info["note"]
    assert info["paper_parameters"] == ref.parameters
    assert "built in" in (out / "latency.md").read_text()


def test_reference_folder_without_config_is_a_config_error(tmp_path):
    choice = options.ReferenceChoice(REFERENCE_MODELS["mbert-base"], str(tmp_path), f"--mbert {tmp_path}")
    with pytest.raises(ConfigError, match="--mbert .*config.json"):
        bm.resolve_reference(choice)


def test_script_prints_one_line_error(tmp_path, capsys):
    mod = load_script("benchmark_latency")
    assert mod.run(["--students", str(tmp_path), "--quick", "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --students") and "Traceback" not in "\n".join(err)


def test_student_metrics_put_onnx_runtimes_on_the_run_evaluation(tmp_path):
    """With a training summary, PyTorch's metric is the run's and each ONNX runtime's is shifted by
    its parity difference, so teacher and student rows compare on one evaluation."""
    student_metrics = candidates.student_metrics
    d = tmp_path / "student"
    (d / "onnx").mkdir(parents=True)
    (d / "onnx" / "parity.json").write_text(json.dumps({"metric": "f1", "scores": {
        "torch_fp32": {"f1": 60.0}, "onnx_fp32": {"f1": 60.0}, "onnx_int8": {"f1": 59.75}}}))
    assert student_metrics(d) == ("f1", {"torch-fp32": 60.0, "onnx-fp32": 60.0, "onnx-int8": 59.75})
    (d / "training_summary.json").write_text(json.dumps({"metric": "f1", "scores": {"student": {"f1": 55.5}}}))
    k, v = student_metrics(d)
    assert k == "f1" and v["torch-fp32"] == 55.5 and v["onnx-fp32"] == 55.5 and v["onnx-int8"] == pytest.approx(55.25)
    (d / "onnx" / "parity.json").unlink()
    assert student_metrics(d) == ("f1", {"torch-fp32": 55.5})
    assert student_metrics(tmp_path / "none") == (None, {})
