"""The step counts of ebmlib.bench.cost: FLOPs against the closed forms of matrix products, operators dispatched
forward and backward, bytes written, the prediction from all three; the smoke run's capped counts and the cost
ledger fit writes, and the chapter table built from it."""

import dataclasses
import json
import pickle
import threading

import pytest
import torch
from torch import nn

from ebmlib.bench import advance, make_task, start_run
from ebmlib.bench.cli import main
from ebmlib.bench.cost import (
    GPUS,
    DeviceModel,
    OperationCount,
    calibrate_cpu,
    chapter_costs,
    check_on_this_cpu,
    count_methods,
    count_operations,
    format_cost_table,
    predict_seconds,
    read_ledgers,
)
from ebmlib.ledger import (
    LARGE_OUTPUT_BYTES,
    RunRecord,
    flushed_denormals,
    ledger_path,
    read_ledger,
    recorded_loop,
    recorded_steps,
    repeat_factor,
    repetitions,
    unrecorded,
)
from ebmlib.samplers import langevin
from ebmlib.scale import smoke_cap, study_budgets
from ebmlib.train import fit, tensor_batches


def test_matrix_product_flops_are_2mnk():
    a, b = torch.randn(5, 7), torch.randn(7, 3)
    count = count_operations(lambda: a @ b)
    assert count.flops == 2 * 5 * 7 * 3
    assert count.operators == 1


def test_a_linear_layer_counts_forward_and_backward():
    layer = nn.Linear(6, 4)
    x = torch.randn(10, 6, requires_grad=True)
    forward = count_operations(lambda: layer(x))
    both = count_operations(lambda: layer(x).sum().backward())
    assert forward.flops == 2 * 10 * 6 * 4  # the product; the bias add is elementwise, not counted
    assert both.flops == 3 * forward.flops  # backward: one product for the input's gradient, one for the weight's
    assert both.operators > forward.operators


def test_gradients_with_respect_to_the_input_inside_a_step_are_counted():
    # Gibbs-with-Gradients calls torch.autograd.grad inside the training step: the counter must allow it
    layer = nn.Linear(4, 1)
    x = torch.randn(8, 4, requires_grad=True)
    count = count_operations(lambda: torch.autograd.grad(layer(x).sum(), x))
    assert count.flops == 2 * (2 * 8 * 4)


def test_prediction_is_the_larger_of_arithmetic_and_launch_time():
    device = DeviceModel("toy", flops_per_second=1e9, launch_seconds=1e-5)
    assert predict_seconds(OperationCount(flops=2_000_000_000, operators=10), device) == pytest.approx(2.0)
    assert predict_seconds(OperationCount(flops=10, operators=1000), device) == pytest.approx(1e-2)


def test_energy_discrepancy_does_more_arithmetic_in_fewer_operators_than_gibbs_with_gradients():
    # 32 negatives per point in one batched pass against five sequential moves, each with a gradient
    rows = {r["method"]: r for r in count_methods(make_task("gray16", "ci"), ["ED-Bern", "PCD-GwG-5"])}
    assert rows["ED-Bern"]["flops"] > 2 * rows["PCD-GwG-5"]["flops"]
    assert rows["ED-Bern"]["operators"] < rows["PCD-GwG-5"]["operators"] / 2


def test_bytes_count_what_operators_write_and_views_write_nothing():
    a = torch.ones(4, 8)
    assert count_operations(lambda: a.T).bytes == 0
    assert count_operations(lambda: a + a).bytes == 4 * 8 * 4
    assert count_operations(lambda: a.add_(1)).bytes == 4 * 8 * 4  # in place: written all the same


