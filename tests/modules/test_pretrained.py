"""`save_pretrained` / `from_pretrained` on every module type: the same two files as
`save_module`, a round trip that changes no output, and every type's class importable
from the top-level package."""
from __future__ import annotations

import json

import pytest
import torch

import shoulders
from shoulders.data.examples import Example
from shoulders.modules import MODULE_TYPES, ModuleFormatError, load_module, save_module

EXAMPLES = [Example("the cat was born in", "paris", choices=["paris", "london"]),
            Example("a happy dog is", "good", choices=["good", "bad"])]


@pytest.fixture(scope="module")
def llama(tiny_dirs):
    from shoulders.backbone import FrozenLM

    return FrozenLM.from_pretrained(tiny_dirs["llama"], dtype="float32", device="cpu")


def _idpt(lm, tmp):
    from tests.prompts.idpt.test_idpt import build_tiny_encoder

    return shoulders.InputDependentPrompt.build(shoulders.IDPTConfig(encoder=str(build_tiny_encoder(tmp / "t5", "t5"))),
                                                lm)


def _reranker(lm, tmp):
    from tests.reader.test_reranker import build_tiny_bert

    return shoulders.CrossEncoderReranker.build(shoulders.RerankerConfig(encoder=build_tiny_bert(tmp / "bert"),
                                                                         max_seq_len=16))


BUILDERS = {  # module type -> fn(backbone, tmp) -> a fresh module of that type
    "prompt_tuning": lambda lm, tmp: shoulders.PromptTuning.build(
        shoulders.PromptTuningConfig(num_virtual_tokens=3, init="random", seed=1), lm),
    "idpt": _idpt,
    "prefix_tuning": lambda lm, tmp: shoulders.PrefixTuning.build(
        shoulders.PrefixTuningConfig(num_virtual_tokens=3, init="random", seed=1), lm),
    "reranker": _reranker,
    "reader": lambda lm, tmp: shoulders.Reader.build(shoulders.ReaderConfig(
        prompt={"type": "prompt_tuning", "num_virtual_tokens": 3}), lm),
    "textual_recursion": lambda lm, tmp: shoulders.TextualRecursion.build(shoulders.TextualRecursionConfig(
        pass1={"num_virtual_tokens": 2}, pass2={"num_virtual_tokens": 2, "seed": 1},
        sampling={"n": 2, "max_new_tokens": 3}), lm),
    "neural_recursion": lambda lm, tmp: shoulders.NeuralRecursion.build(shoulders.NeuralRecursionConfig(
        pass1={"num_virtual_tokens": 2}, pass2={"num_virtual_tokens": 2, "seed": 1}), lm),
    "finetune": lambda lm, tmp: shoulders.FullFinetune.build(shoulders.FinetuneConfig(), lm),
}


def _outputs(module, lm) -> list:
    """What the module computes: re-ranker scores, else greedy generations and choice scores
    (the reader is given its packed context, so no index is needed)."""
    if module.module_type == "reranker":
        return module.score("find w1", ["w1 is alpha", "w2 is beta"])
    examples = [Example(ex.input, ex.target, choices=ex.choices, meta={"context": "paris is in france"})
                for ex in EXAMPLES]
    gens = module.generate(lm, examples, max_new_tokens=4)
    out = [[g.token_ids for g in row] for row in gens]
    if module.module_type not in ("textual_recursion", "neural_recursion"):  # no rank classification
        out.append(module.choice_logprobs(lm, examples))
    return out


def test_every_registered_type_has_a_builder_and_a_top_level_class():
    assert set(BUILDERS) == set(MODULE_TYPES)
    for name, target in MODULE_TYPES.items():
        cls_name = target.partition(":")[2]
        assert getattr(shoulders, cls_name).module_type == name
        assert cls_name in shoulders.__all__ and cls_name in dir(shoulders)
        config = getattr(shoulders, cls_name).config_class.__name__
        assert getattr(shoulders, config) is getattr(shoulders, cls_name).config_class and config in shoulders.__all__


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_round_trip_gives_identical_outputs(kind, llama, tmp_path):
    module = BUILDERS[kind](llama, tmp_path).eval()
    with torch.no_grad():  # move off the initialisation, so a load that re-initialises shows
        for p in module.trainable_parameters():
            p.add_(0.01 * torch.randn_like(p))
    backbone = None if kind == "reranker" else llama  # a re-ranker has no backbone
    assert module.save_pretrained(tmp_path / "m", backbone) == tmp_path / "m"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["module.json", "weights.safetensors"]
    back = type(module).from_pretrained(tmp_path / "m", backbone=backbone).eval()
    assert type(back) is type(module) and back.config == module.config
    saved = module.state_to_save()
    assert all(torch.equal(saved[k], v) for k, v in back.state_to_save().items()) and len(saved) == len(
        back.state_to_save())
    assert _outputs(back, llama) == _outputs(module, llama)
    # the same files as save_module, readable by load_module and through the base class
    save_module(module, tmp_path / "via-save-module", backbone)
    meta = {k: v for k, v in json.loads((tmp_path / "m" / "module.json").read_text()).items() if k != "weights"}
    assert meta == {k: v for k, v in json.loads((tmp_path / "via-save-module" / "module.json").read_text()).items()
                    if k != "weights"}
    assert type(load_module(tmp_path / "m", backbone)) is type(module)
    assert type(shoulders.SoftModule.from_pretrained(tmp_path / "m", backbone)) is type(module)


def test_from_pretrained_refuses_another_module_type(llama, tmp_path):
    BUILDERS["prompt_tuning"](llama, tmp_path).save_pretrained(tmp_path / "pt", llama)
    with pytest.raises(ModuleFormatError, match=r"holds a 'prompt_tuning' module, not 'neural_recursion'"):
        shoulders.NeuralRecursion.from_pretrained(tmp_path / "pt", backbone=llama)
    assert type(shoulders.SoftPromptModule.from_pretrained(tmp_path / "pt", llama)) is shoulders.PromptTuning
    with pytest.raises(ModuleFormatError, match=r"holds a 'prompt_tuning' module, not 'reranker'"):
        shoulders.CrossEncoderReranker.from_pretrained(tmp_path / "pt")


def test_import_shoulders_stays_light():
    """The reader's retrieval stack (bm25s, faiss) is imported on first use, not by `import shoulders`."""
    import subprocess
    import sys

    code = "import sys, shoulders; print(sorted({'bm25s', 'faiss'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
