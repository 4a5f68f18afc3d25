"""shoulders export-peft MODULE OUT / shoulders import-peft ADAPTER OUT"""
from __future__ import annotations

from shoulders.cli.common import add_backbone_args, add_output_args


def add_parser(sub) -> None:
    p = sub.add_parser("export-peft", help="write a prompt_tuning or prefix_tuning module as a PEFT adapter directory")
    p.add_argument("module", help="prompt_tuning or prefix_tuning module directory")
    p.add_argument("out", help="adapter directory to write (adapter_config.json, adapter_model.safetensors)")
    add_backbone_args(p)
    add_output_args(p)
    p.set_defaults(func=run_export)
    q = sub.add_parser("import-peft", help="read a PEFT prompt-tuning or prefix-tuning adapter into a shoulders module")
    q.add_argument("adapter", help="PEFT PROMPT_TUNING or PREFIX_TUNING adapter directory")
    q.add_argument("out", help="module directory to write")
    q.add_argument("--template", default="{input}", help="the text template the adapter was trained with, which "
                   "PEFT does not record, e.g. $'Review: {input}\\nSentiment:' in bash")
    q.add_argument("--target-prefix", default=" ", help="text between the input and the answer")
    add_backbone_args(q)
    add_output_args(q)
    q.set_defaults(func=run_import)


def run_export(args) -> int:
    from shoulders.cli.common import load_module_and_backbone
    from shoulders.modules.peft import export_peft

    module, backbone = load_module_and_backbone(args, args.module)
    print(export_peft(module, backbone, args.out))
    return 0


def run_import(args) -> int:
    import json
    from pathlib import Path

    from shoulders.backbone import FrozenLM
    from shoulders.cli.main import UserError
    from shoulders.modules.io import save_module
    from shoulders.modules.peft import import_peft

    if "{input}" not in args.template:  # before loading the backbone: a template without it ignores every input
        raise UserError(f"--template {args.template!r}: must contain {{input}}, where each input goes")
    name = args.backbone
    if not name:
        cfg_file = Path(args.adapter) / "adapter_config.json"
        name = json.loads(cfg_file.read_text()).get("base_model_name_or_path") if cfg_file.is_file() else None
    if not name:
        raise UserError("no backbone: pass --backbone (the adapter records none)")
    backbone = FrozenLM.from_pretrained(name, dtype=args.dtype, device=args.device,
                                        trust_remote_code=args.trust_remote_code)
    module = import_peft(args.adapter, backbone, text={"template": args.template, "target_prefix": args.target_prefix})
    print(save_module(module, args.out, backbone))
    return 0
