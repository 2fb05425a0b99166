"""Generated transfer text for NER (issue 13): the script filter, entity rates and the entity filter,
language tags in the generator's prompts, bad options, and a smoke ``ner --augment generate`` run on
two real languages with report rows for the three transfer sets."""

from __future__ import annotations

import json
import logging
import warnings
from types import SimpleNamespace

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import tiny
from xdistill.cli import main
from xdistill.config import GenerationArguments, NERGenerationArguments
from xdistill.errors import ConfigError
from xdistill.transfer import generated as generated_module
from xdistill.transfer import generation
from xdistill.transfer.filters import filter_generated, script_share, teacher_entropy
from xdistill.transfer.generated import _scripts, _warn_empty
from xdistill.transfer.sources import resolve_transfer_sets

# --------------------------------------------------------------------------- script filter


@pytest.mark.parametrize("text, script, share", [
    ("Berlin ist die Hauptstadt", "Latn", 1.0),
    ("Москва – столица России", "Cyrl", 1.0),
    ("Москва is big", "Cyrl", 6 / 11),         # 6 Cyrillic letters of 11
    ("東京はにほんの首都です", "Jpan", 1.0),       # Han, Hiragana: Jpan is their union
    ("서울은 韓國의 수도", "Kore", 1.0),            # Hangul and Han
    ("2024 , 12 : ( )", "Latn", 0.0),           # no letters at all
    ("मुंबई भारत", "Deva", 1.0),                  # combining marks count with their script
    ("Paris", "Cyrl", 0.0),
])
def test_script_share(text, script, share):
    assert script_share(text, script) == pytest.approx(share)


def test_unknown_script_code_is_a_clear_error():
    with pytest.raises(ConfigError, match="--script-share: the script 'Xyzw' is not a Unicode script"):
        script_share("abc", "Xyzw")


def test_script_filter_counts_and_keeps_the_language():
    args = NERGenerationArguments(augment="generate", transfer="both", script_share=0.5)
    texts = ["Angela Merkel besuchte Paris im Mai", "Владимир Путин посетил Париж в мае", "Berlin und Москва и Киев здесь"]
    kept, counts = filter_generated(texts, [], args, "Latn")
    assert kept == texts[:1] and counts["removed_script"] == 2
    kept, counts = filter_generated(texts, [], args, None)  # no script known: the filter is off
    assert kept == texts and counts["removed_script"] == 0
    off = NERGenerationArguments(augment="generate", transfer="both", script_share=0.0)
    assert filter_generated(texts, [], off, "Latn")[0] == texts


# --------------------------------------------------------------------------- entity rate


def test_prediction_profile_entity_rates():
    a = tiny.make_adapter()
    preds = [["B-PER", "I-PER", "O", "B-LOC"],   # 2 entities, 3 of 4 words
             ["O", "O", "O"],                    # none
             ["I-ORG", "I-ORG", "O", "I-LOC"]]   # I- without B- starts an entity (seqeval): 2
    p = a.prediction_profile(preds)
    assert p["n"] == 3
    assert p["entity_words"] == pytest.approx(100 * 6 / 11, abs=0.01)
    assert p["sentences_with_entity"] == pytest.approx(100 * 2 / 3, abs=0.01)
    assert p["entities_per_sentence"] == pytest.approx(4 / 3, abs=1e-3)
    assert p["labels"]["O"] == pytest.approx(100 * 5 / 11, abs=0.01)
    assert sum(p["labels"].values()) == pytest.approx(100, abs=0.05)
    assert a.informative(preds[0]) and not a.informative(preds[1])


def test_teacher_entropy_per_example_over_words():
    a = tiny.make_adapter()
    tok = tiny.make_tokenizer(__import__("tempfile").mkdtemp())
    enc = a.encode({"tokens": [["Anna", "lives"], ["Paris"]], "tags": [[], []]}, tok, 16)
    certain = torch.full((7,), -30.0)
    certain[0] = 30.0
    rows = []
    for r in range(len(enc)):
        x = torch.zeros(len(enc.input_ids[r]), 7)  # uniform at every position
        if r == 1:
            x[:] = certain
        rows.append(x.numpy())
    h = teacher_entropy(rows, enc)
    assert h.shape == (2,) and h[0] == pytest.approx(1.0) and h[1] == pytest.approx(0.0, abs=1e-6)


