"""`POST /v1/chat/completions` and `--served-model-name` aliases, with the `openai` client
against a real server process on a copy of the tiny Llama whose tokenizer has a chat
template; the plain tiny Llama (no template) gets a 400 that says so."""
from __future__ import annotations

import json
import shutil

import httpx
import pytest

from shoulders.backbone.generation import GenerationConfig
from shoulders.data.examples import Example
from tests.serving.conftest import start_server

openai = pytest.importorskip("openai")

TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] not in ['system', 'user', 'assistant'] %}"
            "{{ raise_exception('unknown role ' + m['role']) }}{% endif %}{{ m['role'] }}: {{ m['content'] }}\n"
            "{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")
MESSAGES = [{"role": "system", "content": "you answer"}, {"role": "user", "content": "where is the cat"}]
PROMPT = "<bos>system: you answer\nuser: where is the cat\nassistant:"  # TEMPLATE applied to MESSAGES
ALIASES = ["assistant=prompt_tuning-1", "tiny-llama", "prompt_tuning-0=prompt_tuning-2", "gone=no-such-module"]


@pytest.fixture(scope="module")
def chat_server(tiny_dirs, modules_dir, tmp_path_factory):
    from transformers import AutoTokenizer

    backbone = tmp_path_factory.mktemp("chat") / "llama-chat"
    shutil.copytree(tiny_dirs["llama"], backbone)
    tok = AutoTokenizer.from_pretrained(backbone)
    tok.chat_template = TEMPLATE
    tok.save_pretrained(backbone)
    args = [x for a in ALIASES for x in ("--served-model-name", a)]
    srv = start_server(tiny_dirs, modules_dir, tmp_path_factory, *args, "--rescan-interval", "0", backbone=backbone)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(chat_server):
    return openai.OpenAI(base_url=chat_server.url + "/v1", api_key="unused", max_retries=0)


def test_chat_completion(client, local_modules, backbone):
    out = client.chat.completions.create(model="assistant", messages=MESSAGES, max_tokens=8, temperature=0, n=2)
    assert out.object == "chat.completion" and out.id.startswith("chatcmpl-") and out.model == "assistant"
    assert [c.index for c in out.choices] == [0, 1]
    module = local_modules["prompt_tuning-1"]
    ref = module.generate(backbone, [PROMPT], max_new_tokens=8)[0][0]
    for choice in out.choices:  # greedy: both choices are the local generation from the rendered prompt
        assert choice.message.role == "assistant" and choice.message.content == ref.text
        assert choice.finish_reason == ("stop" if len(ref.token_ids) < 8 else "length")
    assert out.usage.prompt_tokens == len(module.encode_inputs(backbone, [Example(PROMPT, "")])[0])
    assert out.usage.completion_tokens == 2 * len(ref.token_ids)
    # the module's own name serves the same module; text parts are joined into one content
    parts = [MESSAGES[0], {"role": "user", "content": [{"type": "text", "text": "where is"},
                                                       {"type": "text", "text": "the cat"}]}]
    same = client.chat.completions.create(model="prompt_tuning-1", messages=parts, max_tokens=8, temperature=0)
    assert same.model == "prompt_tuning-1"
    assert same.choices[0].message.content == module.generate(
        backbone, [PROMPT.replace("where is the", "where is\nthe")], max_new_tokens=8)[0][0].text


def test_streamed_chat_completion(client):
    body = dict(model="assistant", messages=MESSAGES, max_tokens=8, temperature=0, n=2)
    whole = client.chat.completions.create(**body)
    chunks = list(client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id and c.model == "assistant"
               for c in chunks)
    assert [(c.choices[0].index, c.choices[0].delta.role) for c in chunks[:2]] == [(0, "assistant"), (1, "assistant")]
    texts, reasons = {0: "", 1: ""}, {}
    for c in chunks[:-1]:
        (ch,) = c.choices
        texts[ch.index] += ch.delta.content or ""
        if ch.finish_reason:
            reasons[ch.index] = ch.finish_reason
    assert [texts[0], texts[1]] == [c.message.content for c in whole.choices]
    assert [reasons[0], reasons[1]] == [c.finish_reason for c in whole.choices]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage


