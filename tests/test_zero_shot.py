"""Zero-shot distillation's parts on tiny models: the straight-through Gumbel step, the generator's
objective, the adversarial plugin's checkpoint state, OOD text reading and filtering, the options."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

import tiny
from tiny import single_thread  # noqa: F401  (module fixture)
from xdistill.adapters import TOKEN
from xdistill.cli import parse_distill_args
from xdistill.config.zero_shot import ZeroShotArguments
from xdistill.distill.adversarial import (AdversarialExamples, AdversarialOptions, choose_positions, masked_logits,
                                          mix_embeddings, straight_through_one_hot, top_candidates)
from xdistill.errors import ConfigError, DataFormatError
from xdistill.teachers import Teacher
from xdistill.teachers.base import TeacherInfo
from xdistill.teachers.generator import check_generator_vocabulary, prepare_generator, scratch_generator_arguments
from xdistill.teachers.mlm import _build_mlm_model
from xdistill.transfer.ood import cut_spans, filter_overlap, read_ood_text, read_source, resolve_sources


def _generator(tokenizer, seed: int = 0) -> BertForMaskedLM:
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    return BertForMaskedLM(cfg).eval()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Tokenizer, a tiny teacher (wrapped), a tiny BiLSTM student, a tiny MLM generator, and a batch."""
    tokenizer = tiny.make_tokenizer(tmp_path_factory.mktemp("tok"))
    model = tiny.make_teacher(tokenizer)
    adapter = tiny.make_adapter()
    enc = adapter.encode(tiny.sentences(16, seed=1, labeled=False), tokenizer, 24)
    student = tiny.make_student(tokenizer, model, [enc], hidden_size=8)
    teacher = Teacher(model, tokenizer, info=None)
    batch = adapter.collate(enc, list(range(8)), tokenizer.pad_token_id)
    vocab = torch.tensor(sorted({i for ids in enc.input_ids for i in ids} - set(tokenizer.all_special_ids)))
    return tokenizer, teacher, student, batch, vocab


