"""The benchmark scripts run at a tiny size, so that they cannot rot (their figures are not checked)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from .conftest import ROOT


def benchmark_module(name: str):
    """A module of benchmarks/ (which is not a package), imported by name."""
    import importlib

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


@pytest.mark.slow
def test_sweep_benchmark_runs_and_writes_its_figures(tmp_path, fake_fmnist_dir):
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/sweep.py"), "--models", "softmax", "--epochs", "1", "--small",
         "--data-dir", str(fake_fmnist_dir), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trials/s" in proc.stdout and "ratio" in proc.stdout
    (result,) = out.glob("sweep-*.json")
    figures = json.loads(result.read_text())["models"]["softmax"]
    assert figures["trials"] == 4 and figures["ratio"] > 0 and figures["vectorised_trials_per_s"] > 0


@pytest.mark.slow
def test_speed_benchmark_runs_and_writes_its_table(tmp_path, fake_fmnist_dir):
    """Every model through every path at a tiny size; PyTorch's row exactly when torch imports."""
    import importlib.util

    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/speed.py"), "--models", "lenet", "--epochs", "1", "--rounds", "1",
         "--num-train", "512", "--num-val", "256", "--data-dir", str(fake_fmnist_dir), "--out", str(out),
         "--startup-runs", "2"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = out.glob("*.json")
    figures = json.loads(result.read_text())
    has_torch = importlib.util.find_spec("torch") is not None
    expected = {"step", "scan", "torch"} if has_torch else {"step", "scan"}
    for model in ("lenet",):
        rows = figures["models"][model]
        assert set(rows) == expected
        for impl in ("step", "scan"):
            assert rows[impl]["seconds_per_epoch"] > 0 and rows[impl]["gflop_per_epoch"] > 0
            assert 0 < rows[impl]["fraction_of_peak"] < 1.5 and rows[impl]["peak_rss_mb"] > 0
            assert ("speedup_vs_torch" in rows[impl]) == has_torch
    assert figures["matmul_peak_gflops"] > 0 and figures["cli"]["help_seconds"] > 0
    cli = figures["cli"]  # the first run compiles; the second finds the compilation cache filled
    assert cli["second_runs"] >= 1 and cli["second_wall_seconds"] > 0
    assert cli["second_compile_seconds"] < cli["train_compile_seconds"]
    assert figures["versions"]["jax"] and ("torch" in figures["versions"]) == has_torch
    assert "PyTorch reference missing" in proc.stdout or has_torch
    markdown = result.with_suffix(".md").read_text()
    assert "| lenet | dlrun whole-epoch (scan) |" in markdown and "| target | measured | met |" in markdown
    assert "| second run (median of 1) |" in markdown


def test_every_model_of_the_speed_table_has_its_config_and_a_pytorch_reference(monkeypatch):
    """benchmarks/speed_models.py: each model's config loads with the benchmark's overrides and
    names the kind of data its kind says, and its PyTorch reference is a function of (cfg, data,
    epochs), imported, not run (each reference's own tests train it against dlrun's network)."""
    import inspect
    from types import SimpleNamespace

    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    table = benchmark_module("speed_models")
    args = SimpleNamespace(set=[], num_sentences=100, bert_steps=2, data_dir=None, num_train=2048, num_val=256)
    data_of_kind = {"image": {"fashion_mnist"}, "sequence": {"time_machine", "fra_eng"}, "task": {"imdb", "snli", "snli_bert"}}
    for model, entry in table.MODELS.items():
        assert (ROOT / "configs" / entry.config).exists(), model
        if model != "bert_nli":  # its config is its experiment's classifier run: test_nlp_tasks_reference.py
            cfg = table.load_cfg(model, args)
            assert cfg.trainer.progress == "none", model
            assert cfg.data.name in data_of_kind.get(entry.kind, {cfg.data.name}), (model, cfg.data.name)
            if entry.kind == "image":
                assert (cfg.data.num_train, cfg.data.num_val) == (2048, 256), model
        run = table.torch_runner(model)
        assert list(inspect.signature(run).parameters) == ["cfg", "data", "epochs"], model
    assert set(table.MODELS) >= {"style_transfer", "birnn", "textcnn", "decomposable", "bert_nli", "neumf", "caser",
                                 "fm", "deepfm", "dcgan"}


