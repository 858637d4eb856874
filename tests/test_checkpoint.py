"""Checkpoint files (atomic, verified), random-generator states, configuration descriptions, the state of
stateful losses and samplers, and resuming :func:`ebmlib.train.fit` in-process. The runs killed for real are
in tests/test_resume.py."""

import os
import random
from functools import partial

import numpy as np
import pytest
import torch

from ebmlib.checkpoint import (
    CHECKPOINT_NAME,
    checkpoint_meta,
    load_checkpoint,
    rng_state,
    run_progress,
    save_checkpoint,
    set_rng_state,
)
from ebmlib.fingerprint import describe_config, unsaved_state
from ebmlib.flows import RealNVP
from ebmlib.losses import FlowEBMLoss, PersistentContrastiveDivergence, tabcd_loss
from ebmlib.nets import MLPEnergy
from ebmlib.samplers import ReplayBuffer, langevin
from ebmlib.train import fit, linear_warmup, tensor_batches


class Stop(Exception):
    """Raised by a callback to end a run in the middle, as a disconnect would."""


def _state():
    return {"w": torch.arange(12.0).reshape(3, 4), "nested": {"step": 3, "name": "pcd", "x": [torch.ones(2), None]}}


def test_checkpoint_round_trip_and_header(tmp_path):
    path = tmp_path / "sub" / "c.pt"
    size = save_checkpoint(path, _state(), meta={"iteration": 7, "n_iters": 10})
    assert size == path.stat().st_size
    loaded = load_checkpoint(path)
    torch.testing.assert_close(loaded["w"], _state()["w"])
    assert loaded["nested"]["step"] == 3 and loaded["nested"]["x"][1] is None
    assert checkpoint_meta(path) == {"iteration": 7, "n_iters": 10}
    assert run_progress(tmp_path / "sub") is None  # not named checkpoint.pt
    with pytest.raises(ValueError, match="meta"):
        save_checkpoint(path, _state(), meta={"bad": object()})


def test_truncated_checkpoints_are_refused(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _state(), meta={"iteration": 1})
    data = path.read_bytes()
    header_end = data.index(b"\n") + 1
    for length in (0, 10, header_end - 1, header_end, header_end + 1, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:length])
        with pytest.raises(ValueError, match="truncated|not an ebmlib checkpoint"):
            load_checkpoint(path)
    path.write_bytes(data + b"\0")
    with pytest.raises(ValueError, match="truncated or padded"):
        load_checkpoint(path)


def test_every_bit_flip_in_the_header_and_sampled_ones_in_the_payload_are_detected(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _state(), meta={"iteration": 12, "n_iters": 40})
    data = bytearray(path.read_bytes())
    header_end = data.index(b"\n") + 1
    draw = np.random.default_rng(0)
    positions = [*range(header_end), *draw.choice(np.arange(header_end, len(data)), 100, replace=False),
                 len(data) - 1]
    for position in positions:
        for bit in range(8) if position < header_end else [int(draw.integers(8))]:
            corrupt = bytearray(data)
            corrupt[position] ^= 1 << bit
            path.write_bytes(corrupt)
            with pytest.raises(ValueError, match="corrupted|truncated|not an ebmlib checkpoint"):
                load_checkpoint(path)


def test_a_failed_save_leaves_the_previous_checkpoint_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"v": torch.zeros(3)})

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"v": torch.ones(3)})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["v"], torch.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_rng_state_restores_torch_numpy_and_python(tmp_path):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    np.random.standard_normal()  # leaves a cached Gaussian in NumPy's legacy state
    state = rng_state()
    save_checkpoint(tmp_path / "rng.pt", state)
    first = (torch.rand(3), np.random.standard_normal(3), random.random(), random.gauss(0, 1))
    set_rng_state(load_checkpoint(tmp_path / "rng.pt"))
    second = (torch.rand(3), np.random.standard_normal(3), random.random(), random.gauss(0, 1))
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2:] == second[2:]


