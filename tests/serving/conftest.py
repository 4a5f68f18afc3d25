"""A real `shoulders serve` process on a free loopback port, with saved modules of every
kind that can be served today.

`MODULE_KINDS` is the one place to add a kind: ID-PT, recursion and reader modules join
the parametrised tests by adding a builder here (recursion modules are served through
completions as their own batch; readers also answer `/v1/answer`).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from shoulders.bench.launch import ServerProcess


def _prompt_tuning(lm, i: int, assets: Path):
    from shoulders.prompts import PromptTuning, PromptTuningConfig

    # different prefix lengths, so a mixed batch really mixes shapes
    return PromptTuning.build(PromptTuningConfig(num_virtual_tokens=2 + 3 * i, init="random", seed=i), lm)


def _idpt(lm, i: int, assets: Path):
    """ID-PT on a tiny random T5 encoder built offline (shared by the three modules)."""
    from shoulders.prompts.idpt import IDPTConfig, InputDependentPrompt

    encoder = assets / "t5-encoder"
    if not encoder.exists():
        from transformers import T5Config, T5EncoderModel

        from tests.helpers import train_tokenizer

        tok = train_tokenizer(encoder)
        torch.manual_seed(0)
        T5EncoderModel(T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(encoder)
    torch.manual_seed(i)
    return InputDependentPrompt.build(IDPTConfig(encoder=str(encoder)), lm)


def _prefix_tuning(lm, i: int, assets: Path):
    """Per-layer KV prefixes of different lengths (and both initialisations), so rows with
    KV prefixes, soft vectors and neither share batches."""
    from shoulders.prompts.prefix_tuning import PrefixTuning, PrefixTuningConfig

    return PrefixTuning.build(PrefixTuningConfig(num_virtual_tokens=1 + 3 * i, init="random" if i % 2 else "vocab",
                                                 seed=i), lm)


def _recursion(kind: str):
    def build(lm, i: int, assets: Path):
        from shoulders.recursion import NeuralRecursion, NeuralRecursionConfig, TextualRecursion, \
            TextualRecursionConfig

        base = {"pass1": {"num_virtual_tokens": 2 + i, "seed": i}, "pass2": {"num_virtual_tokens": 2, "seed": 9}}
        if kind == "textual_recursion":
            return TextualRecursion.build(TextualRecursionConfig(
                **base, stage="pass2", sampling={"n": 3, "max_new_tokens": 3}), lm)
        torch.manual_seed(i)
        return NeuralRecursion.build(NeuralRecursionConfig(**base), lm)

    return build


# Every kind here is saved, served and checked by the parametrised tests. Soft-prompt and
# prefix-tuning kinds join the mixed batch; recursion kinds run as their own batch; add reader
# kinds as they land.
MODULE_KINDS = {"prompt_tuning": _prompt_tuning}
if importlib.util.find_spec("shoulders.prompts.idpt") is not None:
    MODULE_KINDS["idpt"] = _idpt
MODULE_KINDS["prefix_tuning"] = _prefix_tuning
if importlib.util.find_spec("shoulders.recursion.textual") is not None:
    MODULE_KINDS["textual_recursion"] = _recursion("textual_recursion")
    MODULE_KINDS["neural_recursion"] = _recursion("neural_recursion")
PER_KIND = 3


@pytest.fixture(scope="session")
def backbone(tiny_dirs):
    from shoulders.backbone import FrozenLM

    return FrozenLM.from_pretrained(tiny_dirs["llama"], dtype="float32", device="cpu")


@pytest.fixture(scope="session")
def modules_dir(tmp_path_factory, tiny_dirs, backbone):
    """Modules for the llama backbone, plus two that must be skipped: one trained on the
    gpt2 backbone and a directory without module.json."""
    from shoulders.backbone import FrozenLM
    from shoulders.modules import save_module

    root = tmp_path_factory.mktemp("modules")
    assets = tmp_path_factory.mktemp("module_assets")
    for kind, build in MODULE_KINDS.items():
        for i in range(PER_KIND):
            save_module(build(backbone, i, assets), root / f"{kind}-{i}", backbone)
    other = FrozenLM.from_pretrained(tiny_dirs["gpt2"], dtype="float32", device="cpu")
    save_module(_prompt_tuning(other, 0, assets), root / "gpt2-module", other)
    (root / "empty-dir").mkdir()
    return root


@pytest.fixture(scope="session")
def local_modules(modules_dir, backbone):
    """The same modules loaded in the test process: the reference for served outputs."""
    from shoulders.modules import load_module

    return {f"{kind}-{i}": load_module(modules_dir / f"{kind}-{i}", backbone)
            for kind in MODULE_KINDS for i in range(PER_KIND)}


def start_server(tiny_dirs, modules_dir, tmp_path_factory, *args, env=None, backbone=None) -> ServerProcess:
    """A server on the tiny Llama, or on `backbone` (a copy of it with another tokenizer, say)."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    return ServerProcess(backbone or tiny_dirs["llama"], modules_dir, *args, env=env, log_path=log, threads=1).start()


@pytest.fixture(scope="session")
def server(tiny_dirs, modules_dir, tmp_path_factory):
    srv = start_server(tiny_dirs, modules_dir, tmp_path_factory, "--max-batch", "16", "--rescan-interval", "0.5",
                       "--max-body-bytes", "65536")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def hostile_modules(tmp_path_factory, backbone):
    """Two prompt-tuning modules, plus a valid module *outside* the directory and a symlink
    to it inside: no request may ever reach that one."""
    from shoulders.modules import save_module

    root = tmp_path_factory.mktemp("hostile")
    for i in range(2):
        save_module(_prompt_tuning(backbone, i, root), root / "modules" / f"pt-{i}", backbone)
    save_module(_prompt_tuning(backbone, 2, root), root / "outside", backbone)
    (root / "modules" / "escape").symlink_to(root / "outside")
    return root / "modules"


@pytest.fixture(scope="session")
def hostile_server(tiny_dirs, hostile_modules, tmp_path_factory):
    """Tight limits, so that hostility is cheap to produce: 2 rows, 4 waiting, 4 s per
    request (body upload included), 4 KB bodies."""
    srv = start_server(tiny_dirs, hostile_modules, tmp_path_factory, "--max-batch", "2", "--max-queue", "4",
                       "--timeout", "4", "--max-body-bytes", "4096", "--rescan-interval", "0")
    yield srv
    srv.stop()
