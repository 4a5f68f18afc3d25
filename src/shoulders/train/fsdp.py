"""Shard a frozen backbone's weights across processes with FSDP2 (torch's `fully_shard`).

Data parallelism keeps a whole backbone on every process; `device_map` splits one across
the devices of one process, which then run one after another. Here each of N processes
keeps 1/N of every frozen weight, all-gathers a decoder layer just before it runs and
frees it after, so all devices compute at once on their own slice of the batch. Only
the backbone is sharded: the trained module is tiny, stays whole on every process and is
prepared by accelerate (DDP) as before, so gradients exist for the module alone and a
checkpoint is the module's weights. The backbone's own weights are never saved.

Units: every decoder layer (the classes the model lists in `_no_split_modules`, as
accelerate's FSDP does) is one, and the root holds the rest (input embeddings, final
norm, LM head). The trainer embeds tokens outside the model's forward (soft prefixes are
spliced in before the model runs), so a hook on the input embeddings gathers the root's
weights first; FSDP keeps them gathered through the forward and frees them after the
backward. Every process must run the same sequence of forwards (each one is a collective):
the trainer has every process evaluate, not rank 0 alone.
"""
from __future__ import annotations

import logging

import torch
import torch.distributed as dist

from shoulders.backbone.frozen import FrozenLM

log = logging.getLogger(__name__)


def is_sharded(lm: FrozenLM) -> bool:
    """True when `lm`'s weights are FSDP shards (from `load_sharded` or `shard_backbone`)."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(lm.model, FSDPModule)


def load_sharded(name_or_path: str, *, device: torch.device | str, dtype: str = "float32",
                 trust_remote_code: bool = False) -> FrozenLM:
    """Load a backbone sharded over the current process group, each process holding 1/N.

    Rank 0 reads the checkpoint into CPU memory (the whole model, once, not once per
    process); every process builds the architecture on the meta device, shards it, and
    receives its slices from rank 0 by broadcast, one tensor at a time. No device ever
    holds the whole model.
    """
    _require_process_group()
    full = None
    if dist.get_rank() == 0:
        full = FrozenLM.from_pretrained(name_or_path, dtype=dtype, device="cpu", trust_remote_code=trust_remote_code)
    return _shard_from_rank0(full, device, trust_remote_code)


def shard_backbone(lm: FrozenLM, device: torch.device | str, *, trust_remote_code: bool = False) -> FrozenLM:
    """A sharded copy of a backbone every process already holds whole (the Python API's
    `Trainer(backbone=...)`): rank 0's weights are the ones kept, as DDP does for a module."""
    _require_process_group()
    if is_sharded(lm):
        return lm
    full = lm if dist.get_rank() == 0 else None
    return _shard_from_rank0(full, device, trust_remote_code, tokenizer=lm.tokenizer)


def shard_sizes(lm: FrozenLM) -> tuple[list[int], int]:
    """(parameters each process holds in its local shards, in rank order; the backbone's
    total). Measured from the shards themselves, so it is what the memory holds."""
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    for module in lm.model.modules():  # free the gathered root weights, if any, so only shards count
        if isinstance(module, FSDPModule):
            module.reshard()
    local = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in lm.model.parameters())
    sizes: list = [None] * dist.get_world_size()
    dist.all_gather_object(sizes, local)
    return sizes, lm.num_parameters


# ----------------------------------------------------------------------------- internals
def _require_process_group() -> None:
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("backbone.fsdp needs a process group: launch with torchrun or accelerate launch")


def _decoder_layers(model) -> list[torch.nn.Module]:
    names = set(getattr(model, "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if m is not model and type(m).__name__ in names]
    if not layers:
        raise ValueError(f"{type(model).__name__}: no decoder layers to shard (the model lists none in "
                         "_no_split_modules); backbone.fsdp needs a transformers model that does")
    return layers


def _shard_from_rank0(full: FrozenLM | None, device, trust_remote_code: bool, tokenizer=None) -> FrozenLM:
    """Every process: the architecture on the meta device, sharded, filled from rank 0's
    `full` (None elsewhere) by broadcast. Returns with the root's weights gathered, so a
    module can be built from the input embeddings right away."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = torch.device(device)
    rank0 = dist.get_rank() == 0
    header = [(full.name_or_path, full.model.config, full.dtype) if rank0 else None]
    dist.broadcast_object_list(header, src=0)
    name, config, dtype = header[0]
    if tokenizer is None:
        tokenizer = full.tokenizer if rank0 else AutoTokenizer.from_pretrained(
            name, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=trust_remote_code)
    model.requires_grad_(False)  # before sharding: the gathered weights copy this flag
    model.eval()
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for layer in reversed(_decoder_layers(model)):  # inner units before the ones that hold them
        fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    model.to_empty(device=device)
    state = full.model.state_dict() if rank0 else {}
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    # Buffers are not sharded and the non-persistent ones (rotary frequencies) are not in the
    # state dict: rank 0's values, sent to all.
    source = dict(full.model.named_buffers()) if rank0 else {}
    for key, buf in model.named_buffers():
        if rank0:
            buf.copy_(source[key])
        dist.broadcast(buf, src=0)
    del full, state, source
    lm = FrozenLM(model, tokenizer, name)
    lm.input_embeddings.register_forward_pre_hook(lambda _module, _args: model.unshard())
    model.unshard()
    lm.info()  # cached now, on every process: rank 0 alone writes module.json later, with no collective
    log.info("%s: sharded over %d processes (FSDP2)", name, dist.get_world_size())
    return lm