def test_teacher_filters_drop_unsure_and_entityless_samples(monkeypatch):
    """The teacher's predictions decide: an entity-free sample is kept with probability
    keep_without_entities; one with entropy above the bound never."""
    a = tiny.make_adapter()
    tok = tiny.make_tokenizer(__import__("tempfile").mkdtemp())
    args = NERGenerationArguments(augment="generate", transfer="both", keep_entityless=0.0, max_teacher_entropy=0.5)

    class Teacher:
        def logits(self, level, enc, pad):
            out = []
            for r in range(len(enc)):
                x = torch.full((len(enc.input_ids[r]), 7), -30.0)
                x[:, 0] = 30.0                       # O everywhere: certain, no entity
                if enc.example[r] == 0:
                    x[:, 0], x[:, 1] = -30.0, 30.0   # B-PER everywhere: certain, an entity
                if enc.example[r] == 2:
                    x[:] = 0.0                       # uniform: unsure
                out.append(x.numpy())
            return out

    ctx = SimpleNamespace(generation=args, adapter=a, tokenizer=tok, max_length=16, teacher=Teacher(), seed=0)
    counts = {"en": {"removed_entropy": 0, "removed_entityless": 0, "removed_balance": 0}}
    enc, groups, texts, preds = generated_module._teacher_filter(ctx, {"en": ["Anna Paris", "lives in", "the city"]}, counts)
    assert texts == ["Anna Paris"] and groups == ["en"] and len(enc.n_words) == 1
    assert counts["en"] == {"removed_entropy": 1, "removed_entityless": 1, "removed_balance": 0}


def test_balance_downsamples_to_the_rarest_predicted_class():
    import random

    preds = ["pos", "pos", "neg", "pos", "neg", "pos", "pos"]
    order = [("imdb", f"t{i}") for i in range(len(preds))]
    counts = {"imdb": {"removed_balance": 0}}
    keep = generated_module._balance(list(range(len(preds))), preds, order, counts, random.Random(0))
    assert sorted(preds[i] for i in keep) == ["neg", "neg", "pos", "pos"] and keep == sorted(keep)
    assert counts["imdb"]["removed_balance"] == 3
    assert not NERGenerationArguments().balance_labels and GenerationArguments(balance_classes=True).balance_labels


# --------------------------------------------------------------------------- the generator's prompts


def test_language_tag_reaches_the_generator_prompt(tmp_path, monkeypatch):
    tok = tiny.make_tokenizer(tmp_path / "tok")
    args = NERGenerationArguments(augment="generate", transfer="both", generator_layers=1, generator_hidden_size=8,
                                  generator_heads=2, generator_epochs=1.0, prompt_words=1)
    texts = {"de": ["Anna lives in Paris", "Bob visits Berlin"], "sw": ["Acme Corp is big", "Paris is a city"]}
    seen = {}

    def fake_sample(gen, prompts, args, strip_prompt):
        seen["prompts"], seen["tags"], seen["bos"] = prompts, dict(gen.tags), gen.bos
        return [gen.decode(p) for p in prompts]

    monkeypatch.setattr(generation, "sample", fake_sample)
    out = generation.generate_samples(args, tok, texts, {"de": [], "sw": []}, 3, True, tmp_path / "run", seed=0)
    tags = seen["tags"]
    assert set(tags) == {"de", "sw"} and len(set(tags.values())) == 2
    heads = [p[:2] for p in seen["prompts"]]
    assert all(h[0] == seen["bos"] for h in heads)
    assert all(h[1] == tags["de"] for h in heads[:3]) and all(h[1] == tags["sw"] for h in heads[3:])
    assert all(len(p) == 3 for p in seen["prompts"])  # BOS, the tag, one subword of a real sentence
    assert set(out.texts) == {"de", "sw"} and all(len(v) == 3 for v in out.texts.values())
    assert all("xdistill" not in t for v in out.texts.values() for t in v)  # tags are not text
    # cached: the same call reads the generator and the samples back, a new sampling option samples anew
    again = generation.generate_samples(args, tok, texts, {"de": [], "sw": []}, 3, True, tmp_path / "run", seed=0)
    assert again.cached and again.texts == out.texts


def test_untagged_generator_for_one_group(tmp_path):
    tok = tiny.make_tokenizer(tmp_path / "tok")
    args = GenerationArguments(augment="generate", transfer="both", generator_layers=1, generator_hidden_size=8,
                               generator_heads=2, generate=4, generator_max_length=12)
    gen = generation.scratch_generator(args, tok, {"imdb": ["Anna lives in Paris"]}, tagged=False)
    assert gen.tags == {} and gen.rows(["Anna lives"], "imdb", 12)[0][0] == gen.bos
    assert gen.rows(["Anna lives"], "imdb", 12)[0][1] != gen.bos