def test_large_bytes_count_new_tensors_beyond_the_mmap_threshold():
    x = torch.zeros(LARGE_OUTPUT_BYTES // 4)
    assert count_operations(lambda: x + 1).large_bytes == LARGE_OUTPUT_BYTES  # fresh pages on a CPU
    assert count_operations(lambda: x.add_(1)).large_bytes == 0  # in place: the pages exist
    assert count_operations(lambda: x[:10] + 1).large_bytes == 0
    cpu = DeviceModel("cpu", 1e9, 1e-6, bytes_per_second=1e9, overlap=False, large_bytes_per_second=1e8)
    assert predict_seconds(OperationCount(0, 0, bytes=2 * 10**8, large_bytes=10**8), cpu) == pytest.approx(1.1)


def test_a_cpu_adds_the_three_times_and_a_gpu_takes_the_largest():
    count = OperationCount(flops=10**9, operators=1000, bytes=10**9)
    cpu = DeviceModel("cpu", flops_per_second=1e9, launch_seconds=1e-3, bytes_per_second=1e9, overlap=False)
    gpu = DeviceModel("gpu", flops_per_second=1e9, launch_seconds=1e-3, bytes_per_second=1e9, overlap=True)
    assert predict_seconds(count, cpu) == pytest.approx(3.0)
    assert predict_seconds(count, gpu) == pytest.approx(1.0)


def test_the_calibrated_cpu_measures_positive_rates():
    cpu = calibrate_cpu(threads=1, repeats=2)
    assert cpu.flops_per_second > 1e8 and cpu.bytes_per_second > 1e8 and 1e-8 < cpu.launch_seconds < 1e-3
    assert 0 < cpu.large_bytes_per_second
    assert not cpu.overlap


def test_smoke_caps_remember_the_full_counts(monkeypatch):
    monkeypatch.setenv("EBMLIB_SMOKE", "1")
    capped = smoke_cap({"n_iters": 20_000, "evals": (75, 150, 300), "seeds": (0, 1, 2)}, {"n_iters": 5, "evals": 3},
                       first={"seeds": 1})
    assert capped["n_iters"] == 5 and capped["n_iters"].full == 20_000
    assert capped["evals"] == (3,) and max(capped["evals"]).full == 300  # the largest full value of those merged
    assert capped["seeds"] == (0,) and capped["seeds"].full == 3
    assert pickle.loads(pickle.dumps(capped["n_iters"])).full == 20_000
    assert pickle.loads(pickle.dumps(capped["seeds"])).full == 3


def test_a_loop_over_the_kept_repetitions_stands_for_all_of_them(monkeypatch):
    monkeypatch.setenv("EBMLIB_SMOKE", "1")
    settings = smoke_cap({"seeds": (0, 1, 2, 3), "toys": ("a", "b", "c")}, {}, first={"seeds": 2, "toys": 1})
    assert repeat_factor() == 1
    inside = [(seed, toy, repeat_factor()) for seed in settings["seeds"] for toy in settings["toys"]]
    assert inside == [(0, "a", 6.0), (1, "a", 6.0)]  # each of the 2 × 1 runs stands for 2 × 3 of full's 4 × 3
    for _ in settings["seeds"]:
        break
    assert repeat_factor() == 1  # a loop left by break no longer counts


def _train(n_iters):
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    data = torch.randn(64, 3)
    return fit(model, lambda m, x: m(x).pow(2).mean(), tensor_batches(data, 16), n_iters=n_iters, progress=False,
               desc="toy run")


def test_fit_records_each_run_in_the_cost_ledger(monkeypatch, tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv("EBMLIB_COST", str(ledger))
    monkeypatch.setenv("EBMLIB_SMOKE", "1")
    settings = smoke_cap({"n_iters": 1000, "seeds": (0, 1, 2)}, {"n_iters": 4}, first={"seeds": 1})
    for _ in settings["seeds"]:
        _train(settings["n_iters"])
    _train(3)
    first, second = read_ledger(ledger)
    assert (first.desc, first.steps, first.timed_steps, first.full_steps, first.repeats) == ("toy run", 4, 3, 1000, 3)
    assert first.step.flops == 2 * (2 * 16 * 3 * 1)  # the forward product and the weight's gradient
    assert first.seconds > 0 and first.threads == torch.get_num_threads()
    assert (second.full_steps, second.repeats) == (None, 1)
    cost = chapter_costs([first, second], {"gpu": GPUS["h100"]})
    assert cost["steps"] == 3 * 1000 + 3 and cost["runs"] == 4 and cost["uncarried"] == 1
    assert cost["flops"] == first.step.flops * 3000 + second.step.flops * 3


def test_without_the_ledger_fit_counts_nothing(monkeypatch, tmp_path):
    monkeypatch.delenv("EBMLIB_COST", raising=False)
    _train(3)
    assert list(tmp_path.iterdir()) == []


def test_runs_timed_against_a_budget_count_and_record_nothing(monkeypatch, tmp_path):
    """A step under the counter runs many times slower: inside a budget of seconds it would take training time
    from the run (chapter 6 at book scale overran its budgets with the ledger on)."""
    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv("EBMLIB_COST", str(ledger))
    with unrecorded():
        _train(3)
        assert [step for step in recorded_steps(3, "chains")] == [0, 1, 2]
    assert not ledger.exists()
    run = start_run(make_task("gray16", "ci", device="cpu", n_bits=4, hidden=8), "RM", 0)
    advance(run, 3)
    assert not ledger.exists()
    _train(3)  # outside the context, recorded again
    assert len(read_ledger(ledger)) == 1


def test_unrecorded_holds_in_its_own_thread_only(tmp_path, monkeypatch):
    monkeypatch.setenv("EBMLIB_COST", str(tmp_path / "ledger.jsonl"))
    seen = []
    with unrecorded():
        worker = threading.Thread(target=lambda: seen.append(ledger_path()))
        worker.start()
        worker.join()
        assert ledger_path() is None
    assert seen == [tmp_path / "ledger.jsonl"]


def test_the_cost_command_prints_a_row_per_chapter(tmp_path, capsys):
    record = RunRecord(desc="d", step=OperationCount(10**9, 500, 10**6), steps=5, timed_steps=4, seconds=0.5,
                       full_steps=100_000, repeats=2.0, members=1, threads=1)
    (tmp_path / "01_ratio_matching.jsonl").write_text(json.dumps(dataclasses.asdict(record)) + "\n")
    assert main(["cost", "--ledgers", str(tmp_path), "--check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| 1 | 200,000 (2) | 200 |" in out and "| 01_ratio_matching | 1 |" in out


def test_the_cpu_check_calibrates_once_per_thread_count_and_predicts_each_run_with_its_own():
    def record(threads, seconds):
        return RunRecord(desc="d", step=OperationCount(10**9, 0, 0), steps=3, timed_steps=2, seconds=seconds,
                         full_steps=None, repeats=1.0, members=1, threads=threads)

    calls = []

    def calibrate(threads):
        calls.append(threads)
        return DeviceModel("cpu", 1e9 * threads, 1e-6, bytes_per_second=1e9, overlap=False)

    checks = check_on_this_cpu({"a": [record(1, 4.0), record(2, 1.0)], "b": [record(2, 2.0)]}, calibrate)
    assert calls == [1, 2]
    assert checks["a"] == pytest.approx((2.0 + 1.0, 5.0)) and checks["b"] == pytest.approx((1.0, 2.0))
    with pytest.raises(ValueError, match="calibrate"):
        check_on_this_cpu({}, calibrate=None)


def test_bad_cost_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="folder"):
        read_ledgers(tmp_path / "missing")
    with pytest.raises(ValueError, match="colab"):
        format_cost_table({}, GPUS, colab="v100")
    with pytest.raises(ValueError, match="bytes_per_second"):
        DeviceModel("x", flops_per_second=1.0, launch_seconds=1.0, bytes_per_second=0.0)


def test_study_budgets_carry_their_full_lengths_in_the_smoke_run(monkeypatch):
    assert study_budgets(300, (0.25, 0.5, 1, 2)) == [75, 150, 300, 600]
    assert study_budgets(3, (0.1, 0.2)) == [1]  # at least one iteration, repeats dropped
    monkeypatch.setenv("EBMLIB_SMOKE", "1")
    n_iters = smoke_cap({"n_iters": 23_400}, {"n_iters": 5})["n_iters"]
    budgets = study_budgets(n_iters, (0.25, 0.5, 1, 2))
    assert budgets == [1, 2, 5, 10] and [b.full for b in budgets] == [5850, 11_700, 23_400, 46_800]


def test_a_sampling_loop_records_its_steps_at_full_and_inside_training_only_the_step_counts(monkeypatch, tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    monkeypatch.setenv("EBMLIB_COST", str(ledger))
    monkeypatch.setenv("EBMLIB_SMOKE", "1")
    settings = smoke_cap({"n_steps": 500, "n_iters": 100, "draws": 10}, {"n_steps": 3, "n_iters": 4, "draws": 2})
    energy = nn.Linear(3, 1)
    x = torch.randn(16, 3)

    def chains(n_steps):
        return langevin(lambda z: energy(z).squeeze(-1), x, n_steps=n_steps, step_size=0.01)

    for _ in repetitions(settings["draws"]):
        chains(settings["n_steps"])
    fit(energy, lambda m, z: m(chains(2)).mean(), tensor_batches(x, 8), n_iters=settings["n_iters"], progress=False,
        desc="short-run training", callback=lambda it, m: chains(settings["n_steps"]) if it == 4 else None)
    records = read_ledger(ledger)
    kinds = [(r.kind, r.desc) for r in records]
    assert kinds == [("evaluation", "langevin")] * 3 + [("training", "short-run training")]
    first = records[0]
    assert (first.steps, first.timed_steps, first.full_steps, first.repeats) == (3, 2, 500, 5.0)
    assert records[2].repeats == 1  # the callback's chains, outside the loop over the draws
    # one Langevin step: the energy's forward and its input gradient, two products of 16 x 3 by 3 x 1
    assert first.step.flops == 2 * (2 * 16 * 3)
    assert records[3].step.flops > first.step.flops  # the training step counts its chains (2 steps) inside it
    cost = chapter_costs(records, {"gpu": GPUS["h100"]})
    assert cost["runs"] == 1 and cost["steps"] == 100
    assert cost["flops"] == first.step.flops * 500 * (5 + 5 + 1) + records[3].step.flops * 100
    assert 0 < cost["evaluation_seconds"]["gpu"] < cost["seconds"]["gpu"]


def test_without_the_ledger_loops_and_repetitions_are_plain_ranges(monkeypatch):
    monkeypatch.delenv("EBMLIB_COST", raising=False)
    assert list(recorded_steps(3, "chains")) == [0, 1, 2] and list(repetitions(2)) == [0, 1]
    with recorded_loop():
        assert list(recorded_steps(2, "chains")) == [0, 1]


def test_bench_runs_flush_denormals_on_one_thread_only():
    tiny = torch.tensor([1e-40], dtype=torch.float32)  # a float32 denormal
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with flushed_denormals():
            assert (tiny * 1.0).item() == 0.0
        assert (tiny * 1.0).item() > 0.0
        torch.set_num_threads(2)
        with flushed_denormals():
            assert (tiny * 1.0).item() > 0.0
    finally:
        torch.set_num_threads(threads)
