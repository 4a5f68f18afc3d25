"""prompt_embeds export (issue #23 part 4): the [prefix ; token embeddings] a soft-prompt module
feeds the backbone, as plain tensors an engine (vLLM, SGLang) can take.

The check that matters: Hugging Face's own `generate(inputs_embeds=...)` on the exported
tensors gives the tokens `module.generate` gives, for prompt tuning, ID-PT and the reader, on
a tiny random GPT-2 and a tiny random Llama whose tokenizer adds BOS (built here, with weights
large enough that the next token depends on the input). vLLM and SGLang themselves are not
installed here: their encodings are checked by decoding them back.
"""
from __future__ import annotations

import base64
import io
import json

import pytest
import torch

from shoulders.backbone import FrozenLM
from shoulders.data.examples import Example
from shoulders.errors import ShouldersError
from shoulders.modules import prompt_embeds as pe
from shoulders.prompts import PromptTuning, PromptTuningConfig

TEXTS = [
    "the cat was born in rome",
    "a sad story",
    "what city is the capital of france and where was the dog born and what river is in the city " * 3,  # cut
    "yes",
]
TEMPLATE = "Q: {input} A:"
NEW = 6


def _backbone(tmp_path, family: str) -> FrozenLM:
    """A tiny random backbone with a 64-position window (the long text gets cut); Llama's
    tokenizer adds BOS, as Llama's do."""
    from tokenizers.processors import TemplateProcessing
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from tests.helpers import train_tokenizer

    tok = train_tokenizer(tmp_path / family)
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    torch.manual_seed(0)
    if family == "llama":
        tok.backend_tokenizer.post_processor = TemplateProcessing(single="<bos> $A", special_tokens=[
            ("<bos>", tok.bos_token_id)])
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             max_position_embeddings=64, initializer_range=0.2, **ids))
    else:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                           initializer_range=0.2, **ids))
    return FrozenLM(model.float().eval(), tok, f"tiny-{family}")


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(request, tmp_path_factory):
    return _backbone(tmp_path_factory.mktemp("pe"), request.param)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from shoulders.prompts.encoders import FrozenEncoder
    from tests.prompts.idpt.test_idpt import build_tiny_encoder

    path = build_tiny_encoder(tmp_path_factory.mktemp("enc"), "bert")
    return str(path), FrozenEncoder.from_pretrained(path)


def _module(kind: str, lm, encoder):
    text = {"template": TEMPLATE}
    if kind == "prompt_tuning":
        return PromptTuning.build(PromptTuningConfig(num_virtual_tokens=4, init="random", text=text), lm)
    if kind == "idpt":
        from shoulders.prompts.idpt import IDPTConfig, InputDependentPrompt

        path, frozen = encoder
        return InputDependentPrompt.build(IDPTConfig(encoder=path, prompt_length=3, fixed_prompt_length=1,
                                                     encoder_prompt_length=2, hidden_size=32, text=text),
                                          lm, encoder=frozen)
    from shoulders.reader.reader import Reader, ReaderConfig

    return Reader.build(ReaderConfig(template="{context}\nQ: {question}\nA:", prompt={
        "type": "prompt_tuning", "num_virtual_tokens": 3, "init": "random"}), lm)


def _inputs(kind: str) -> list:
    if kind != "reader":
        return TEXTS
    return [Example(t, "", meta={"context": f"passage {i}: rome is a city"}) for i, t in enumerate(TEXTS)]


def _hf_greedy(lm, embeds: torch.Tensor) -> list[int]:
    """transformers' own generate on one row of prompt embeddings, what an engine would run;
    new tokens only, EOS dropped as shoulders' Generation drops it."""
    out = lm.model.generate(inputs_embeds=embeds[None].to(lm.dtype), max_new_tokens=NEW, do_sample=False,
                            attention_mask=torch.ones(1, embeds.shape[0], dtype=torch.long),
                            pad_token_id=lm.tokenizer.pad_token_id, eos_token_id=lm.eos_token_id)[0].tolist()
    return out[:out.index(lm.eos_token_id)] if lm.eos_token_id in out else out