def test_aliases_name_modules_and_the_backbone(chat_server, client, local_modules, backbone):
    cards = {m["id"]: m for m in httpx.get(chat_server.url + "/v1/models").json()["data"]}
    assert cards["assistant"]["alias_of"] == "prompt_tuning-1" and cards["prompt_tuning-2"]["alias_of"] is None
    assert cards["tiny-llama"]["alias_of"] == cards["tiny-llama"]["backbone"]
    assert cards["tiny-llama"]["module_type"] == "backbone" and "gone" not in cards
    assert {"assistant", "tiny-llama", "prompt_tuning-0"} <= {m.id for m in client.models.list()}
    # the bare backbone: no prefix, no template, rows in the mixed batch like any module
    out = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=6, temperature=0)
    ref = backbone.generate(None, backbone.encode([PROMPT]), GenerationConfig(max_new_tokens=6))[0][0]
    assert out.model == "tiny-llama" and out.choices[0].message.content == ref.text
    # an alias takes a directory's name: the directory is skipped, saying why, and the alias serves its module
    admin = httpx.get(chat_server.url + "/admin/modules").json()
    assert "alias" in admin["skipped"]["prompt_tuning-0"] and admin["aliases"]["assistant"] == "prompt_tuning-1"
    shadow = client.completions.create(model="prompt_tuning-0", prompt="the cat", max_tokens=5, temperature=0)
    assert shadow.choices[0].text == local_modules["prompt_tuning-2"].generate(backbone, ["the cat"],
                                                                               max_new_tokens=5)[0][0].text
    with pytest.raises(openai.NotFoundError, match="alias of module 'no-such-module', which is not loaded"):
        client.chat.completions.create(model="gone", messages=MESSAGES)


def test_unset_max_tokens_is_what_the_context_leaves(client, local_modules, backbone):
    """OpenAI's chat has no default length: up to --max-new-tokens (256), cut to the tiny
    Llama's 256-token context instead of refused."""
    out = client.chat.completions.create(model="assistant", messages=MESSAGES, temperature=0,
                                         extra_body={"ignore_eos": True})
    assert out.choices[0].finish_reason == "length"
    vectors = local_modules["prompt_tuning-1"].config.num_virtual_tokens
    assert out.usage.total_tokens + vectors == backbone.max_context == 256  # the whole window


def test_refusals(chat_server, client):
    def post(**body) -> dict:
        r = httpx.post(chat_server.url + "/v1/chat/completions", json=dict(model="assistant", **body), timeout=60)
        assert r.status_code in (400, 422), r.text
        return dict(r.json()["error"], status=r.status_code)

    err = post(messages=[{"role": "tool", "content": "x"}])
    assert (err["status"], err["code"]) == (400, "chat_template_error") and "unknown role tool" in err["message"]
    err = post(messages=MESSAGES, tools=[{"type": "function", "function": {"name": "f"}}])
    assert (err["status"], err["code"]) == (400, "unsupported_parameter") and "tools" in err["message"]
    assert post(messages=[])["status"] == 422
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}
    assert post(messages=[image])["status"] == 422
    err = post(messages=MESSAGES, max_tokens=4, max_completion_tokens=5)
    assert err["status"] == 422 and "max_completion_tokens" in err["message"]
    with pytest.raises(openai.BadRequestError, match="max_tokens 9999 is above"):
        client.chat.completions.create(model="assistant", messages=MESSAGES, max_completion_tokens=9999)


def test_backbone_without_chat_template_is_400(server):
    """The session's server runs the plain tiny Llama, whose tokenizer has no template."""
    for stream in (False, True):
        r = httpx.post(server.url + "/v1/chat/completions", timeout=60,
                       json={"model": "prompt_tuning-0", "messages": MESSAGES, "stream": stream})
        assert r.status_code == 400 and r.headers["content-type"] == "application/json"
        err = r.json()["error"]
        assert err["code"] == "no_chat_template" and "has no chat template" in err["message"]
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="no chat template"):
        client.chat.completions.create(model="prompt_tuning-0", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError):  # the model is checked first
        client.chat.completions.create(model="no-such-module", messages=MESSAGES)
    assert json.loads(httpx.get(server.url + "/v1/models").text)["data"][0]["alias_of"] is None


def test_alias_settings_are_checked():
    from pathlib import Path

    from shoulders.serving import ServeSettings

    for aliases, match in (({"../x": None}, r"'\.\./x' is not a valid model name"),
                           ({"a": "b", "b": "c"}, r"served model name 'a=b': 'b' is another alias")):
        with pytest.raises(ValueError, match=match):
            ServeSettings(modules_dir=Path("."), served_model_names=aliases)