def test_generator_without_bos_or_eos_is_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny.make_tokenizer(tmp_path / "tok")   # WordPiece: [CLS]/[SEP], no BOS or EOS token
    path = tmp_path / "gen"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=8, n_layer=1, n_head=2)).save_pretrained(path)
    tok.save_pretrained(path)
    args = NERGenerationArguments(augment="generate", transfer="both", generator=str(path))
    with pytest.raises(ConfigError, match="--generator: the tokenizer of .* has neither a BOS nor an EOS token"):
        generation.pretrained_generator(args, tok, ["de"], tagged=True)
    tok.bos_token, tok.eos_token = "[CLS]", "[SEP]"
    tok.save_pretrained(path)
    gen = generation.pretrained_generator(args, tok, ["de", "sw"], tagged=True)
    assert set(gen.tags) == {"de", "sw"} and min(gen.tags.values()) >= len(tiny.VOCAB)
    assert gen.model.get_input_embeddings().weight.shape[0] == len(tiny.VOCAB) + 2
    assert gen.rows(["Anna lives"], "sw", 12)[0][:2] == [gen.bos, gen.tags["sw"]]


def test_unreachable_generator_names_the_option(tmp_path):
    args = NERGenerationArguments(augment="generate", transfer="both", generator=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="--generator: could not load"):
        generation.pretrained_generator(args, None, ["de"], tagged=True)
    with pytest.raises(ConfigError, match="--generator: could not load"):  # checked before the run starts
        resolve_transfer_sets(["unlabeled", "both"], args)


# --------------------------------------------------------------------------- bad options


@pytest.mark.parametrize("kw, option", [
    ({"generate_per_lang": 0}, "--generate-per-lang"),
    ({"script_share": 1.5}, "--script-share"),
    ({"keep_entityless": -0.1}, "--keep-entityless"),
    ({"max_teacher_entropy": 0.0}, "--max-teacher-entropy"),
])
def test_bad_generation_options(kw, option):
    with pytest.raises(ConfigError, match=option):
        NERGenerationArguments(augment="generate", transfer="both", **kw)


def test_augment_without_a_generated_set_is_refused():
    with pytest.raises(ConfigError, match="--augment generate: no transfer set in --transfer unlabeled"):
        resolve_transfer_sets(["unlabeled"], NERGenerationArguments(augment="generate"))


def test_language_without_a_script_is_refused():
    a = tiny.make_adapter()
    ctx = SimpleNamespace(generation=NERGenerationArguments(augment="generate", transfer="both"), adapter=a,
                          data=SimpleNamespace(groups={"de": None, "xx-made-up": None}))
    with pytest.raises(ConfigError, match="--script-share: the language registry has no script for xx-made-up"):
        _scripts(ctx)
    assert _scripts(SimpleNamespace(generation=NERGenerationArguments(script_share=0), adapter=a,
                                    data=ctx.data)) == {"de": None, "xx-made-up": None}


def test_a_language_filtered_out_entirely_is_a_warning(caplog):
    counts = {"de": {"sampled": 10, "kept": 4, "removed_length": 6, "removed_script": 0, "removed_duplicate": 0,
                     "removed_near_duplicate": 0, "removed_held_out_overlap": 0, "removed_entropy": 0, "removed_entityless": 0,
                     "removed_balance": 0},
              "my": {"sampled": 10, "kept": 0, "removed_length": 1, "removed_script": 9, "removed_duplicate": 0,
                     "removed_near_duplicate": 0, "removed_held_out_overlap": 0, "removed_entropy": 0, "removed_entityless": 0,
                     "removed_balance": 0}}
    with caplog.at_level(logging.WARNING):
        warnings = _warn_empty(counts)
    assert len(warnings) == 1 and "every sample of my was filtered out" in warnings[0]
    assert "--script-share: 9" in warnings[0] and "my" in caplog.text


# --------------------------------------------------------------------------- a smoke run on real data


