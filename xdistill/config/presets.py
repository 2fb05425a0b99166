"""The presets: parser defaults of ``python -m xdistill COMMAND --preset PRESET`` (see :data:`PRESETS`)."""

from __future__ import annotations

# Shared by the presets of both commands.
_SMOKE_MODELS = dict(teacher_hidden_size=64, teacher_layers=2, teacher_heads=2, teacher_intermediate_size=128,
                     teacher_lr=1e-3, teacher_batch_size=16, embedding_dim=32, hidden_size=32, batch_size=32, lr=3e-3,
                     max_epochs=2, patience=1, baseline_max_epochs=4)
_CPU_MODELS = dict(teacher_hidden_size=192, teacher_layers=4, teacher_heads=3, teacher_intermediate_size=768,
                   teacher_epochs=2.0, teacher_lr=5e-4, teacher_batch_size=32, embedding_dim=50, hidden_size=200,
                   batch_size=64, lr=2e-3, patience=2, evals_per_epoch=2, baseline_patience=5)
# The paper recipe continues the checkpoint's MLM pretraining on the task text first (domain-adaptive
# pretraining, Gururangan et al. 2020: 12.5k steps there; here 10k steps of 64 rows, lr 5e-5).
_PAPER_MODELS = dict(source="hub", teacher_epochs=3.0, embedding_dim=300, hidden_size=600, batch_size=64, lr=1e-3,
                     max_epochs=20, patience=3, baseline_max_epochs=50, teacher_mlm="10000", mlm_lr=5e-5,
                     mlm_batch_size=64, mlm_eval_steps=1000)