def _pcd(step_size=0.01, capacity=64, reinit_prob=0.05):
    return PersistentContrastiveDivergence(ReplayBuffer(lambda n: torch.rand(n, 2), capacity, reinit_prob),
                                           partial(langevin, n_steps=3, step_size=step_size), l2_reg=0.1)


def test_describe_config_sees_settings_and_shapes_but_not_values():
    def describe(**kw):
        model = MLPEnergy(in_dim=2, hidden=kw.get("hidden", 8), depth=2)
        return describe_config({"model": model, "loss_fn": _pcd(kw.get("step_size", 0.01), 64, kw.get("reinit", 0.05)),
                                "optimizer": torch.optim.Adam(model.parameters(), lr=kw.get("lr", 1e-3))})

    base = describe()
    assert describe() == base  # fresh objects with other random values: same configuration
    assert " at 0x" not in "".join(base.values())
    for change, paths in [({"step_size": 0.02}, ["loss_fn.sampler.step_size"]),
                          ({"reinit": 0.1}, ["loss_fn.buffer.reinit_prob"]),
                          ({"hidden": 9}, ["model", "optimizer"]), ({"lr": 1e-2}, ["optimizer"])]:
        other = describe(**change)
        assert [k for k in base if base[k] != other.get(k)] == paths, change


def test_unsaved_state_finds_stateful_objects_behind_functions():
    pcd, generator = _pcd(), torch.Generator()
    assert unsaved_state({"loss_fn": lambda m, x: pcd(m, x)}, []) == [
        "loss_fn.pcd (ebmlib.losses.contrastive.PersistentContrastiveDivergence)"]
    assert unsaved_state({"loss_fn": lambda m, x: pcd(m, x)}, [pcd]) == []
    assert unsaved_state({"loss_fn": pcd}, []) == []  # a root with state_dict is saved itself
    found = unsaved_state({"next_batch": partial(torch.rand, 3, generator=generator)}, [])
    assert found == ["next_batch.generator (torch._C.Generator)"]


def test_a_notebook_function_is_seen_through_the_global_variables_it_reads():
    notebook = {"__name__": "__main__"}  # what a notebook cell or a script defines its functions in
    exec("import torch\nfrom ebmlib.train import tensor_batches\nSETTINGS = {'batch': 4}\n"
         "index = tensor_batches(torch.arange(10), 2)\n"
         "def next_batch():\n    return torch.randn(SETTINGS['batch'], 2)[index()]\n", notebook)
    assert describe_config({"next_batch": notebook["next_batch"]})["next_batch.SETTINGS['batch']"] == "4"
    assert unsaved_state({"next_batch": notebook["next_batch"]}, []) == [
        "next_batch.index (ebmlib.train.loop.TensorBatches)"]


def test_loss_and_buffer_states_round_trip_and_refuse_other_shapes():
    pcd, other = _pcd(), _pcd()
    pcd(MLPEnergy(in_dim=2, hidden=8, depth=2), torch.randn(16, 2))
    other.load_state_dict(pcd.state_dict())
    assert torch.equal(other.buffer.states, pcd.buffer.states)
    with pytest.raises(ValueError, match="states"):
        _pcd(capacity=65).load_state_dict(pcd.state_dict())
    with pytest.raises(ValueError, match="state must hold"):
        other.load_state_dict({})
    tabcd, fresh = tabcd_loss(1, (3,), cd_rounds=1), tabcd_loss(1, (3,), cd_rounds=1)
    fresh.load_state_dict(tabcd.state_dict())
    assert torch.equal(fresh.buffer.states, tabcd.buffer.states)