@pytest.mark.integration
def test_smoke_ner_run_with_generated_text(tmp_path, data_dir):
    out = tmp_path / "run"
    argv = ["ner", "--preset", "smoke", "--data-dir", str(data_dir), "--output-dir", str(out), "--augment", "generate",
            "--transfer", "unlabeled,generated,both", "--generate-per-lang", "60", "--generator-layers", "1",
            "--generator-hidden-size", "32", "--keep-entityless", "0.5"]
    assert main(argv) == 0
    r = json.loads((out / "report.json").read_text())
    assert [m["transfer"] for m in r["models"]][-3:] == ["unlabeled", "generated", "both"]
    langs = set(r["languages"])
    assert len(langs) == 2
    for lang in langs:  # per-language rows for every student
        assert {"student_f1", "student_generated_f1", "student_both_f1"} <= set(r["languages"][lang])
    g = r["generation"]
    assert set(g["per_group"]) == langs and all(c["sampled"] == 60 for c in g["per_group"].values())
    assert g["kept"] == sum(c["kept"] for c in g["per_group"].values()) == g["sampled"] - sum(g["removed"].values())
    prof = r["transfer_profile"]
    assert set(prof) == {"unlabeled", "generated", "both"} and prof["generated"]["n"] == g["kept"]
    assert 0 <= prof["generated"]["sentences_with_entity"] <= 100
    md = (out / "report.md").read_text()
    assert "Generated transfer text" in md and "The teacher's predictions on each transfer set" in md


# --------------------------------------------------------------------------- the benchmark's summary


def test_benchmark_summary_means_and_low_resource_rows():
    bench = tiny.load_script("benchmark_generation")
    langs = {"de": (50.0, 40.0, 52.0, 600), "yo": (30.0, 36.0, 35.0, 500), "qu": (20.0, 30.0, 28.0, 0)}
    report = {
        "task": "wikiann", "metric": "f1", "command": "python -m xdistill ner ...", "student": {"transfer": "unlabeled"},
        "groups": {g: {"student_f1": u, "student_generated_f1": gen, "student_both_f1": b, "teacher_f1": 60.0}
                   for g, (u, gen, b, _) in langs.items()},
        "data": {"per_group": {g: {"transfer": n} for g, (*_, n) in langs.items()}},
        "generation": {"per_group": {g: {"kept": 10} for g in langs}, "generator": "GPT-2", "train_texts": 9,
                       "sampled": 60, "kept": 30, "removed": {}, "perplexity": {"samples": 9.0, "held_out": 20.0},
                       "distinct": {}, "seconds_training": 60.0, "seconds_sampling": 60.0, "seconds_filtering": 6.0},
        "transfer_profile": {"unlabeled": {"n": 3, "labels": {"O": 80.0}, "entity_words": 20.0}},
        "timing": {"seconds": {"generation": 126.0}, "total_seconds": 600.0, "peak_rss_mib": 1000.0},
    }
    s, md = bench.summarise(report, teacher_minutes=10.0)
    assert s["means"]["all"]["both - unlabeled"] == pytest.approx((2 + 5 + 8) / 3)
    assert s["means"]["low_resource"]["both - unlabeled"] == pytest.approx((5 + 8) / 2)  # yo, qu
    assert s["minutes"] == pytest.approx(20.0) and s["generation_share"] == pytest.approx(2.1 / 20.0)
    assert "Languages with 100 train sentences" in md and "| qu" in md


def test_draw_is_nucleus_sampling_over_the_top_k():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).repeat(20000, 1)
    counts = torch.bincount(generation.draw(logits, 1.0, 0.7), minlength=3) / 20000
    # 0.5 + 0.3 reach the mass 0.7: the third id is cut, the others renormalised (5/8, 3/8)
    assert counts[2] == 0 and counts[0] == pytest.approx(5 / 8, abs=0.02)
    assert set(generation.draw(logits, 1.0, 1.0, top_k=1).tolist()) == {0}
    assert set(generation.draw(logits, 1.0, 0.01).tolist()) == {0}


def test_sample_with_the_key_value_cache_equals_decoding_without_it():
    """Greedy decoding (``top_p`` that keeps only the likeliest id) through the model's key-value cache gives
    the tokens of recomputing the whole prefix at every step, without transformers' deprecation warning for
    the cache argument's old name (``past_key_values``, removed in transformers 5.40)."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=40, n_positions=64,
                                       bos_token_id=1, eos_token_id=2, pad_token_id=0))
    gen = SimpleNamespace(model=model, eos=2, pad=0, decode=lambda row: " ".join(map(str, row)))
    prompts = [[1, 5, 6], [1, 7, 8], [1, 9]]
    opts = SimpleNamespace(generator_max_length=12, temperature_sampling=1.0, top_p=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        texts = generation.sample(gen, prompts, opts, strip_prompt=False)
    for prompt, text in zip(prompts, texts):
        ids = list(prompt)
        with torch.no_grad():
            while len(ids) < opts.generator_max_length:
                nxt = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
                if nxt == gen.eos:
                    break
                ids.append(nxt)
        assert text == " ".join(map(str, ids))
    assert generation.key_value_cache_argument(model) in ("cache", "past_key_values")
