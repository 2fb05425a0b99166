"""The report's sections on generated transfer text and on what the teacher predicts on each
transfer set (generation-distillation, Melas-Kyriazi et al. 2019)."""

from __future__ import annotations

import pandas as pd

#: per-group count columns of the generation section, in filter order
COUNT_KEYS = ("sampled", "removed_length", "removed_script", "removed_duplicate", "removed_held_out_overlap",
              "removed_near_duplicate", "removed_entropy", "removed_entityless", "removed_balance", "kept")


def _prediction(p) -> str:
    """A teacher prediction as text: a label, or the types of the entities the IOB2 tags hold (NER)."""
    if isinstance(p, str):
        return p
    types = [t[2:] for i, t in enumerate(p) if t.startswith("B-") or (t.startswith("I-") and (i == 0 or p[i - 1][2:] != t[2:]))]
    return "entities: " + ", ".join(types) if types else "no entity"


def generation_markdown(r: dict, metric: str) -> list[str]:
    """Markdown lines: the generator, what the filters removed (per group when there are several),
    perplexity and distinct-n beside real text, the generated-vs-unlabeled difference, samples."""
    g = r.get("generation")
    if not g:
        return []
    rm = g["removed"]
    lines = ["## Generated transfer text (generation-distillation)", "",
             f"Generator: {g['generator']}{' (read from cache)' if g.get('generator_cached') else ''}; trained on "
             f"{g['train_texts']} texts in {g['seconds_training'] / 60:.1f} min; sampling {g['seconds_sampling'] / 60:.1f} min, "
             f"filtering {g['seconds_filtering'] / 60:.1f} min. Sampled {g['sampled']}, kept {g['kept']} (removed: "
             + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in rm.items()) + f"); mean length {g['mean_words']:.1f} words.",
             "", f"Perplexity under the generator: its samples {g['perplexity']['samples']:.1f}, held-out real text "
             f"(validation split) {g['perplexity']['held_out']:.1f}. Distinct-1/2 (percent unique word n-grams, equal "
             "numbers of texts): generated " + "/".join(f"{v:.1f}" for v in g["distinct"]["generated"].values())
             + ", training text " + "/".join(f"{v:.1f}" for v in g["distinct"]["training_text"].values()) + ".", ""]
    if len(g["per_group"]) > 1:
        per = pd.DataFrame(g["per_group"]).T[list(COUNT_KEYS)]
        lines += [per.to_markdown(floatfmt=".0f"), ""]
    for w in g.get("warnings") or []:
        lines += [f"Warning: {w}", ""]
    gv = r["mean"].get("generated_vs_unlabeled")
    if gv:
        lines += [f"Generated text against unlabeled text (difference in mean {metric}): "
                  + ", ".join(f"{v}: {x:+.2f}" for v, x in gv.items()) + ".", ""]
    lines += ["Samples (group, the teacher's prediction):", ""]
    lines += [f"> [{s['group']}; {_prediction(s['teacher'])}] {s['text'][:300]}" for s in g["samples"][:8]] + [""]
    return lines


def profile_markdown(r: dict) -> list[str]:
    """Markdown lines: the teacher's predictions on each transfer set (label shares, entity rates)."""
    prof = r.get("transfer_profile")
    if not prof:
        return []
    rows = {s: {**{f"{k} %": v for k, v in p["labels"].items()}, **{k: v for k, v in p.items() if k not in ("labels",)}}
            for s, p in prof.items()}
    return ["## The teacher's predictions on each transfer set", "",
            "Share of each predicted label (percent of words for NER, of texts for classification); NER adds the "
            "percent of words inside entities, of sentences with an entity, and entities per sentence.", "",
            (df := pd.DataFrame(rows).T).to_markdown(floatfmt=["g"] + [".0f" if c == "n" else ".2f" for c in df.columns]), ""]
