"""The modern CNNs of D2L chapter 8: shapes and parameter counts against the book and hand
counts, every model learns, batch-norm state through the loops, resume and sweeps, and the
layer summary."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from dlrun.core.config import load_config
from dlrun.core.data.spec import BatchSpec
from dlrun.core.nn.models import build_model
from dlrun.core.nn.params import count, weight_mask
from dlrun.core.report.progress import make_reporter
from dlrun.core.training.setup import build_setup, network_summary, start_state, train_arrays
from dlrun.core.training.state import take
from dlrun.core.training.train import train
from dlrun.core.training.vectorised import train_group

from .conftest import CONFIGS

METRICS = ["train/loss", "train/acc", "val/loss", "val/acc"]

# (config, input side, the parameter count the book's reference sheet gives)
BOOK_MODELS = [
    ("bn_lenet.yaml", 28, 44_878),
    ("alexnet.yaml", 224, 46_764_746),
    ("vgg.yaml", 224, 43_093_322),
    ("nin.yaml", 224, 1_992_166),
    ("googlenet.yaml", 96, 5_977_530),
    ("resnet.yaml", 96, 11_178_378),
    ("densenet.yaml", 96, 758_226),
    ("resnet_devices.yaml", 28, 11_175_818),  # D2L 12.6: the 3x3 stem without max-pool
    ("resnet_devices2.yaml", 28, 11_175_818),
]
CPU_CONFIGS = ["bn_lenet.yaml", "alexnet_cpu.yaml", "vgg_cpu.yaml", "nin_cpu.yaml", "googlenet_cpu.yaml", "resnet_cpu.yaml",
               "densenet_cpu.yaml", "vit_cpu.yaml"]


def conv(k, c_in, c_out, bias=True):
    return k * k * c_in * c_out + (c_out if bias else 0)


def dense(n_in, n_out):
    return n_in * n_out + n_out


def resnet18_by_hand(classes=10):
    """ResNet-18 counted layer by layer: stem conv + BN, then per block two 3x3 convs with BN
    and, where the stage changes, a 1x1 projection (with bias, without BN)."""
    total = conv(7, 1, 64) + 2 * 64
    c_in = 64
    for c, blocks in ((64, 2), (128, 2), (256, 2), (512, 2)):
        for b in range(blocks):
            total += conv(3, c_in, c) + 2 * c + conv(3, c, c) + 2 * c
            if c != c_in:
                total += conv(1, c_in, c)
            c_in = c
    return total + dense(512, classes)


def shapes(cfg, side):
    model = build_model(cfg.model, BatchSpec((side, side, 1), 10))
    params, state = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    x = jax.ShapeDtypeStruct((2, side, side, 1), jnp.float32)
    out = jax.eval_shape(lambda p, s, x: model.apply(p, s, x, train=False)[0], params, state, x)
    return params, state, out


@pytest.mark.parametrize("config, side, book_count", BOOK_MODELS)
def test_the_books_models_have_its_shapes_and_parameter_counts(config, side, book_count):
    cfg = load_config(CONFIGS / config)
    assert cfg.data.resize in (None, side) and (cfg.data.resize or 28) == side
    params, _, out = shapes(cfg, side)
    assert out.shape == (2, 10)
    assert count(params) == book_count


def test_resnet18_count_by_hand_and_in_the_summary(fake_fmnist_dir):
    cfg = load_config(CONFIGS / "resnet.yaml", [f"data.dir={fake_fmnist_dir}"])
    from dlrun.core.data import load_dataset

    rows, in_shape = network_summary(cfg, load_dataset(cfg.data, cfg.seed))
    assert in_shape == (96, 96, 1)
    assert sum(r.params for r in rows) == resnet18_by_hand() == 11_178_378
    # the rows follow the network: stem conv halves 96 to 48, max-pool to 24, stages to 12, 6, 3
    by_path = {r.path: r for r in rows}
    assert by_path["conv0"].out_shape == (48, 48, 64) and by_path["max_pool0"].out_shape == (24, 24, 64)
    assert by_path["dense0"].out_shape == (10,) and by_path["dense0"].params == dense(512, 10)
    # XLA's FLOPs for the stem convolution: 2 * (48*48 positions) * (7*7*1 taps) * 64 channels
    assert by_path["conv0"].flops == pytest.approx(2 * 48 * 48 * 49 * 64, rel=0.05)
    top = network_summary(cfg, load_dataset(cfg.data, cfg.seed), max_depth=1)[0]
    assert [r.path for r in top][:4] == ["conv0", "bn0", "relu0", "max_pool0"]
    assert sum(r.params for r in top) == 11_178_378


def test_spatial_sizes_match_the_book():
    """D2L 8.4 and 8.6: GoogLeNet's and ResNet's stage outputs at 96x96."""
    cfg = load_config(CONFIGS / "googlenet.yaml")
    from dlrun.core.nn.cnn import googlenet
    from dlrun.core.nn.summary import summarize

    rows = summarize(googlenet(cfg.model, 10), (96, 96, 1), max_depth=1)
    pools = [r.out_shape for r in rows if r.kind == "max_pool"]
    assert [s[0] for s in pools] == [24, 12, 6, 3]
    assert [r.out_shape for r in rows if r.kind == "inception"][-1] == (3, 3, 1024)


@pytest.mark.parametrize("config", CPU_CONFIGS)
def test_every_model_lowers_the_loss_in_a_few_steps(config, fake_fmnist_dir):
    # XLA's own convolution compiles several times faster than the CPU formulation, which
    # test_conv.py checks against it; what is tested here is each architecture
    xla = [] if config == "vit_cpu.yaml" else ["model.conv_impl=xla"]
    cfg = load_config(CONFIGS / config, [f"data.dir={fake_fmnist_dir}", "data.batch_size=32", "optimizer.lr=0.05", *xla])
    from dlrun.core.data import load_dataset

    data = load_dataset(cfg.data, cfg.seed)
    setup = build_setup(cfg, data)
    state, keys = start_state(setup, jax.random.PRNGKey(0))
    batch = take(train_arrays(data), jnp.arange(32))
    step = jax.jit(setup.train_step)
    losses = []
    for i in range(6):
        state, metrics = step(state, batch, jax.random.PRNGKey(i))
        losses.append(float(metrics["loss"]))
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses


def test_weight_decay_reaches_weights_only():
    """BN scales and shifts and the biases are not decayed (they are not weights)."""
    cfg = load_config(CONFIGS / "bn_lenet.yaml")
    params, _ = jax.eval_shape(build_model(cfg.model, BatchSpec((28, 28, 1), 10)).init, jax.random.PRNGKey(0))
    mask = {jax.tree_util.keystr(p): m for p, m in jax.tree_util.tree_leaves_with_path(weight_mask(params))}
    decayed = sorted(k for k, m in mask.items() if m)
    assert decayed == sorted(k for k in mask if k.endswith("['w']"))
    assert len(decayed) == 5 and not any(m for k, m in mask.items() if "gamma" in k or "beta" in k or k.endswith("['b']"))


def bn_cfg(fake_dir, *overrides):
    return load_config(CONFIGS / "bn_lenet.yaml", [f"data.dir={fake_dir}", "data.batch_size=32", "trainer.epochs=3",
                                                   "trainer.progress=none", "optimizer.lr=0.3", *overrides])


def run_metrics(cfg, run_dir, **kw) -> pd.DataFrame:
    train(cfg, run_dir, reporter=make_reporter("none", 0, ""), **kw)
    return pd.read_csv(run_dir / "metrics.csv")


BN_KINDS = pytest.mark.parametrize("bn", ["scratch", "fused"])  # autodiff's gradient, and the written-out one


@BN_KINDS
def test_bn_scan_and_step_loops_agree_and_running_statistics_move(fake_fmnist_dir, tmp_path, bn):
    scan = run_metrics(bn_cfg(fake_fmnist_dir, "trainer.loop=scan", f"model.batch_norm={bn}"), tmp_path / "scan")
    step = run_metrics(bn_cfg(fake_fmnist_dir, "trainer.loop=step", f"model.batch_norm={bn}"), tmp_path / "step")
    np.testing.assert_allclose(scan[METRICS].to_numpy(), step[METRICS].to_numpy(), rtol=1e-4, atol=1e-5)
    assert scan["val/acc"].iloc[-1] > 0.5


def test_bn_running_statistics_are_used_in_evaluation(fake_fmnist_dir, tmp_path):
    cfg = bn_cfg(fake_fmnist_dir, "trainer.epochs=1")
    result = train(cfg, tmp_path / "r", reporter=make_reporter("none", 0, ""))
    stats = result.state.model_state
    assert not np.allclose(stats["bn0"]["mean"], 0.0) and not np.allclose(stats["bn0"]["var"], 1.0)


@BN_KINDS
def test_bn_stop_and_resume_equals_one_go(fake_fmnist_dir, tmp_path, bn):
    """The running statistics are checkpointed: stopping after epoch 1 and resuming gives the
    uninterrupted run's metrics, bit for bit."""
    cfg = bn_cfg(fake_fmnist_dir, f"model.batch_norm={bn}")
    straight = run_metrics(cfg, tmp_path / "straight")
    run_metrics(cfg, tmp_path / "resumed", stop_epoch=1)
    resumed = run_metrics(cfg, tmp_path / "resumed", resume=True)
    pd.testing.assert_frame_equal(straight[METRICS], resumed[METRICS])