@pytest.mark.parametrize("method", ["flowmc", "ula", "nt"])
def test_flow_ebm_loss_state_round_trips(method):
    def build():
        torch.manual_seed(3)
        flow = RealNVP(2, n_layers=2, hidden_dims=(8,))
        optimizer = torch.optim.Adam(flow.parameters(), lr=1e-2) if method != "ula" else None
        return FlowEBMLoss(method, torch.randn(32, 2), n_chains=8, n_steps=4, step_size=0.05,
                           flow=flow if method != "ula" else None, flow_optimizer=optimizer, n_local=1)

    energy = MLPEnergy(in_dim=2, hidden=8, depth=2)
    trained, restored = build(), build()
    for _ in range(2):
        trained(energy, torch.randn(8, 2))
    assert describe_config({"loss": trained}) == describe_config({"loss": restored})  # state is not configuration
    restored.load_state_dict(trained.state_dict())
    torch.manual_seed(5)
    expected = trained(energy, torch.ones(8, 2))[0]
    torch.manual_seed(5)
    assert torch.equal(restored(energy, torch.ones(8, 2))[0], expected)
    assert restored.step_size == trained.step_size and torch.equal(restored.pool, trained.pool)
    with pytest.raises(ValueError, match="pool"):
        FlowEBMLoss("ula", torch.randn(16, 2), n_chains=8, n_steps=4, step_size=0.05).load_state_dict(
            build().state_dict() if method == "ula" else {**build().state_dict(), "method": "ula"})


def test_tensor_batches_resume_the_epoch_they_were_in():
    data = torch.arange(40.0).unsqueeze(1)
    batches = tensor_batches(data, 8, generator=torch.Generator().manual_seed(0))
    batches(), batches()
    state = {k: v.clone() for k, v in batches.state_dict().items()}
    expected = torch.cat([batches() for _ in range(7)])
    resumed = tensor_batches(data, 8, generator=torch.Generator().manual_seed(99))
    resumed.load_state_dict(state)
    assert torch.equal(torch.cat([resumed() for _ in range(7)]), expected)
    with pytest.raises(ValueError, match="order"):
        tensor_batches(data, 5).load_state_dict({"order": torch.zeros(2, 8, dtype=torch.long)})


def _run(run_dir, *, stop_at=None, n_iters=30, hidden=8, wrap=False, stateful=None, scheduler=False, capacity=64,
         models=None):
    """A PCD run built from a fixed seed, as a restarted notebook would; optionally stopped by an exception."""
    torch.manual_seed(0)
    model = MLPEnergy(in_dim=2, hidden=hidden, depth=2)
    if models is not None:
        models.append(model)
    pcd = _pcd(capacity=capacity)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    warmup = linear_warmup(optimizer, 8)
    decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 0.97**t) if scheduler else None
    calls = []

    def callback(iteration, m):
        calls.append(iteration)
        warmup(iteration, m)
        if decay is not None:
            decay.step()
        if iteration == stop_at:
            raise Stop

    loss_fn = (lambda m, x: pcd(m, x)) if wrap else pcd
    extra = {"pcd": pcd} if stateful == "pcd" else {"decay": decay} if stateful == "decay" else None
    result = fit(model, loss_fn, tensor_batches(torch.randn(64, 2), 16), n_iters=n_iters, optimizer=optimizer,
                 ema_decay=0.9, log_every=4, callback=callback, run_dir=run_dir, checkpoint_every=3,
                 stateful=extra, progress=False)
    return model, pcd, result, calls, torch.rand(2)


def _same_run(a, b):
    assert all(torch.equal(p, q) for p, q in zip(a[0].state_dict().values(), b[0].state_dict().values()))
    assert torch.equal(a[1].buffer.states, b[1].buffer.states)
    assert a[2].history == b[2].history
    assert all(torch.equal(p, q) for p, q in zip(a[2].ema.state_dict().values(), b[2].ema.state_dict().values()))
    assert torch.equal(a[4], b[4])  # the generators are where an uninterrupted run leaves them


@pytest.mark.parametrize("stop_at", [2, 3, 16, 29])
def test_fit_resumes_a_stopped_run_exactly(tmp_path, stop_at):
    expected = _run(None)
    with pytest.raises(Stop):
        _run(tmp_path, stop_at=stop_at)
    resumed = _run(tmp_path)
    assert resumed[2].resumed_from == (stop_at - 1) // 3 * 3 and resumed[3][0] == resumed[2].resumed_from + 1
    _same_run(resumed, expected)
    finished = _run(tmp_path)
    assert finished[2].resumed_from == 30 and finished[3] == []  # nothing is trained again
    _same_run(finished, expected)
    assert finished[2].seconds == resumed[2].seconds


