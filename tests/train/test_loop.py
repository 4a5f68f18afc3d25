"""train/loop.py: the schedules keep their floats, transformers' are used where equal, one step's order."""
import json

import pytest
import torch
from transformers import get_scheduler

from shoulders.train import loop


def _opt(lr=1.0):
    return torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=lr)


def _lrs(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.get_last_lr()[0])
        sched.optimizer.step()
        sched.step()
    return out


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_transformers_schedules_where_they_give_our_floats(schedule):
    for total in range(1, 60):
        sched = loop.lr_scheduler(_opt(3e-2), schedule, 0, total)
        fn = sched.lr_lambdas[0]
        assert getattr(fn, "func", fn).__module__.startswith("transformers")  # transformers' own
        fn = loop.warmup_then(schedule, 0, total)
        assert _lrs(sched, total + 1) == [3e-2 * fn(s) for s in range(total + 1)]


def test_transformers_linear_and_warmup_differ_so_ours_stay():
    """Why train/loop.py keeps named schedules: transformers' warm-up starts at 0 and its linear
    decay rounds differently. If this fails, transformers now matches: use get_scheduler."""
    for name, warmup in (("linear", 0), ("cosine", 3), ("constant", 3)):
        ours = [loop.warmup_then(name, warmup, 30)(s) for s in range(31)]
        sched = get_scheduler(name, _opt(), num_warmup_steps=warmup, num_training_steps=30)
        assert ours != [float(sched.lr_lambdas[0](s)) for s in range(31)], name


def test_named_schedules_keep_their_formulas():
    rr = loop.warmup_times_linear(3, 10)
    assert [rr(s) for s in range(4)] == [min(1.0, (s + 1) / 3) * max(0.0, 1.0 - s / 10) for s in range(4)]
    assert loop.warmup_cosine_floor(0, 100, 6e-3, 20, 0.1) == 6e-3 * 1 / 20
    assert loop.warmup_cosine_floor(100, 100, 6e-3, 20, 0.1) == pytest.approx(6e-4)
    assert loop.warmup_times_cosine_floor(0, 100, 3e-3, 50, 0.1) == 3e-3 * (1 / 50) * 1.0


def test_scheduler_state_survives_json():
    """Checkpoints keep the scheduler's state as JSON, transformers' schedules included."""
    for schedule, warmup in (("cosine", 0), ("linear", 2), ("warmup_times_linear", 2)):
        a = loop.lr_scheduler(_opt(), schedule, warmup, 10)
        _lrs(a, 4)
        b = loop.lr_scheduler(_opt(), schedule, warmup, 10)
        b.load_state_dict(json.loads(json.dumps(a.state_dict())))
        assert _lrs(b, 6) == _lrs(a, 6)


def test_update_clips_steps_schedules_and_drops_grads():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 ** s)
    loss = (p * torch.tensor([30.0, 40.0])).sum()
    assert loop.step(loss, opt, sched, params=[p], max_grad_norm=1.0) == 0.0
    assert torch.allclose(p.detach(), torch.tensor([-0.6, -0.8]))  # the gradient clipped to norm 1
    assert p.grad is None and opt.param_groups[0]["lr"] == 0.5
    (p * torch.tensor([30.0, 40.0])).sum().backward()
    loop.update(opt, params=[p], max_grad_norm=None)  # no clipping, no schedule
    assert torch.allclose(p.detach(), torch.tensor([-15.6, -20.8]))
