"""The multi-task comparison (shared prompt vs ID-PT vs fine-tuning) end to end on a tiny
backbone and a tiny encoder, and the real-English task loaders."""
import json
import random
from pathlib import Path

import pytest
import torch

from shoulders.data.examples import Example, Task
from shoulders.experiments.multitask import Budget, run_multitask
from tests.tasks_fixture import keyword_task


def first_word_task(n: int = 40, seed: int = 3) -> Task:
    """A short generative task (exact match), in its own cluster."""
    rng = random.Random(seed)
    words = ["cat", "dog", "bird", "fish", "river", "city"]

    def make(k):
        out = []
        for _ in range(k):
            w = [rng.choice(words) for _ in range(3)]
            out.append(Example(input=" ".join(w) + " first:", target=w[0], task="first_word"))
        return out

    return Task("first_word", make(n), make(8), make(8), "exact_match", "structure-to-text")


def test_run_multitask_schema_plot_and_table(tiny_dirs, tmp_path):
    from shoulders.backbone import FrozenLM
    from tests.prompts.idpt.test_idpt import build_tiny_encoder

    enc = build_tiny_encoder(tmp_path / "enc", "bert")
    tasks = [keyword_task(n_train=40, n_dev=8), first_word_task()]
    for t in tasks:
        t.test = t.test[:8]
    before = {k: v.clone() for k, v in FrozenLM.from_pretrained(tiny_dirs["llama"]).model.state_dict().items()}
    section = run_multitask(
        tasks, str(tiny_dirs["llama"]), seeds=[0, 1], quick=True, out_dir=tmp_path / "out", encoder_path=str(enc),
        progress=False, budget=Budget(steps=4, batch_size=4, eval_every=2, eval_max_examples=4, warmup_steps=0,
                                      max_new_tokens=3),
        methods={"prompt_tuning": {"lr": 0.1, "module": {"num_virtual_tokens": 4}},
                 "idpt": {"lr": 1e-3, "module": {"prompt_length": 2, "encoder_prompt_length": 1, "hidden_size": 16,
                                                 "heads": 2, "layers": 1}}})
    for method in ("prompt_tuning", "idpt", "finetune"):
        m = section[method]
        assert 0.0 <= m["average"] <= 100.0 and m["average_std"] >= 0.0
        assert set(m["clusters"]) == set(m["clusters_std"]) == {"sentiment", "structure-to-text"}
        assert set(m["tasks"]) == {"sentiment", "first_word"}
        # the fine-tuned reference runs on the first module seed only (METHODS["finetune"]["seeds"])
        assert len(m["per_seed_average"]) == m["seeds"] == (1 if method == "finetune" else 2)
        assert [s for s, _ in m["dev_curve"]] == [2, 4] and m["trainable_params"] > 0 and m["step_ms"] > 0
    assert section["prompt_tuning"]["trainable_params"] == 4 * 32
    assert section["finetune"]["trainable_params"] > section["idpt"]["trainable_params"] > 4 * 32
    assert section["idpt_overhead"]["ratio"] > 0
    assert (tmp_path / "out" / "multitask_dev_curve.png").stat().st_size > 1000
    assert section["finetune"]["average_std"] == 0.0
    assert "Fine-tuned (reference): one seed (no std)." in section["table_markdown"]
    assert f"**{section['finetune']['average']:.1f}** |" in section["table_markdown"]
    table = section["table_markdown"]
    assert "| **Average** |" in table and ("ID-PT better" in table or "T0++ better" in table)
    json.dumps({k: v for k, v in section.items()})  # JSON-ready for results.json
    after = FrozenLM.from_pretrained(tiny_dirs["llama"]).model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.skipif(not (DATA / "sst2-dev.tsv").is_file(), reason="shared data not present")
def test_real_tasks_load_split_and_render():
    from shoulders.experiments.real_tasks import load_real_tasks

    tasks = load_real_tasks(DATA, quick=True)
    again = load_real_tasks(DATA, quick=True)
    assert [t.name for t in tasks] == ["sst2", "mrpc", "rte", "boolq"]
    for t, u in zip(tasks, again):
        assert [e.id for e in t.test] == [e.id for e in u.test]  # the seeded split is fixed
        ids = [{e.id for e in t.split(s)} for s in ("train", "dev", "test")]
        assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
        assert all(e.target in e.choices for s in ("train", "dev", "test") for e in t.split(s))
        assert 100 <= len(t.train) <= 200 and len(t.test) <= 100 and t.metric == "accuracy"
        assert all(len(e.input.split()) < 200 for e in t.train)


def test_real_tasks_bad_label_and_cli(tmp_path):
    from shoulders.cli.main import build_parser
    from shoulders.data.loaders import DataError
    from shoulders.experiments.real_tasks import load_real_task

    (tmp_path / "rte-dev.superglue.jsonl").write_text(json.dumps({"premise": "a", "hypothesis": "b", "label": "x"}))
    with pytest.raises(DataError, match="rte-dev.superglue.jsonl:1: field 'label'"):
        load_real_task("rte", tmp_path)
    args = build_parser().parse_args(["real-tasks", "--quick", "--seeds", "0", "1", "--data-dir", str(tmp_path)])
    assert args.seeds == [0, 1] and args.quick and callable(args.func)


def _fake_run(average: float) -> dict:
    return {"test": {"average": average, "clusters": {"c": average}, "tasks": {"t": average}},
            "dev_curve": [[2, average]], "trainable_params": 1, "step_ms": 1.0, "fit_s": 1.0}


def test_parts_and_assembly_follow_each_methods_seeds(tmp_path):
    """`seeds: N` in a method's spec: its runs are the first N module seeds, the assembly
    wants exactly those (a missing run is an error, not a smaller mean), and a bad N is named."""
    from shoulders.experiments.multitask import assemble_multitask, multitask_parts

    methods = {"idpt": None}  # prompt tuning on every seed, the fine-tuned reference (seeds: 1) on the first
    parts = multitask_parts([3, 4, 5], methods)
    assert parts == [("prompt_tuning", 3), ("finetune", 3), ("prompt_tuning", 4), ("prompt_tuning", 5)]
    runs = {p: _fake_run(10.0 * i) for i, p in enumerate(parts)}
    section = assemble_multitask(runs, ["t"], "backbone", seeds=[3, 4, 5], quick=True, out_dir=tmp_path,
                                 methods=methods)
    assert section["prompt_tuning"]["per_seed_average"] == [0.0, 20.0, 30.0]
    assert section["finetune"]["per_seed_average"] == [10.0] and section["finetune"]["seeds"] == 1
    assert "| **16.7 ± 15.3** | **10.0** |" in section["table_markdown"]
    del runs[("prompt_tuning", 4)]
    with pytest.raises(ValueError, match=r"no run for \(method, seed\) \[\('prompt_tuning', 4\)\]"):
        assemble_multitask(runs, ["t"], "backbone", seeds=[3, 4, 5], quick=True, out_dir=tmp_path, methods=methods)
    with pytest.raises(ValueError, match=r"methods\['finetune'\]\['seeds'\]=0: expected a positive integer"):
        multitask_parts([0], {"finetune": {"lr": 1e-3, "module": {}, "seeds": 0}})
