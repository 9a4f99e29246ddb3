"""benchmarks/gpu_check.py: its smoke run (the GPU check's own code at tiny sizes, on a CPU), the
compile counter it trusts, its time budget, and the PyTorch networks it compares dlrun with."""

import importlib.util
import json
import subprocess
import sys

import pytest

from .conftest import CONFIGS, ROOT
from .test_benchmarks import benchmark_module

BOOK_SIZED = ["alexnet", "vgg", "nin", "googlenet", "resnet", "densenet", "vit", "transformer", "dcgan", "gan_gaussian",
              "mf_lowrank", "autorec_lowrank", "neumf_lowrank", "caser_lowrank", "fm_generated", "deepfm_generated",
              "banana_ssd", "fcn_voc"]
CI_CONFIGS = ["resnet", "gan_gaussian", "mf_lowrank", "banana_ssd"]  # one of each kind, for CI


@pytest.mark.slow
def test_the_smoke_run_trains_its_configs_and_writes_its_report(tmp_path):
    """The same code path as the GPU check, at tiny sizes on a CPU, over one config of each kind
    (a CNN, a GAN, a recommender) and the ResNet comparison: the whole smoke run, every config,
    takes about 90 s (`python benchmarks/gpu_check.py --smoke`)."""
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--smoke", "--out", str(out),
                           "--configs", ",".join(CI_CONFIGS), "--compare", "resnet"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["passed"] and report["finished"] and report["smoke"] and report["versions"]["jax"]
    assert list(report["configs"]) == CI_CONFIGS
    for name, row in report["configs"].items():
        assert row["status"] == "ok", (name, row["error"])
        assert row["loss_fell"] and row["recompiles"] == 0 and row["finite"], name
        assert row["compile_seconds"] > 0 and row["examples_per_second"] > 0 and row["program_peak_mb"] > 0
        assert row["device_peak_mb"] is None  # a CPU reports no memory_stats
    assert report["configs"]["gan_gaussian"]["loss_metric"] == "loss_D"
    has_torch = importlib.util.find_spec("torch") is not None
    assert list(report["comparisons"]) == ["resnet f32", "resnet bf16"]
    for name, row in report["comparisons"].items():
        assert row["status"] == ("ok" if has_torch else "skipped (no PyTorch)"), (name, row["error"])
        assert row["dlrun"]["examples_per_second"] > 0 and row["dlrun"]["recompiles"] == 0
        if has_torch:
            assert row["torch"]["examples_per_second"] > 0 and row["dlrun_over_torch"] > 0
            assert row["torch"]["params"] == row["dlrun"]["params"], name  # the same network on both sides
    assert report["comparisons"]["resnet f32"]["dlrun"] == report["configs"]["resnet"]  # float32: the config check's run
    markdown = (out / "gpu_check.md").read_text()
    assert "**PASSED**" in markdown and "| resnet | ok |" in markdown and "| resnet bf16 |" in markdown


def test_the_compile_counter_sees_a_recompile():
    import jax
    import jax.numpy as jnp

    gpu_check = benchmark_module("gpu_check")
    f = jax.jit(lambda x: 2 * x)
    three, other_three, four = jnp.ones(3), jnp.zeros(3), jnp.ones(4)  # making them compiles too
    f(three)
    with gpu_check.CompileCounter() as same:
        f(three)
        f(other_three)
    with gpu_check.CompileCounter() as changed:
        f(four)  # a new shape: traced and compiled again
        f(four)
    assert same.count == 0 and changed.count == 1