#: The presets: ``PRESETS[preset][command]`` holds parser defaults for ``python -m xdistill COMMAND
#: --preset PRESET``; every key is a field of the command's argument classes (checked when the
#: adapters are imported, see :func:`xdistill.adapters.check_presets`).
PRESETS: dict[str, dict[str, dict]] = {
    # Tiny models on a few hundred real sentences or reviews: for tests (seconds on 2 cores).
    "smoke": {
        "ner": dict(_SMOKE_MODELS, langs="smoke", labeled_per_lang=100, teacher_labeled_per_lang=300,
                    validation_per_lang=50, transfer_per_lang=200, unlabeled_per_lang=100, eval_per_lang=100,
                    max_length=64, teacher_epochs=3.0, generate_per_lang=60, generator_layers=1,
                    generator_hidden_size=32, generator_train_texts=300, output_dir="runs/smoke"),
        "classify": dict(_SMOKE_MODELS, task="imdb", labeled_per_class=40, teacher_labeled_per_class=150,
                         validation_per_class=20, transfer_limit=150, unlabeled_limit=150, eval_limit=100,
                         max_length=64, teacher_epochs=2.0, baseline_patience=2, augment="generate",
                         transfer="unlabeled,generated,both", generate=120, generator_layers=1,
                         generator_hidden_size=32, generator_heads=2, generator_epochs=1.0, generator_max_length=48,
                         generator_train_texts=300, min_words=5, output_dir="runs/classify-smoke"),
    },
    # On a 2-core CPU within an hour: every WikiANN language, or IMDB with 500 labeled reviews per class.
    # NER teacher recipe (issue 10, measured on 12 languages with scripts/teacher_recipe.py): 5 epochs
    # instead of 2 gave +5.5 mean dev F1; MLM pretraining (1 epoch of the task text) before them -7.1;
    # temperature sampling over languages (T=3) +0.1. So: no MLM, T=1 (epochs: below). Word embeddings from the
    # PPMI-SVD of every train sentence (labels unused): +0.6 to +1.4 on 12 languages (two seeds, two texts),
    # +1.17 teacher / +0.93 student mean F1 on all 47 for 1.5 more minutes. More labeled sentences for the
    # teacher beat more epochs on fewer (12 languages, 2026-12-05): 5,000 per language for 2 epochs 62.17
    # against 52.43 for 1,500 for 5 (3,000 for 3: 58.67; 10,000 for 1: 60.77, the 80-sentence yo -25).
    # Student (all 47, that teacher reused, 2026-12-05): a transfer set of up to 3,600 train sentences per language
    # seen once per unfreezing step gave 66.24 mean F1 against 65.22 for 1,200 seen twice (2,400 once: 65.73;
    # lr 4e-3: 64.32), in 14.1 distillation minutes against 12.9. The labeled budget's text in the transfer set
    # and the languages sampled with temperature 2 in each distillation epoch (languages with 80 to 1,900 transfer
    # rows repeated 2-8 times) then gave 67.70 (0.980 of the teacher; the six 100-sentence languages 51.24
    # against 42.34), in 14.6 distillation minutes. On the end-to-end run's teacher (69.28) three student seeds gave
    # 67.18, 66.12 and 66.47 (0.961 of it on average); no hidden-state stage with 2 epochs per step (67.20)
    # and --lr-schedule linear (66.99) fell inside that spread, so the schedule stays XtremeDistil's with a
    # constant learning rate. The logits stage's loss is KL at temperature 2 (Hinton et al. 2015) instead of
    # XtremeDistil's MSE: the same teacher and seeds 42, 1, 2 gave 68.14, 68.22, 68.00 (0.983 of it on average,
    # sd 0.11) against 67.18, 66.12, 66.47.
    "cpu": {
        "ner": dict(_CPU_MODELS, langs="all", labeled_per_lang=100, teacher_labeled_per_lang=5000,
                    validation_per_lang=100, transfer_per_lang=3600, unlabeled_per_lang=500, eval_per_lang=500,
                    transfer_with_labeled=True, transfer_lang_temperature=2.0, logits_loss="kl", temperature=2.0,
                    max_length=128, teacher_eval_steps=0, max_epochs=1, baseline_max_epochs=40,
                    teacher_epochs=2.0, teacher_embeddings="ppmi", mlm_text="transfer,labeled,train",
                    generate_per_lang=500, generator_train_texts=1000, output_dir="runs/ner-cpu"),
        # IMDB teacher (issue 10, scripts/teacher_recipe.py): every training review but the validation ones
        # (24,500 instead of 6,000) and 384 tokens instead of 192: 86.00 instead of 81.10 accuracy; more
        # epochs, MLM, PPMI-SVD embeddings and self-training did not lift it.
        "classify": dict(_CPU_MODELS, task="imdb", labeled_per_class=500, teacher_labeled_per_class=-1,
                         validation_per_class=250, transfer_limit=2000, unlabeled_limit=4000, eval_limit=5000,
                         max_length=384, max_epochs=1, baseline_max_epochs=30, augment="generate",
                         transfer="unlabeled,generated,both", generate=3000, generator_layers=2,
                         generator_hidden_size=192, generator_heads=3, generator_epochs=1.0, generator_max_length=128,
                         generator_train_texts=4000, output_dir="runs/classify-cpu"),
    },
    # The paper's settings (Mukherjee & Hassan Awadallah 2020) for a GPU user with hub access.
    "paper": {
        "ner": dict(_PAPER_MODELS, langs="xtremedistil41", teacher="bert-base-multilingual-cased",
                    labeled_per_lang=100000, teacher_labeled_per_lang=-1, validation_per_lang=1000,
                    transfer_per_lang=-1, unlabeled_per_lang=-1, eval_per_lang=-1, max_length=128, teacher_lr=3e-5,
                    teacher_batch_size=32, teacher_layer=-1, output_dir="runs/ner-paper"),
        "classify": dict(_PAPER_MODELS, task="imdb", teacher="bert-large-uncased", labeled_per_class=500,
                         teacher_labeled_per_class=500, validation_per_class=250, transfer_limit=-1,
                         unlabeled_limit=-1, eval_limit=-1, max_length=512, teacher_lr=2e-5, teacher_batch_size=16,
                         augment="generate", transfer="unlabeled,generated,both", generator="gpt2", generate=50000,
                         output_dir="runs/classify-paper"),
    },
}