def test_fit_resumes_a_scheduler_passed_as_stateful(tmp_path):
    expected = _run(None, scheduler=True, stateful="decay")
    with pytest.raises(Stop):
        _run(tmp_path, stop_at=17, scheduler=True, stateful="decay")
    _same_run(_run(tmp_path, scheduler=True, stateful="decay"), expected)
    with pytest.raises(ValueError, match="callback.decay"):  # the scheduler would be missed
        _run(tmp_path / "other", scheduler=True)


def test_fit_refuses_hidden_state_other_configurations_and_corrupted_checkpoints(tmp_path):
    with pytest.raises(ValueError, match=r"loss_fn\.pcd"):
        _run(tmp_path / "wrapped", wrap=True)
    _run(tmp_path / "wrapped", wrap=True, stateful="pcd")
    with pytest.raises(Stop):
        _run(tmp_path, stop_at=10)
    progress = run_progress(tmp_path)
    assert (progress.iteration, progress.n_iters, progress.finished) == (9, 30, False)
    with pytest.raises(ValueError, match="another configuration.*model"):
        _run(tmp_path, hidden=9)
    with pytest.raises(ValueError, match="beyond n_iters"):
        _run(tmp_path, n_iters=6)
    models = []
    with pytest.raises(ValueError, match="'loss_fn' does not fit.*nothing was loaded"):
        _run(tmp_path, capacity=65, models=models)  # the buffer refuses its state after the model took its own
    torch.manual_seed(0)
    fresh = MLPEnergy(in_dim=2, hidden=8, depth=2)
    assert all(torch.equal(p, q) for p, q in zip(models[0].state_dict().values(), fresh.state_dict().values()))
    extended = _run(tmp_path, n_iters=45)  # a run may be extended
    assert extended[2].resumed_from == 9 and extended[2].history["iteration"][-1] == 45
    data = bytearray((tmp_path / CHECKPOINT_NAME).read_bytes())
    data[-100] ^= 4
    (tmp_path / CHECKPOINT_NAME).write_bytes(data)
    with pytest.raises(ValueError, match="corrupted"):
        _run(tmp_path, n_iters=45)
    with pytest.raises(ValueError, match="stateful"):
        fit(MLPEnergy(in_dim=2, hidden=8, depth=2), _pcd(), lambda: torch.randn(4, 2), n_iters=1,
            run_dir=tmp_path / "x", stateful={"bad": object()}, progress=False)


def test_a_recorder_passed_as_stateful_comes_back_with_a_finished_or_resumed_run(tmp_path):
    from ebmlib.checkpoint import Recorder

    def train(n_iters, records):
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1)

        def record(iteration, m):
            records[iteration] = m.weight.detach().clone()

        with pytest.raises(ValueError, match="callback"):  # a recorder hidden in the callback is refused
            fit(model, lambda m, b: m(b).pow(2).mean(), lambda: torch.randn(4, 2), n_iters=n_iters, callback=record,
                run_dir=tmp_path / "refused", progress=False)
        fit(model, lambda m, b: m(b).pow(2).mean(), lambda: torch.randn(4, 2), n_iters=n_iters, callback=record,
            run_dir=tmp_path / "run", stateful={"records": records}, progress=False)
        return model

    first = Recorder()
    train(3, first)
    again = Recorder()
    train(3, again)  # finished: not trained again, records restored
    assert list(again) == [1, 2, 3] and all(torch.equal(again[k], first[k]) for k in first)
    longer = Recorder()
    train(5, longer)  # resumed from iteration 3: the first three records kept, two added
    assert list(longer) == [1, 2, 3, 4, 5] and torch.equal(longer[3], first[3])
    with pytest.raises(ValueError, match="state"):
        Recorder().load_state_dict({"records": []})