def test_timed_steps_report_a_step_that_changes_its_state_type(fake_fmnist_dir):
    """A step whose output state differs in type from its input compiles again on the next call;
    the timed steps count it and the verdict fails the config."""
    import jax.numpy as jnp

    from dlrun.core.config import load_config
    from dlrun.core.data import load_dataset
    from dlrun.core.training.setup import build_setup

    gpu_check = benchmark_module("gpu_check")
    cfg = load_config(CONFIGS / "softmax.yaml", [f"data.dir={fake_fmnist_dir}", "data.batch_size=32", "optimizer.lr=0.5"])
    data = load_dataset(cfg.data, cfg.seed)
    setup = build_setup(cfg, data)
    steady = gpu_check.verdict(gpu_check.timed_steps(setup, data, steps=10, warmup=1))
    assert steady["recompiles"] == 0 and steady["loss_fell"] and steady["status"] == "ok"
    assert steady["params"] == 784 * 10 + 10 and steady["batch_size"] == 32 and len(steady["losses"]) == 10

    def drifting(state, batch, key):
        state, metrics = setup.train_step(state, batch, key)
        return state._replace(step=state.step.astype(jnp.uint32)), metrics  # int32 in, uint32 out

    row = gpu_check.verdict(gpu_check.timed_steps(setup._replace(train_step=drifting), data, steps=4, warmup=1))
    assert row["recompiles"] == 1 and row["status"] == "FAIL" and "1 compilations" in row["error"]


def test_the_budget_skips_what_it_does_not_reach_and_a_failure_does_not_stop_the_rest():
    gpu_check = benchmark_module("gpu_check")
    clock = iter([1.0, 4.0, 9.0, 12.0]).__next__  # the time before each job, from a start at 0

    def broken():
        raise ValueError("no such layer")

    jobs = [("a", lambda: {"status": "ok", "error": None}), ("b", broken), ("c", lambda: {"status": "ok", "error": None}),
            ("d", lambda: pytest.fail("started after the budget"))]
    rows, seen = {}, []
    gpu_check.run_within(10.0, 0.0, jobs, rows, after=lambda: seen.append(len(rows)), clock=clock)
    assert [r["status"] for r in rows.values()] == ["ok", "error", "ok", "skipped (budget)"]
    assert seen == [1, 2, 3, 4]  # the report is saved after every row
    assert rows["b"]["error"] == "ValueError: no such layer" and "broken" in rows["b"]["traceback"]


@pytest.mark.parametrize("losses, fell", [([3.0, 2.0, 1.0], True), ([2.3, 2.3, 2.3], False), ([1.0, 2.0, 3.0], False),
                                          ([2.0, 2.6, 2.5, 2.4, 2.2, 2.1, 2.2, 2.0, 1.9, 1.9], True)])
def test_the_loss_falls_when_its_last_fifth_is_below_its_first(losses, fell):
    assert benchmark_module("gpu_check").loss_fell(losses) is fell


def test_the_pytorch_resnet18_is_dlruns():
    torch = pytest.importorskip("torch")
    from dlrun.core.config import load_config

    model = load_config(CONFIGS / "resnet.yaml").model
    net = benchmark_module("gpu_torch").resnet(model)
    assert net(torch.zeros(2, 1, 96, 96)).shape == (2, 10)
    assert sum(p.numel() for p in net.parameters()) == 11_178_378  # tests/test_cnn.py's count for configs/resnet.yaml


def test_the_device_transformer_is_the_reference_with_its_masks_on_the_device():
    torch = pytest.importorskip("torch")
    gpu_torch = benchmark_module("gpu_torch")
    torch_reference = benchmark_module("torch_reference")
    torch.manual_seed(0)
    reference = torch_reference.Transformer(30, 40, 32, 64, 4, 2, 0.0).eval()
    ours = gpu_torch.DeviceTransformer(30, 40, 32, 64, 4, 2, 0.0).eval()
    ours.load_state_dict(reference.state_dict())
    src, dec = torch.randint(0, 30, (3, 9)), torch.randint(0, 40, (3, 9))
    src_len, y = torch.tensor([2, 9, 5]), torch.cat([torch.randint(0, 40, (3, 9)), torch.tensor([[4], [9], [1]])], 1)
    logits = reference(src, src_len, dec)
    assert torch.allclose(ours(src, src_len, dec), logits, atol=1e-6)
    total, count = torch_reference.masked_loss_sum(logits, y)
    assert torch.allclose(gpu_torch.masked_mean(logits, y), total / count)


def test_the_check_covers_every_book_sized_config():
    gpu_check = benchmark_module("gpu_check")
    assert list(gpu_check.CHECKS) == BOOK_SIZED and gpu_check.COMPARISONS == ("resnet", "transformer")
