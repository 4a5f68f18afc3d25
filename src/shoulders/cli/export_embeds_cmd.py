"""shoulders export-embeds MODULE [TEXT ...] [--input FILE] --out FILE [--format safetensors|vllm|sglang]"""
from __future__ import annotations

from shoulders.cli.common import add_backbone_args, add_output_args, positive_int

FORMATS = ("safetensors", "vllm", "sglang")


def add_parser(sub) -> None:
    p = sub.add_parser("export-embeds", help="write a soft-prompt module's [prefix ; token embeddings] per input, "
                       "as prompt embeddings for vLLM or SGLang")
    p.add_argument("module", help="module directory (prompt_tuning, idpt, or a reader whose prompt is one of them)")
    p.add_argument("text", nargs="*", help="input text(s), rendered through the module's template as generate does")
    p.add_argument("--input", help="data file of inputs (JSONL, CSV or TSV; the text in `input`, as in every data "
                   "file; a target is not needed)")
    p.add_argument("--out", required=True, help="file to write; '-' writes the vllm or sglang requests to stdout")
    p.add_argument("--format", choices=FORMATS, default="safetensors",
                   help="safetensors: one [L, D] tensor per input (prompt_embeds.0, .1, ...; the inputs in the "
                   "header); vllm: JSONL of /v1/completions bodies with base64 prompt_embeds; sglang: JSONL of "
                   "/generate bodies with input_embeds")
    p.add_argument("--max-new-tokens", type=positive_int, default=32, help="tokens to generate at most: an input "
                   "is cut so that prefix, input and these fit the window (as generate cuts it); the requests' "
                   "max_tokens")
    p.add_argument("--temperature", type=float, default=0.0, help="the requests' temperature (0 = greedy)")
    p.add_argument("--model", help="vllm: the requests' model (default: the backbone recorded in module.json, the "
                   "name `vllm serve` serves it under)")
    add_backbone_args(p)
    add_output_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    import json
    import sys

    from shoulders.cli.common import load_module_and_backbone
    from shoulders.cli.main import UserError
    from shoulders.modules import prompt_embeds as pe
    from shoulders.utils.fs import atomic_write_text

    texts = list(args.text)
    if args.input:
        from shoulders.data.loaders import load_examples

        texts += [ex.input for ex in load_examples(args.input, require_target=False)]
    if not texts:
        raise UserError("no inputs: give TEXT arguments or --input FILE")
    if args.out == "-" and args.format == "safetensors":
        raise UserError("--out -: only the vllm and sglang requests go to stdout; name a .safetensors file")
    if args.temperature < 0:
        raise UserError(f"--temperature must be >= 0, got {args.temperature}")
    module, backbone = load_module_and_backbone(args, args.module)
    embeds = module.prompt_embeds(backbone, texts, max_new_tokens=args.max_new_tokens)
    if args.format == "safetensors":
        pe.save_prompt_embeds(args.out, embeds, {
            "module": args.module, "module_type": module.module_type, "backbone": backbone.name_or_path,
            "dtype": str(backbone.dtype).removeprefix("torch."), "inputs": json.dumps(texts, ensure_ascii=False)})
    else:
        if args.format == "vllm":
            model = args.model or backbone.name_or_path
            bodies = [pe.vllm_completion_request(e, model, max_tokens=args.max_new_tokens,
                                                 temperature=args.temperature) for e in embeds]
        else:
            bodies = [pe.sglang_generate_request(e, max_new_tokens=args.max_new_tokens,
                                                 temperature=args.temperature) for e in embeds]
        lines = "".join(json.dumps(b) + "\n" for b in bodies)
        if args.out == "-":
            sys.stdout.write(lines)
            return 0
        atomic_write_text(args.out, lines)
    print(f"wrote {len(embeds)} prompt embeddings ({args.format}, {backbone.dtype}, hidden size "
          f"{backbone.hidden_size}) to {args.out}")
    return 0