@BN_KINDS
@pytest.mark.parametrize("mode", ["vmap", "serial"])
def test_a_sweep_over_the_lr_of_a_bn_model_gives_each_trial_its_metrics_alone(fake_fmnist_dir, tmp_path, mode, bn):
    cfgs = [bn_cfg(fake_fmnist_dir, "trainer.epochs=2", f"optimizer.lr={lr}", f"model.batch_norm={bn}") for lr in (0.1, 0.5)]
    outcomes = train_group(cfgs, [tmp_path / f"g{i}" for i in range(2)], mode=mode)
    assert [o.status for o in outcomes] == ["done", "done"]
    finals = []
    for i, cfg in enumerate(cfgs):
        grouped = pd.read_csv(tmp_path / f"g{i}" / "metrics.csv")
        alone = run_metrics(cfg, tmp_path / f"a{i}")
        np.testing.assert_allclose(grouped[METRICS].to_numpy(), alone[METRICS].to_numpy(), rtol=2e-4, atol=2e-5)
        finals.append(grouped["train/loss"].iloc[-1])
    assert finals[0] != finals[1]


def test_augmented_resized_training_is_deterministic_and_evaluation_is_not_augmented(fake_fmnist_dir, tmp_path):
    extra = ["data.resize=32", "data.augment.flip=true", "data.augment.crop_padding=2", "data.augment.brightness=0.3",
             "trainer.epochs=2"]
    a = run_metrics(bn_cfg(fake_fmnist_dir, *extra), tmp_path / "a")
    b = run_metrics(bn_cfg(fake_fmnist_dir, *extra), tmp_path / "b")
    pd.testing.assert_frame_equal(a[METRICS], b[METRICS])
    plain = run_metrics(bn_cfg(fake_fmnist_dir, "data.resize=32", "trainer.epochs=2"), tmp_path / "plain")
    assert not np.allclose(a["train/loss"], plain["train/loss"])  # augmentation changed training


def test_summary_command_prints_rows_and_totals(fake_fmnist_dir):
    from typer.testing import CliRunner

    from dlrun.cli.main import app

    result = CliRunner().invoke(app, ["summary", str(CONFIGS / "bn_lenet.yaml"), "--set", f"data.dir={fake_fmnist_dir}"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[2].split()[:2] == ["input", "28x28x1"]
    rows = {line.split()[0]: line.split() for line in lines[3:] if line and not line.startswith("-")}
    assert rows["conv0"][1] == "24x24x6" and rows["conv0"][2] == f"{conv(5, 1, 6):,}"
    assert rows["flatten0"][1] == "256" and rows["total"][1] == "44,878"
    bad = CliRunner().invoke(app, ["summary", str(CONFIGS / "bn_lenet.yaml"), "--set", "model.padding=-1"])
    assert bad.exit_code == 2 and "model.padding" in bad.output
