"""The `shoulders` model of lm-evaluation-harness: a frozen backbone with a saved module.

    shoulders lm-eval --model_args module=runs/sst2/final --tasks my_task --include_path tasks/

Every request goes through the module's own code, the paths `shoulders eval` takes:
log-likelihoods through `choice_logprobs` (rank classification), generations through
`generate` (the KV-cached loop of `shoulders.backbone.generation`). So a task scored here
gets what `shoulders eval` gives on the same prompts; nothing is decoded or scored twice
over in another way.

lm_eval 0.4 knows only the models of its own files (no plugin discovery), so importing
this file is what registers `shoulders`: `shoulders lm-eval` is lm_eval's CLI after that
import, and Python callers import it before `lm_eval.simple_evaluate(model="shoulders")`
(or pass a `ShouldersLM` instance). `import shoulders` never imports it: lm_eval pulls in
`evaluate`, `datasets` and more.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

try:
    import lm_eval.models  # noqa: F401  (lm_eval's own models, as lazy entries: see below)
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError as e:  # the optional extra
    raise ImportError(f"the lm-evaluation-harness integration needs lm-eval: pip install 'shoulders[eval]' ({e})") \
        from e
# lm_eval fills its registry with its own models only when the registry is empty at the first
# lookup; they are listed first so that `--model hf` still works once `shoulders` is in it.

from shoulders.backbone.frozen import FrozenLM
from shoulders.backbone.generation import GenerationConfig
from shoulders.data.examples import Example
from shoulders.errors import ShouldersError

# lm_eval's generation kwargs that are GenerationConfig fields under the same name
# (`until` and `max_gen_toks` are mapped apart)
_GEN_KEYS = ("do_sample", "temperature", "top_p", "top_k", "seed")


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _positive(name: str, value: Any) -> int:
    """A count from model_args: lm_eval passes an int, a numeric string, or 'auto' (refused)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ShouldersError(f"{name}={value!r}: expected a positive integer (the shoulders model has no 'auto')") \
            from None
    if number < 1:
        raise ShouldersError(f"{name}={value!r}: expected a positive integer")
    return number


def raw_target_view(module):
    """The module with an empty `text.target_prefix`, weights shared (a shallow copy).

    lm_eval hands over continuations that already start with its own delimiter (the task's
    `target_delimiter`, a space by default), so they are scored exactly as given; the
    module's `target_prefix` would add a second one. Generation never reads it.
    """
    view = copy.copy(module)
    text = module.config.text.model_copy(update={"target_prefix": ""})
    view.config = module.config.model_copy(update={"text": text})
    return view