def test_lenet_flops_from_xla_match_a_hand_count():
    """The benchmark's FLOP figures come from XLA's cost analysis; check them against the sum of
    the multiply-adds that LeNet's layers need, forward (x1) and backward (x2, no input gradient
    for the first layer)."""
    import jax
    import jax.numpy as jnp

    from dlrun.core.config import load_config
    from dlrun.core.data.spec import BatchSpec
    from dlrun.core.nn.losses import LOSSES
    from dlrun.core.nn.models import build_model
    from dlrun.core.training.optimizers import build_optimizer
    from dlrun.core.training.state import Arrays, init_state
    from dlrun.core.training.steps import make_train_step

    from .conftest import CONFIGS

    cfg = load_config(CONFIGS / "lenet.yaml", ["model.conv_impl=xla"])
    model = build_model(cfg.model, BatchSpec((28, 28, 1), 10))
    opt = build_optimizer(cfg.optimizer, 10, 1)
    state = init_state(model, opt, jax.random.PRNGKey(0))
    step = make_train_step(model, LOSSES["cross_entropy"], opt)
    b = 64
    x, y = jnp.zeros((b, 28, 28, 1)), jnp.zeros((b,), jnp.int32)
    cost = jax.jit(step).lower(state, Arrays(x, y), jax.random.PRNGKey(1)).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    macs = {"conv1": 28 * 28 * 25 * 6, "conv2": 10 * 10 * 150 * 16, "dense": 400 * 120 + 120 * 84 + 84 * 10}
    by_hand = 2 * b * (3 * macs["conv1"] - macs["conv1"] + 3 * macs["conv2"] + 3 * macs["dense"])
    assert 0.9 * by_hand < cost["flops"] < 1.3 * by_hand  # plus elementwise work and the update


@pytest.mark.parametrize("model, config", [("bn_lenet", "bn_lenet.yaml"), ("resnet_cpu", "resnet_cpu.yaml"),
                                           ("vit_cpu", "vit_cpu.yaml")])
def test_the_pytorch_references_are_the_same_networks(model, config):
    """The benchmark compares like with like: the PyTorch model has dlrun's parameter count and
    output shape (PyTorch's BN running statistics are buffers, not parameters, as in dlrun)."""
    torch = pytest.importorskip("torch")
    import jax

    from dlrun.core.config import load_config
    from dlrun.core.data.spec import BatchSpec
    from dlrun.core.nn.models import build_model
    from dlrun.core.nn.params import count

    from .conftest import CONFIGS

    torch_reference = benchmark_module("torch_reference")
    net = torch_reference.build(model)
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    cfg = load_config(CONFIGS / config)
    params, _ = jax.eval_shape(build_model(cfg.model, BatchSpec((28, 28, 1), 10)).init, jax.random.PRNGKey(0))
    assert sum(p.numel() for p in net.parameters()) == count(params)


def test_the_pytorch_transformer_is_the_same_network():
    torch = pytest.importorskip("torch")
    import jax

    from dlrun.core.config import load_config
    from dlrun.core.nn.models import ENCODER_DECODERS
    from dlrun.core.nn.params import count

    from .conftest import CONFIGS

    torch_reference = benchmark_module("torch_reference")
    m = load_config(CONFIGS / "transformer.yaml").model
    net = torch_reference.Transformer(50, 70, m.hidden, m.ffn_hidden, m.heads, m.blocks, m.dropout)
    src, dec = torch.zeros(2, 9, dtype=torch.long), torch.zeros(2, 9, dtype=torch.long)
    assert net(src, torch.tensor([3, 9]), dec).shape == (2, 9, 70)
    params = jax.eval_shape(ENCODER_DECODERS["transformer"](m, 50, 70, 9).init, jax.random.PRNGKey(0))
    assert sum(p.numel() for p in net.parameters()) == count(params) == 256 * 50 + 513 * 70 + 1_710_336


