"""A tiny training run for the kill-and-resume tests, run in a child process (tests/test_resume.py).

``train`` builds everything from a fixed seed, as a notebook cell would after a restart, and calls
:func:`ebmlib.train.fit`; the child can SIGKILL itself at an iteration (``kill_at``) or inside the rename of
its ``kill_in_save``-th checkpoint save, after the temporary file is written and before it replaces the old one.
"""

from __future__ import annotations

import itertools
import os
import signal
from functools import partial

import torch

from ebmlib.flows import RealNVP
from ebmlib.losses import FlowEBMLoss, PersistentContrastiveDivergence
from ebmlib.nets import MLPEnergy, TiltedEnergy, toy_energy_net
from ebmlib.samplers import ReplayBuffer, langevin
from ebmlib.train import fit, linear_warmup, tensor_batches
from ebmlib.utils import seed_everything

N_ITERS = 40
CHECKPOINT_EVERY = 4


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _build(loss: str):
    seed_everything(0)
    data = 0.5 * torch.randn(512, 2) + torch.tensor([1.0, -1.0])
    if loss == "pcd":
        model = MLPEnergy(in_dim=2, hidden=16, depth=2)
        loss_fn = PersistentContrastiveDivergence(
            ReplayBuffer(lambda n: 4 * torch.rand(n, 2) - 2, capacity=256, reinit_prob=0.05),
            partial(langevin, n_steps=5, step_size=0.01), l2_reg=0.1)
    else:
        flow = RealNVP(2, n_layers=2, hidden_dims=(8,), base_std=1.5)
        model = TiltedEnergy(toy_energy_net(2, (16, 16)), 2, base_std=1.5)
        loss_fn = FlowEBMLoss("flowmc", flow.sample(128).detach(), n_chains=16, n_steps=8, step_size=0.05,
                              flow=flow, flow_optimizer=torch.optim.Adam(flow.parameters(), lr=1e-2), n_local=3,
                              n_particles=4, record_steps=[4, 8])
    return model, loss_fn, tensor_batches(data, 64)


def train(out: str, run_dir: str | None = None, *, loss: str = "pcd", kill_at: int | None = None,
          kill_in_save: int | None = None, progress=None) -> None:
    """Train and ``torch.save`` the final state to ``out``; ``progress`` (a shared integer) gets the iteration."""
    torch.set_num_threads(1)
    if kill_in_save is not None:
        saves, replace = itertools.count(1), os.replace

        def replace_or_die(source, target):
            if next(saves) == kill_in_save:
                _kill_self()
            replace(source, target)

        os.replace = replace_or_die
    model, loss_fn, next_batch = _build(loss)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    warmup = linear_warmup(optimizer, 10)

    def callback(iteration, model):
        warmup(iteration, model)
        if progress is not None:
            progress.value = iteration
        if iteration == kill_at:
            _kill_self()

    result = fit(model, loss_fn, next_batch, n_iters=N_ITERS, optimizer=optimizer, ema_decay=0.9, log_every=3,
                 callback=callback, run_dir=run_dir, checkpoint_every=CHECKPOINT_EVERY, progress=False)
    chains = loss_fn.buffer.states if loss == "pcd" else loss_fn.pool
    extra = {} if loss == "pcd" else {"flow": loss_fn.flow.state_dict(), "step_size": loss_fn.step_size,
                                      "negatives": loss_fn.last_negatives}
    torch.save({"model": model.state_dict(), "ema": result.ema.state_dict(), "optimizer": optimizer.state_dict(),
                "chains": chains, "history": result.history, "next_draw": torch.rand(4),
                "resumed_from": result.resumed_from, **extra}, out)