@register_model("shoulders")
class ShouldersLM(LM):
    """An lm_eval LM over `module` (a directory, or a loaded module) on `backbone`.

    model_args: `module=DIR` (omit for the bare backbone), `backbone=NAME_OR_DIR` (default:
    the one module.json records), `dtype`, `device`, `trust_remote_code`, `max_gen_toks`
    (generation budget when a task sets none), `greedy_check` (see `loglikelihood`).
    """

    def __init__(self, module: str | Path | Any | None = None, backbone: str | Path | FrozenLM | None = None, *,
                 dtype: str = "auto", device: str | None = None, batch_size: int | str = 32,
                 max_batch_size: int | None = None, max_gen_toks: int | str = 256, greedy_check: bool = True,
                 trust_remote_code: bool = False, **unknown: Any):
        super().__init__()  # max_batch_size: lm_eval passes it to every model; batches here are fixed
        if unknown:
            raise ShouldersError(f"unknown model_args {sorted(unknown)} for the shoulders model: expected module, "
                                 "backbone, dtype, device, batch_size, max_gen_toks, greedy_check, trust_remote_code")
        self.batch_size = _positive("batch_size", batch_size)
        self.max_gen_toks = _positive("max_gen_toks", max_gen_toks)
        self.greedy_check = bool(greedy_check)
        device = device or "auto"
        if module is None:
            if backbone is None:
                raise ShouldersError("the shoulders model needs module=DIR, backbone=NAME, or both")
            from shoulders.serving.registry import bare_backbone

            self.backbone = backbone if isinstance(backbone, FrozenLM) else FrozenLM.from_pretrained(
                backbone, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
            self.module = bare_backbone(self.backbone)
        elif isinstance(module, (str, Path)):
            from shoulders.api import load

            self.module, self.backbone = load(module, backbone, dtype=dtype, device=device,
                                              trust_remote_code=trust_remote_code)
        else:  # a loaded module (Python callers)
            if not isinstance(backbone, FrozenLM):
                raise ShouldersError("a loaded module needs its loaded backbone (a FrozenLM) beside it")
            self.module, self.backbone = module, backbone
        self.module.eval()
        self._scorer = raw_target_view(self.module)
        self._device = str(self.backbone.device)
        self._module_path = str(module) if isinstance(module, (str, Path)) else None

    def get_model_info(self) -> dict:
        """What lm_eval records in its results' `config`: which module on which backbone."""
        return {"module": self._module_path, "module_type": self.module.module_type,
                "backbone": self.backbone.name_or_path}

    # ------------------------------------------------------------ log-likelihood
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """log p(continuation | context) and whether greedy decoding would produce it.

        Continuations of one context are the choices of one example, scored together by
        `choice_logprobs`, as `shoulders eval --choices` scores them. `is_greedy` (read by
        `output_type: loglikelihood` tasks such as LAMBADA, not by multiple choice) comes
        from one greedy `generate` per context; `greedy_check=false` skips it (then False).
        """
        return self._loglikelihood([tuple(r.args) for r in requests], self.greedy_check, disable_tqdm)

    @torch.no_grad()
    def _loglikelihood(self, pairs: Sequence[tuple[str, str]], greedy: bool,
                       disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        by_context: dict[str, list[int]] = {}  # first-seen order, so batches follow the task's docs
        for i, (context, _) in enumerate(pairs):
            by_context.setdefault(context, []).append(i)
        contexts = list(by_context)
        out: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
        for batch in tqdm(list(_batches(contexts, self.batch_size)), desc="shoulders loglikelihood",
                          disable=disable_tqdm):
            examples = [Example(input=c, target="", choices=[pairs[i][1] for i in by_context[c]]) for c in batch]
            scores = self._scorer.choice_logprobs(self.backbone, examples)
            hits = self._greedy_hits(examples) if greedy else [[False] * len(ex.choices) for ex in examples]
            for context, row, row_hits in zip(batch, scores, hits):
                for i, lp, hit in zip(by_context[context], row, row_hits):
                    out[i] = (float(lp), hit)
        return out

    def _greedy_hits(self, examples: Sequence[Example]) -> list[list[bool]]:
        """Per choice: greedy decoding from the context yields exactly its tokens."""
        targets = [self.backbone.encode(ex.choices, add_special_tokens=False) for ex in examples]
        budget = max(len(t) for row in targets for t in row)
        gens = self._scorer.generate(self.backbone, examples, GenerationConfig(max_new_tokens=max(budget, 1)))
        return [[g[0].token_ids[:len(t)] == t and len(t) > 0 for t in row] for g, row in zip(gens, targets)]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """log p(text) for perplexity tasks, in windows of half the context.

        The text is cut at token boundaries; each window is scored given the text before it
        (as much of it as fits, like any long input), the first after the tokenizer's BOS,
        or its EOS when it adds none (as lm_eval's `hf` model does).
        """
        size = max(self.backbone.max_context // 2, 1)
        start = "" if self.backbone.encode([self.module.config.text.render("")])[0] else \
            (self.backbone.tokenizer.eos_token or "")
        pairs: list[tuple[str, str]] = []
        owner: list[int] = []
        for n, request in enumerate(requests):
            text = request.args[0]
            try:
                offsets = self.backbone.tokenizer(text, add_special_tokens=False,
                                                  return_offsets_mapping=True)["offset_mapping"]
            except NotImplementedError:
                raise ShouldersError("loglikelihood_rolling needs a fast tokenizer (character offsets)") from None
            cuts = [offsets[i][0] for i in range(0, len(offsets), size)] + [len(text)]
            cuts[0] = 0  # leading characters a tokenizer skips still belong to the first window
            for a, b in zip(cuts, cuts[1:]):
                if a == b:  # tokens that share a character (a byte-level split) start no window
                    continue
                pairs.append((start + text[:a], text[a:b]))
                owner.append(n)
        totals = [0.0] * len(requests)
        for n, (lp, _) in zip(owner, self._loglikelihood(pairs, False, disable_tqdm)):
            totals[n] += lp
        return totals

    # ---------------------------------------------------------------- generation
    @torch.no_grad()
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Greedy (or sampled) continuations through the module's `generate`, cut at the
        first `until` string, as `shoulders eval` generates (it then strips the text)."""
        groups: dict[str, list[int]] = {}  # one GenerationConfig per distinct gen_kwargs
        for i, request in enumerate(requests):
            groups.setdefault(json.dumps(request.args[1], sort_keys=True, default=str), []).append(i)
        out: list[str] = [""] * len(requests)
        bar = tqdm(total=len(requests), desc="shoulders generate_until", disable=disable_tqdm)
        for key, indices in groups.items():
            config = self._generation_config(json.loads(key))
            for batch in _batches(indices, self.batch_size):
                examples = [Example(input=requests[i].args[0], target="") for i in batch]
                for i, gens in zip(batch, self.module.generate(self.backbone, examples, config)):
                    out[i] = gens[0].text
                    self.cache_hook.add_partial("generate_until", requests[i].args, out[i])
                bar.update(len(batch))
        bar.close()
        return out

    def _generation_config(self, kwargs: dict) -> GenerationConfig:
        """lm_eval's gen_kwargs as a GenerationConfig; an option it cannot honour is an error."""
        kwargs = dict(kwargs)
        until = kwargs.pop("until", None) or []
        fields: dict[str, Any] = {"stop": tuple([until] if isinstance(until, str) else until),
                                  "max_new_tokens": _positive("max_gen_toks", kwargs.pop("max_gen_toks",
                                                                                          self.max_gen_toks))}
        unknown = sorted(set(kwargs) - set(_GEN_KEYS))
        if unknown:
            raise ShouldersError(f"generation kwargs {unknown} are not supported by the shoulders model "
                                 f"(supported: until, max_gen_toks, {', '.join(_GEN_KEYS)})")
        fields.update({k: v for k, v in kwargs.items() if v is not None})
        if not fields.get("temperature", 1.0):  # temperature 0 means greedy, as in lm_eval's hf model
            fields.pop("temperature")
            fields["do_sample"] = False
        return GenerationConfig(**fields)
