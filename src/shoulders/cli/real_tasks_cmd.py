"""shoulders real-tasks [--backbone PATH] [--data-dir DIR] [--seeds 0 1 2] [--quick] [--out DIR]"""
from __future__ import annotations

from shoulders.cli.common import add_output_args


def add_parser(sub) -> None:
    p = sub.add_parser("real-tasks", help="shared prompt vs ID-PT vs fine-tuning on SST-2, MRPC, RTE and BoolQ")
    p.add_argument("--backbone", help="causal LM directory or hub id (default: the toy-small backbone, "
                   "pre-trained and cached on first use)")
    p.add_argument("--data-dir", help="directory of the dev files (default: $SHOULDERS_DATA, else shared/data "
                   "beside the repository checkout, where a development checkout keeps them)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default: 0)")
    p.add_argument("--quick", action="store_true", help="fewer examples and steps (about a minute per seed, after "
                   "the backbone: without --backbone, toy-small is pre-trained first on first use)")
    p.add_argument("--encoder", help="ID-PT's frozen encoder (default: the bundled all-MiniLM-L6-v2)")
    p.add_argument("--out", default="runs/real_tasks", help="output directory (real_tasks.md, real_tasks.json, plot)")
    add_output_args(p)
    p.set_defaults(func=run)


def default_backbone(quick: bool, progress: bool = True) -> str:
    """toy-small's cached directory. Said up front: on first use it is pre-trained first, which
    takes longer than the experiment itself."""
    import logging

    from shoulders.toyworld import ensure_backbones

    logging.getLogger(__name__).info(
        "no --backbone: using toy-small%s, pre-trained first if it is not in the cache yet (about 7 minutes on 2 "
        "idle CPU cores; the quick one is smaller), then reused", " (quick)" if quick else "")
    return str(ensure_backbones(seed=0, quick=quick, names=("toy-small",), progress=progress)["toy-small"])


def run(args) -> int:
    import torch

    from shoulders.experiments.real_tasks import data_dir, run_real_tasks

    directory = data_dir(args.data_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such data directory (pass --data-dir or set SHOULDERS_DATA)")
    if torch.get_num_threads() > 4:
        torch.set_num_threads(4)  # tiny models: more threads only add contention
    backbone = args.backbone or default_backbone(args.quick, progress=not args.no_progress)
    result = run_real_tasks(backbone, data=directory, seeds=args.seeds, quick=args.quick, out_dir=args.out,
                            encoder_path=args.encoder, progress=not args.no_progress)
    print(result["markdown"])
    return 0
