"""The module format: round trip, verification, clear refusals."""
import json

import pytest
import torch

from shoulders.backbone import FrozenLM
from shoulders.modules import BackboneMismatchError, ModuleFormatError, load_module, save_module
from shoulders.prompts import PromptTuning, PromptTuningConfig


@pytest.fixture()
def saved(lm, tmp_path):
    module = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=5, init="random", seed=2), lm)
    save_module(module, tmp_path / "m", lm, extra={"note": "x"})
    return module, tmp_path / "m"


def test_round_trip_exact(lm, saved):
    module, path = saved
    back = load_module(path, lm)
    assert torch.equal(back.prompt, module.prompt)
    assert back.config == module.config
    meta = json.loads((path / "module.json").read_text())
    assert meta["module_type"] == "prompt_tuning" and meta["format_version"] == 1
    assert meta["backbone"]["hidden_size"] == lm.hidden_size
    assert meta["backbone"]["vocab_size"] == lm.vocab_size
    assert len(meta["backbone"]["embedding_fingerprint"]) == 16
    assert meta["weights"]["size"] == (path / "weights.safetensors").stat().st_size
    assert sorted(p.name for p in path.iterdir()) == ["module.json", "weights.safetensors"]


def test_mismatched_backbone_is_refused(tiny_dirs, tmp_path):
    gpt2 = FrozenLM.from_pretrained(tiny_dirs["gpt2"], dtype="float32", device="cpu")
    llama = FrozenLM.from_pretrained(tiny_dirs["llama"], dtype="float32", device="cpu")
    save_module(PromptTuning.build(PromptTuningConfig(num_virtual_tokens=2), gpt2), tmp_path / "m", gpt2)
    with pytest.raises(BackboneMismatchError) as err:
        load_module(tmp_path / "m", llama)
    msg = str(err.value)
    assert "model_type: module has 'gpt2', backbone has 'llama'" in msg
    assert "embedding_fingerprint" in msg and str(tmp_path / "m") in msg


def test_tampered_and_truncated_weights(lm, saved):
    _, path = saved
    w = path / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModuleFormatError, match="sha256 does not match"):
        load_module(path, lm)
    w.write_bytes(bytes(data[:-10]))
    with pytest.raises(ModuleFormatError, match="truncated"):
        load_module(path, lm)


def test_future_format_and_missing_files(lm, saved, tmp_path):
    _, path = saved
    meta = json.loads((path / "module.json").read_text())
    meta["format_version"] = 99
    (path / "module.json").write_text(json.dumps(meta))
    with pytest.raises(ModuleFormatError, match="format_version 99 is newer"):
        load_module(path, lm)
    with pytest.raises(ModuleFormatError, match="missing"):
        load_module(tmp_path, lm)


def test_save_replaces_atomically(lm, saved):
    module, path = saved
    module.prompt.data.add_(1.0)
    save_module(module, path, lm)
    assert torch.equal(load_module(path, lm).prompt, module.prompt)
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
