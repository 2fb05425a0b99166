"""Cases run by ``torchrun --nproc_per_node 2 tests/parallel_worker.py CASE OUT`` (tests/test_parallel.py):
each rank writes what it saw to ``OUT/rank-R.json``; a case is given ``OUT`` for any files of its own."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

import tiny_models as tm  # noqa: E402
from xdistill import parallel  # noqa: E402
from xdistill.data.types import Feature  # noqa: E402
from xdistill.transfer.cache import label_rows  # noqa: E402
from xdistill.distill.loop import Distiller  # noqa: E402
from xdistill.errors import ConfigError, XDistillError  # noqa: E402


def gradients(out: Path) -> dict:
    """The data-parallel gradient of a global batch (``Distiller._backward``) equals one process's."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    x, y = torch.randn(7, 6), torch.randint(0, 3, (7,))  # 7 rows: the ranks get 4 and 3

    def loss_of(rows):
        return torch.nn.functional.cross_entropy(model(x[list(rows)]), y[list(rows)])

    params = list(model.parameters())
    loss_of(range(7)).backward()
    reference = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    fake = types.SimpleNamespace(_loss_and_batch=lambda stage, source, rows: (loss_of(rows), {}), plugins=[])
    step = types.SimpleNamespace(stage=None)
    Distiller._backward(fake, step, None, list(range(7)), params)
    batch = [p.grad.clone() for p in params]
    for p in params:  # a batch of one row: the second rank has no rows and adds zeros
        p.grad = None
    Distiller._backward(fake, step, None, [5], params)
    single = torch.autograd.grad(loss_of([5]), params)
    return {"max_diff": max(float((a - b).abs().max()) for a, b in zip(batch, reference)),
            "one_row_diff": max(float((p.grad - g).abs().max()) for p, g in zip(params, single))}


def embedding_gradients(out: Path) -> dict:
    """An embedding matrix's gradient is summed over the ranks row-sparsely: the same as one process's."""
    torch.manual_seed(0)
    emb = torch.nn.Embedding(5000, 4)
    head = torch.nn.Linear(4, 3)
    ids, y = torch.randint(0, 5000, (9, 5)), torch.randint(0, 3, (9,))

    def loss_of(rows):
        return torch.nn.functional.cross_entropy(head(emb(ids[list(rows)]).mean(1)), y[list(rows)])

    params = [emb.weight, *head.parameters()]
    reference = torch.autograd.grad(loss_of(range(9)), params)
    fake = types.SimpleNamespace(_loss_and_batch=lambda stage, source, rows: (loss_of(rows), {}), plugins=[])
    Distiller._backward(fake, types.SimpleNamespace(stage=None), None, list(range(9)), params)
    return {"max_diff": max(float((p.grad - g).abs().max()) for p, g in zip(params, reference)),
            "rows_with_gradient": int((emb.weight.grad != 0).any(1).sum()), "rows_used": int(ids.unique().numel())}


def errors(out: Path) -> dict:
    """check_agree names what differs; main_does hands the main process's error to every rank."""
    out = {}
    try:
        parallel.check_agree({"settings": {"lr": 0.001}, "data": f"rank {parallel.rank()}"}, "the launch")
    except ConfigError as e:
        out["agree"] = str(e)
    try:
        parallel.main_does(lambda: (_ for _ in ()).throw(ConfigError("--resume: settings differ")), "checked")
    except XDistillError as e:
        out["main_does"] = [type(e).__name__, str(e)]
    out["result"] = parallel.main_does(lambda: {"written_by": parallel.rank()}, "wrote")
    out["gather"] = parallel.all_gather(parallel.rank() * 10)
    out["ranges"] = parallel.split_weighted([5, 1, 1, 1, 1, 1], parallel.world_size())
    return out


def cache_reuse(out: Path) -> dict:
    """Two processes label a grown transfer set: the rows an earlier cache holds are copied on every rank,
    the teacher runs on the new rows only, and the cache equals a fresh 2-process labeling within rounding."""
    tok = tm.make_tokenizer(out / f"tok-{parallel.rank()}")
    adapter, teacher = tm.wikiann_adapter(), tm.teacher_of(tm.make_teacher(len(tok)), tok)
    features = [Feature("hidden_states", 2), Feature("logits")]
    words = [w for w, _ in tm.SENTENCES]

    def label(sentences, root):
        enc = tm.encode(adapter, tok, [(w, []) for w in sentences], labeled=False)
        return label_rows(teacher, adapter.level, enc, features, out / root, max_tokens=40, name="transfer")

    label(words[:5], "cache")
    grown, stats = label(words[5:] + words[:5], "cache")
    fresh, fresh_stats = label(words[5:] + words[:5], "fresh")
    diff = max(float(np.abs(grown.row(k, i).astype(np.float32) - fresh.row(k, i).astype(np.float32)).max())
               for k in grown.keys for i in range(len(grown)))
    return {"reused_rows": stats["reused_rows"], "fresh_reused_rows": fresh_stats["reused_rows"], "max_diff": diff,
            "processes": stats["processes"], "shards": grown.meta["shards"], "same_offsets":
            bool(np.array_equal(grown.offsets, fresh.offsets))}


CASES = {"gradients": gradients, "embedding_gradients": embedding_gradients, "errors": errors,
         "cache_reuse": cache_reuse}

if __name__ == "__main__":
    case, out = sys.argv[1], Path(sys.argv[2])
    result = {"rank": parallel.rank(), "world_size": parallel.world_size(), **CASES[case](out)}
    (out / f"rank-{parallel.rank()}.json").write_text(json.dumps(result))
    parallel.shutdown()  # as the CLI does: no gloo group left to the interpreter's teardown