def test_straight_through_forward_is_one_hot_and_gradient_reaches_the_logits():
    torch.manual_seed(0)
    logits = torch.randn(5, 7, requires_grad=True)
    y = straight_through_one_hot(logits, temperature=1.0)
    assert torch.equal(y.sum(-1), torch.ones(5)) and set(y.unique().tolist()) == {0.0, 1.0}
    (y * torch.arange(7.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_gradient_reaches_the_generator_through_both_models(pair):
    tokenizer, teacher, student, batch, vocab = pair
    gen = _generator(tokenizer)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    torch.manual_seed(1)
    pos = choose_positions(ids, mask, torch.tensor(tokenizer.all_special_ids), 0.3)
    assert pos.any(1)[mask.sum(1) > 2].all() and not (pos & ~mask.bool()).any()
    assert not torch.isin(ids[pos], torch.tensor(tokenizer.all_special_ids)).any()
    logits = masked_logits(gen, ids.masked_fill(pos, tokenizer.mask_token_id), mask, pos, vocab)
    assert logits.shape == (int(pos.sum()), len(vocab))
    values, candidates = top_candidates(logits, vocab, 5)
    assert values.shape == candidates.shape == (int(pos.sum()), 5) and torch.isin(candidates, vocab).all()
    y = straight_through_one_hot(values, 1.0)
    t_in = mix_embeddings(teacher.embed(ids).detach(), pos, y, teacher.embed(candidates).detach())
    # forward: the replaced positions hold exactly the embedding of the sampled token, the others are unchanged
    chosen = candidates.gather(1, y.argmax(-1, keepdim=True)).squeeze(1)
    assert torch.allclose(t_in[pos], teacher.embed(chosen)) and torch.equal(t_in[~pos], teacher.embed(ids)[~pos])
    out = teacher.logits_from_embeddings(t_in, mask).sum() + student(ids, mask, inputs_embeds=mix_embeddings(
        student.embed(ids).detach(), pos, y, student.embed(candidates).detach())).logits.sum()
    grads = torch.autograd.grad(out, [p for p in gen.parameters()], allow_unused=True)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


def _mean_divergence(plugin: AdversarialExamples, student, ids, mask, seed: int) -> float:
    """Mean KL(teacher || student) over 20 generator samples with a fixed seed (no update)."""
    torch.manual_seed(seed)
    values = []
    with torch.no_grad():
        for _ in range(20):
            perturbed = plugin.perturb(ids, mask)
            t = plugin.teacher.model(input_ids=perturbed, attention_mask=mask).logits
            values.append(float(AdversarialExamples._divergence(plugin, student(perturbed, mask).logits, t, mask)))
    return sum(values) / len(values)


class _Descending(AdversarialExamples):
    """The same plugin with the generator's objective negated (it then lowers the divergence)."""

    def _divergence(self, student_logits, teacher_logits, mask, detach_teacher=True):
        return -super()._divergence(student_logits, teacher_logits, mask, detach_teacher)


def test_generator_updates_increase_the_divergence(pair):
    """40 generator updates raise the expected divergence on perturbed rows (by 16-19% on this tiny pair);
    the same updates on the negated objective lower it: the sign and the gradient path are right."""
    tokenizer, teacher, student, batch, vocab = pair
    student.eval()
    ids, mask = batch["input_ids"], batch["attention_mask"]
    after = {}
    for cls in (AdversarialExamples, _Descending):
        opts = AdversarialOptions(mask_fraction=0.5, lr=3e-2, batch_size=8)
        plugin = cls(teacher, _generator(tokenizer, seed=3), vocab, tokenizer.mask_token_id, tokenizer.all_special_ids,
                     TOKEN, opts)
        before = _mean_divergence(plugin, student, ids, mask, seed=11)
        torch.manual_seed(5)
        for _ in range(40):
            plugin.generator_update(student, ids, mask)
        after[cls] = _mean_divergence(plugin, student, ids, mask, seed=11)
        assert plugin.stats["generator_updates"] == 40
    assert after[AdversarialExamples] > 1.1 * before > 1.1 * 1.1 * after[_Descending], (before, after)
    student.train()


def test_plugin_state_round_trips(pair):
    tokenizer, teacher, student, batch, vocab = pair
    opts = AdversarialOptions(generator_steps=2, student_steps=3, batch_size=4)
    a = AdversarialExamples(teacher, _generator(tokenizer, seed=1), vocab, tokenizer.mask_token_id,
                            tokenizer.all_special_ids, TOKEN, opts)
    a.generator_round(student, batch)
    a.student_updates = 7
    b = AdversarialExamples(teacher, _generator(tokenizer, seed=2), vocab, tokenizer.mask_token_id,
                            tokenizer.all_special_ids, TOKEN, opts)
    b.load_state_dict(a.state_dict())
    assert tiny.state_equal(a.generator.state_dict(), b.generator.state_dict())
    assert b.student_updates == 7 and b.stats["generator_updates"] == 2
    assert b.optimizer.state_dict()["state"].keys() == a.optimizer.state_dict()["state"].keys()


def test_generator_with_another_vocabulary_is_refused(pair, tmp_path):
    tokenizer = pair[0]
    other = tiny.make_tokenizer(tmp_path)
    other.add_tokens(["extra"])
    with pytest.raises(ConfigError, match="--adversarial-generator g: its vocabulary .* differs from the teacher's"):
        check_generator_vocabulary(_generator(other), other, tokenizer, "g")
    check_generator_vocabulary(_generator(tokenizer), tokenizer, tokenizer, "g")  # the same vocabulary passes


# -- OOD text ---------------------------------------------------------------------------------------
def test_overlap_with_the_task_is_removed_and_counted():
    texts = ["Anna lives in Paris .", "anna  lives in paris.", "A new sentence about rivers", "The cat sat on the mat today",
             "a new sentence about rivers", "Bob visited New York and the old harbour"]
    task = ["Anna lives in Paris ."]
    evaluation = ["Bob visited New York and the old harbour !"]
    kept, removed = filter_overlap(texts, task + evaluation, evaluation)
    assert kept == ["A new sentence about rivers", "The cat sat on the mat today"]
    assert removed == {"task_text": 2, "duplicate": 1, "near_evaluation": 1}


def test_ood_sources_files_folders_patterns_and_hub(tmp_path):
    (tmp_path / "a.txt").write_text("one text\nanother text\n\n", encoding="utf-8")
    d = tmp_path / "dir"
    d.mkdir()
    (d / "x.txt").write_text("x one\n", encoding="utf-8")
    (d / "y.txt").write_text("y one\n", encoding="utf-8")
    (tmp_path / "de.txt").write_text("ein Satz\n", encoding="utf-8")
    (tmp_path / "s.tsv").write_text("Anna\tB-PER\nlebt\tO\n\nBob\tB-PER\n", encoding="utf-8")
    hub = tmp_path / "hubset"
    hub.mkdir()
    (hub / "train.jsonl").write_text(json.dumps({"text": "from the hub"}) + "\n", encoding="utf-8")
    specs = [str(tmp_path / "a.txt"), str(d), str(tmp_path / "{lang}.txt"), str(tmp_path / "s.tsv"), f"hub:{hub}"]
    resolved, missing = resolve_sources(specs, ["de", "fr"], None)
    assert [n for n, _ in resolved][1:3] == [str(d / "x.txt"), str(d / "y.txt")]
    assert missing == [str(tmp_path / "fr.txt")]
    texts = [read_source(w) for _, w in resolved]
    assert texts == [["one text", "another text"], ["x one"], ["y one"], ["ein Satz"], ["Anna lebt", "Bob"],
                     ["from the hub"]]
    ood = read_ood_text(ZeroShotArguments(zero_shot=True, ood_text=",".join(specs), ood_validation=0.25), ["de", "fr"],
                        None, task_texts=["x one"], eval_texts=[], seed=0)
    assert ood.removed["task_text"] == 1 and len(ood.train) + len(ood.validation) == 7 and len(ood.validation) == 2
    assert ood.sources[str(tmp_path / "a.txt")] == 2
    joined = read_ood_text(ZeroShotArguments(zero_shot=True, ood_text=str(tmp_path / "a.txt") + "," + str(d),
                                             ood_join=2, ood_validation=0.3), ["de"], None, [], [], seed=0)
    assert sorted(joined.train + joined.validation) == ["one text another text", "x one y one"]


def test_ood_spans_keep_every_word_in_order_and_are_filtered(tmp_path):
    import random

    assert cut_spans([["a", "b", "c"], [], ["d"]], (2, 2), random.Random(0)) == ["a b", "c", "d"]
    words = [[f"w{i}" for i in range(n)] for n in (1, 7, 30)]
    spans = cut_spans(words, (2, 5), random.Random(1))
    assert " ".join(spans).split() == [w for ws in words for w in ws]
    assert all(1 <= len(sp.split()) <= 5 for sp in spans) and sum(len(sp.split()) < 2 for sp in spans) <= 3
    src = tmp_path / "a.txt"
    src.write_text("Anna lebt in Berlin und Bob in Paris\nnoch ein langer Satz aus dem Netz\n", encoding="utf-8")
    ood = read_ood_text(ZeroShotArguments(zero_shot=True, ood_text=str(src), ood_span="1-1", ood_validation=0.2),
                        ["de"], None, task_texts=["Berlin"], eval_texts=[], seed=0,
                        words=lambda ts: [t.split() for t in ts])
    kept = ood.train + ood.validation
    assert "Berlin" not in kept and ood.removed == {"task_text": 1, "duplicate": 1, "near_evaluation": 0}
    assert sorted(kept) == sorted(set("Anna lebt in und Bob Paris noch ein langer Satz aus dem Netz".split()))


def test_bad_ood_sources_name_the_option_or_file(tmp_path):
    with pytest.raises(ConfigError, match="--ood-text .*nope.txt: no such file or folder"):
        resolve_sources([str(tmp_path / "nope.txt")], ["de"], None)
    with pytest.raises(ConfigError, match="--ood-text leipzig: .* expected --data-dir"):
        resolve_sources(["leipzig"], ["de"], None)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="empty.txt"):
        read_source(str(empty))
    (tmp_path / "bad.txt").write_bytes(b"fine\n\xff\xfe broken\n")
    with pytest.raises(DataFormatError, match="bad.txt:2"):
        read_source(str(tmp_path / "bad.txt"))
    with pytest.raises(ConfigError, match="--ood-text hub:.*load_dataset"):
        read_source(f"hub:{tmp_path / 'no-such-set'}")


def test_zero_shot_options_are_checked():
    with pytest.raises(ConfigError, match="--adversarial: .*expected --zero-shot"):
        ZeroShotArguments(adversarial=True)
    with pytest.raises(ConfigError, match="--zero-shot: expected --ood-text"):
        ZeroShotArguments(zero_shot=True)
    with pytest.raises(ConfigError, match="--ood-text: .*expected --zero-shot"):
        ZeroShotArguments(ood_text="a.txt")
    with pytest.raises(ConfigError, match="--mask-fraction"):
        ZeroShotArguments(zero_shot=True, ood_text="a.txt", mask_fraction=1.0)
    for bad in ("3", "0-4", "5-2", "a-b", "1-2-3"):
        with pytest.raises(ConfigError, match="--ood-span: expected MIN-MAX"):
            ZeroShotArguments(zero_shot=True, ood_text="a.txt", ood_span=bad)
    assert ZeroShotArguments(zero_shot=True, ood_text="a.txt", ood_span=" 1-10").span == (1, 10)
    z = ZeroShotArguments(zero_shot=True, ood_text="a.txt, b.txt,a.txt", adversarial=True)
    assert z.sources == ["a.txt", "b.txt"] and z.variants == ["ood", "adversarial"]


def test_the_scratch_generator_of_the_cpu_ner_preset_starts_from_random_embeddings():
    """The cpu preset's ner teacher uses --teacher-embeddings ppmi, which cannot be combined with MLM
    pretraining: the generator's options must not inherit it (a reused teacher with --adversarial failed
    after labeling its OOD text)."""
    s = parse_distill_args(["--preset", "cpu", "--zero-shot", "--ood-text", "leipzig", "--adversarial"], "ner")
    assert s.teacher.teacher_embeddings == "ppmi"
    g = scratch_generator_arguments(s.zero_shot, s.teacher)
    assert g.teacher_embeddings == "random" and g.mlm_enabled and g.teacher is None
    assert g.teacher_hidden_size == s.zero_shot.adversarial_generator_hidden


def test_generator_init_options_are_checked():
    base = dict(zero_shot=True, ood_text="a.txt", adversarial=True)
    with pytest.raises(ConfigError, match="--adversarial-generator-init: expected one of random, teacher"):
        ZeroShotArguments(**base, adversarial_generator_init="bert")
    with pytest.raises(ConfigError, match="--adversarial-generator-init teacher .*expected --adversarial-generator unset"):
        ZeroShotArguments(**base, adversarial_generator_init="teacher", adversarial_generator="some/mlm")
    with pytest.raises(ConfigError, match="--adversarial-generator-layers: .*teacher's size"):
        ZeroShotArguments(**base, adversarial_generator_init="teacher", adversarial_generator_layers=4)
    s = parse_distill_args(["--preset", "cpu", "--zero-shot", "--ood-text", "leipzig", "--adversarial",
                            "--adversarial-generator-init", "teacher"], "ner")
    with pytest.raises(ConfigError, match="--adversarial-generator-init teacher: .*no saved checkpoint"):
        scratch_generator_arguments(s.zero_shot, s.teacher, None)
    g = scratch_generator_arguments(s.zero_shot, s.teacher, "T")
    assert g.teacher == "T" and g.teacher_embeddings == "random" and g.mlm_text == "ood" and g.mlm_enabled


def _saved_teacher(tokenizer, folder, seed: int) -> TeacherInfo:
    model = tiny.make_teacher(tokenizer, seed=seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return TeacherInfo(source="scratch", trained_from_scratch=True, fine_tuned_here=True, architecture="bert",
                       parameters=0, hidden_size=model.config.hidden_size, num_layers=2, path=str(folder),
                       fingerprint=f"weights-{seed}")


def test_a_generator_started_from_the_teacher_has_its_encoder_and_a_tied_head(pair, tmp_path):
    tokenizer = pair[0]
    info = _saved_teacher(tokenizer, tmp_path / "teacher", seed=3)
    z = ZeroShotArguments(zero_shot=True, ood_text="a.txt", adversarial=True, adversarial_generator_init="teacher",
                          adversarial_generator_mlm="2")
    s = parse_distill_args(["--preset", "smoke", "--zero-shot", "--ood-text", "a.txt"], "ner")
    start = _build_mlm_model(scratch_generator_arguments(z, s.teacher, info.path), None, seed=0)
    saved = tiny.make_teacher(tokenizer, seed=3).state_dict()
    for name, value in start.bert.state_dict().items():
        assert torch.equal(value, saved[f"bert.{name}"]), name
    assert start.get_output_embeddings().weight is start.bert.embeddings.word_embeddings.weight

    texts = [" ".join(w) for w in tiny.sentences(40, seed=5, labeled=False)["tokens"]]
    gen, report = prepare_generator(z, s.teacher, tokenizer, texts, 24, tmp_path / "run", 0, False, info)
    assert gen.config.hidden_size == info.hidden_size and gen.config.num_hidden_layers == 2
    assert report["mlm"]["started_from"] == info.path and report["mlm"]["steps"] == 2
    assert "the teacher" in report["source"] and report["trained_here"]
    moved = gen.bert.embeddings.word_embeddings.weight.detach() - saved["bert.embeddings.word_embeddings.weight"]
    assert float(moved.abs().max()) > 0  # trained on the OOD text
    # a teacher trained again at the same path (other weights) gets a new generator, not the saved one
    other = _saved_teacher(tokenizer, tmp_path / "teacher", seed=4)
    gen2, _ = prepare_generator(z, s.teacher, tokenizer, texts, 24, tmp_path / "run", 0, False, other)
    assert not torch.equal(gen2.bert.encoder.layer[0].attention.self.query.weight,
                           gen.bert.encoder.layer[0].attention.self.query.weight)


def test_a_task_stage_on_labeled_data_is_refused():
    from xdistill.config import DistillArguments
    from xdistill.distill import StageContext, build_stages
    from xdistill.pipeline.zero_shot import transfer_stages

    stages = build_stages(["representation", "logits", "labeled"], DistillArguments(), StageContext(teacher_layer=2))
    kept = transfer_stages(stages, explicit=False)
    assert [s.name for s in kept] == ["representation", "logits"] and {s.select_by for s in kept} == {"loss"}
    with pytest.raises(ConfigError, match="--stages: labeled trains on the task's labeled data"):
        transfer_stages(stages, explicit=True)


def test_encoded_ood_rows_keep_word_alignment(pair):
    """Perturbed rows keep their positions: word-level decoding reads the same word ids."""
    tokenizer, teacher, student, batch, vocab = pair
    gen = _generator(tokenizer)
    opts = AdversarialOptions(mask_fraction=0.5, batch_size=8)
    plugin = AdversarialExamples(teacher, gen, vocab, tokenizer.mask_token_id, tokenizer.all_special_ids, TOKEN, opts)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    out = plugin.perturb(ids, mask)
    assert out.shape == ids.shape
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    assert torch.equal(out[special], ids[special])  # [CLS], [SEP], padding stay where they were
    assert torch.isin(out[~special], vocab).all()  # replacements come from the OOD vocabulary