@pytest.mark.slow
def test_speed_benchmark_times_a_language_model_in_tokens(tmp_path, d2l_data_dir):
    import importlib.util
    import os

    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/speed.py"), "--models", "gru_lm", "--epochs", "1", "--rounds", "1",
         "--num-train", "1024", "--num-val", "128", "--no-cli", "--min-short-epochs", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "DLRUN_DATA_DIR": str(d2l_data_dir)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = out.glob("*.json")
    figures = json.loads(result.read_text())["models"]
    has_torch = importlib.util.find_spec("torch") is not None
    for model in ("gru_lm",):
        for impl, row in figures[model].items():
            assert row["tokens_per_second"] > 0 and len(row["epoch_seconds"][0]) == 2, (model, impl)
        assert ("torch" in figures[model]) == has_torch
    assert "tokens |" in result.with_suffix(".md").read_text()


def test_devices_benchmark_runs_on_virtual_devices(tmp_path, fake_fmnist_dir):
    """benchmarks/devices.py at a tiny size: 1 and 2 (virtual CPU) devices, the batch per device fixed."""
    out = tmp_path / "devices.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/devices.py"), "--config", "mlp.yaml", "--devices", "1,2",
         "--per-device-batch", "32", "--epochs", "1", "--rounds", "1", "--num-train", "256",
         "--set", f"data.dir={fake_fmnist_dir}", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    assert [r[0]["batch"] for r in runs.values()] == [32, 64]
    assert all(r[0]["examples_per_second"] > 0 for r in runs.values())
    assert "speed-up" in proc.stdout


def test_the_books_pytorch_bahdanau_is_the_same_network():
    """benchmarks/translation_reference.py's BookBahdanau has dlrun's parameters, but for the
    second bias vector PyTorch's GRUs keep per gate (3 x hidden per layer, in encoder and decoder)."""
    torch = pytest.importorskip("torch")
    import jax

    from dlrun.core.config import load_config
    from dlrun.core.nn.models import ENCODER_DECODERS
    from dlrun.core.nn.params import count

    from .conftest import CONFIGS

    tr = benchmark_module("translation_reference")
    m = load_config(CONFIGS / "bahdanau.yaml").model
    net = tr.BookBahdanau(50, 70, m.embed, m.hidden, m.layers, m.dropout)
    src, dec = torch.zeros(2, 9, dtype=torch.long), torch.zeros(2, 9, dtype=torch.long)
    assert net(src, torch.tensor([3, 9]), dec).shape == (2, 9, 70)
    params = jax.eval_shape(ENCODER_DECODERS["bahdanau"](m, 50, 70, 9).init, jax.random.PRNGKey(0))
    second_biases = 2 * m.layers * 3 * m.hidden
    n_torch = sum(p.numel() for p in net.parameters())
    assert n_torch == 256 * 50 + 513 * 70 + 1_906_944  # the book's formula (D2L 11.4)
    assert n_torch - second_biases == count(params)
    # the attention masks every key at or beyond a row's valid length
    weights = tr.masked_softmax(torch.zeros(2, 1, 4), torch.tensor([1, 3]))
    np.testing.assert_allclose(weights.numpy(), [[[1, 0, 0, 0]], [[1 / 3, 1 / 3, 1 / 3, 0]]], rtol=1e-6)


@pytest.mark.slow
def test_translation_reference_trains_both_and_writes_its_table(tmp_path, d2l_data_dir):
    import os

    pytest.importorskip("torch")
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/translation_reference.py"), "--configs", "bahdanau", "--epochs", "2",
         "--out", str(out)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "DLRUN_DATA_DIR": str(d2l_data_dir)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = out.glob("translation-*.json")
    (r,) = json.loads(result.read_text())["results"]
    for impl in ("dlrun", "book_pytorch"):
        (rows,) = r["runs"][impl]
        assert len(rows) == 2 and rows[1]["train"] < rows[0]["train"], impl  # both learn
        assert 0 < rows[-1]["val"] < 10
    assert "| bahdanau | the book's PyTorch code |" in result.with_suffix(".md").read_text()