@pytest.mark.parametrize("kind", ["prompt_tuning", "idpt", "reader"])
def test_hf_generate_on_exported_embeds_equals_module_generate(lm, encoder, kind):
    module = _module(kind, lm, encoder).eval()
    inputs = _inputs(kind)
    embeds = module.prompt_embeds(lm, inputs, max_new_tokens=NEW)
    gens = module.generate(lm, inputs, max_new_tokens=NEW)
    ours = [g[0].token_ids for g in gens]
    assert [_hf_greedy(lm, e) for e in embeds] == ours
    assert len({tuple(t) for t in ours}) > 1  # the answer depends on the input: the check can tell rows apart
    for e in embeds:
        assert e.device.type == "cpu" and e.dtype == lm.dtype and e.is_contiguous()
        assert e.shape[0] <= lm.max_context - NEW and e.shape[1] == lm.hidden_size
    assert embeds[2].shape[0] == lm.max_context - NEW  # the long input was cut, as generate cuts it
    # the prefix matters: the same tokens without it generate something else for some input
    bare = [_hf_greedy(lm, e[module.prefix_tokens if kind == "reader" else module.prefix_length():]) for e in embeds]
    assert bare != ours


def test_layout_is_prefix_then_bos_then_the_templated_tokens(tmp_path):
    lm = _backbone(tmp_path, "llama")
    module = _module("prompt_tuning", lm, None)
    (e,) = module.prompt_embeds(lm, ["a sad story"])
    ids = lm.tokenizer(TEMPLATE.replace("{input}", "a sad story"))["input_ids"]
    assert ids[0] == lm.tokenizer.bos_token_id
    with torch.no_grad():
        expected = torch.cat([module.prompt, lm.embed(torch.tensor(ids))])
    assert e.shape == (4 + len(ids), lm.hidden_size)
    torch.testing.assert_close(e, expected, rtol=0, atol=0)
    (half,) = module.prompt_embeds(lm, ["a sad story"], dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and torch.equal(half, expected.to(torch.bfloat16))


def test_kv_prefix_and_finetuned_modules_are_refused(tmp_path):
    from shoulders.modules.finetune import FinetuneConfig, FullFinetune
    from shoulders.prompts.prefix_tuning import PrefixTuning, PrefixTuningConfig
    from shoulders.reader.reader import Reader, ReaderConfig

    lm = _backbone(tmp_path, "llama")
    prefix = PrefixTuning.build(PrefixTuningConfig(num_virtual_tokens=2, init="random"), lm)
    with pytest.raises(ShouldersError, match="a prefix_tuning module cannot be sent to an engine as prompt "
                       "embeddings.*keys and values into every attention layer.*Types that can: prompt_tuning, idpt"):
        prefix.prompt_embeds(lm, ["a"])
    reader = Reader.build(ReaderConfig(prompt={"type": "prefix_tuning", "num_virtual_tokens": 2, "init": "random"}),
                          lm)
    with pytest.raises(ShouldersError, match=r"a prefix_tuning module \(the prompt inside this reader\)"):
        reader.prompt_embeds(lm, [Example("q", "", meta={"context": "c"})])
    with pytest.raises(ShouldersError, match="a finetune module cannot"):
        FullFinetune.build(FinetuneConfig(), lm).prompt_embeds(lm, ["a"])


def test_a_backbone_that_reads_token_ids_beside_embeddings_is_refused(tmp_path, monkeypatch):
    """Some families (gemma3n's per-layer token embeddings) read the ids too: the backbone's
    layout then carries them, and embeddings alone would not be what the model reads."""
    lm = _backbone(tmp_path, "gpt2")
    module = _module("prompt_tuning", lm, None)
    plain = lm.layout

    def with_ids(prefix, ids, pad_side="right"):
        layout = plain(prefix, ids, pad_side=pad_side)
        layout.input_ids = torch.zeros(layout.inputs_embeds.shape[:2], dtype=torch.long)
        return layout

    monkeypatch.setattr(lm, "layout", with_ids)
    with pytest.raises(ShouldersError, match="reads the token ids beside the input embeddings"):
        module.prompt_embeds(lm, ["a"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_vllm_encoding_round_trips(dtype):
    big = torch.randn(2000, 16).to(dtype)
    e = big[3:10]  # a view: only its own rows may be sent
    b64 = pe.vllm_prompt_embeds(e)
    raw = base64.b64decode(b64, validate=True)  # vLLM decodes with validate=True
    back = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")  # our own bytes, as vLLM loads them
    assert back.dtype == dtype and back.shape == (7, 16) and torch.equal(back, e)
    assert len(raw) < big.numel() * big.element_size()  # not the whole storage of `big`
    body = pe.vllm_completion_request([e, e[:2]], "m", max_tokens=4, temperature=0)
    assert set(body) == {"model", "prompt_embeds", "max_tokens", "temperature"}  # no prompt: the embeds alone
    assert body["prompt_embeds"][0] == b64 and len(body["prompt_embeds"]) == 2
    assert isinstance(pe.vllm_completion_request(e, "m")["prompt_embeds"], str)
    body = json.loads(json.dumps(pe.sglang_generate_request(e, max_new_tokens=4, temperature=0)))
    assert torch.equal(torch.tensor(body["input_embeds"], dtype=torch.float32), e.float())
    assert body["sampling_params"] == {"max_new_tokens": 4, "temperature": 0}


def test_vllm_encoding_refuses_what_vllm_refuses():
    with pytest.raises(ShouldersError, match="float32, bfloat16 or float16"):
        pe.vllm_prompt_embeds(torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ShouldersError, match=r"\[L, D\]"):
        pe.vllm_prompt_embeds(torch.zeros(1, 2, 3))


def test_safetensors_round_trip(tmp_path):
    embeds = [torch.randn(5, 8), torch.randn(2, 8).to(torch.bfloat16)]
    path = pe.save_prompt_embeds(tmp_path / "e.safetensors", embeds, {"backbone": "x"})
    back = pe.load_prompt_embeds(path)
    assert [b.dtype for b in back] == [torch.float32, torch.bfloat16]
    assert all(torch.equal(a, b) for a, b in zip(embeds, back))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert f.metadata()["backbone"] == "x" and f.metadata()["count"] == "2"


def test_cli_export_embeds(tiny_dirs, tmp_path, capsys):
    from safetensors import safe_open

    from shoulders.cli.main import main
    from shoulders.modules import save_module

    lm = FrozenLM.from_pretrained(tiny_dirs["gpt2"], dtype="float32", device="cpu")
    module = PromptTuning.build(PromptTuningConfig(num_virtual_tokens=3, text={"template": TEMPLATE}), lm)
    save_module(module, tmp_path / "m", lm)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"input": t}) + "\n" for t in TEXTS[1:]))
    expected = module.prompt_embeds(lm, TEXTS, max_new_tokens=8)

    out = tmp_path / "e.safetensors"
    argv = ["export-embeds", str(tmp_path / "m"), TEXTS[0], "--input", str(tmp_path / "in.jsonl"),
            "--max-new-tokens", "8", "-q"]
    assert main([*argv, "--out", str(out)]) == 0
    assert "wrote 4 prompt embeddings" in capsys.readouterr().out
    assert all(torch.equal(a, b) for a, b in zip(pe.load_prompt_embeds(out), expected))
    with safe_open(str(out), "pt") as f:
        assert json.loads(f.metadata()["inputs"]) == TEXTS and f.metadata()["module_type"] == "prompt_tuning"

    assert main([*argv, "--format", "vllm", "--out", "-"]) == 0
    bodies = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [b["model"] for b in bodies] == [lm.name_or_path] * 4 and bodies[0]["max_tokens"] == 8
    for b, e in zip(bodies, expected):
        back = torch.load(io.BytesIO(base64.b64decode(b["prompt_embeds"])), weights_only=True)
        assert torch.equal(back, e)

    assert main([*argv, "--format", "sglang", "--out", str(tmp_path / "s.jsonl")]) == 0
    capsys.readouterr()
    first = json.loads((tmp_path / "s.jsonl").read_text().splitlines()[0])
    assert torch.equal(torch.tensor(first["input_embeds"]), expected[0])

    assert main(["export-embeds", str(tmp_path / "m"), "--out", str(out)]) == 2
    assert "no inputs" in capsys.readouterr().err
