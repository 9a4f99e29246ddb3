"""Neural style transfer's synthesis (D2L 13.12) for the speed benchmark: the book's PyTorch
`train` loop against dlrun's (experiments/style_transfer.py), with one feature network.

An epoch of the book's is one Adam step on the synthesised image: the features of the image at
the content and style layers (`extract_features`), the weighted content, style (Gram) and
total-variation losses (`compute_loss`), their gradient, `trainer.step()` and StepLR's
`scheduler.step()`. Here a timed epoch is `steps_per_epoch` of those, after one untimed warm-up
epoch. Both sides start from the same feature network, the one dlrun initialises from the
config's seed (`feature_net`; no feature training: its weights change the picture, not the
work), the config's two images at its size, and the image started from the content image.

The PyTorch side is the book's code with its network given as an argument instead of a global,
and the feature network's weights frozen (`requires_grad_(False)`), so that, like dlrun's, a
step differentiates with respect to the image only; the book leaves VGG-19's weights requiring
gradients, and `run_torch(..., weight_grads=True)` keeps that. Its ReLUs are in place, as
torchvision's are, which is why a tapped conv is read after its ReLU (`torchvision_vgg.extract`
reproduces that). torch is imported inside the PyTorch functions only, so that dlrun's timing
process (`run_dlrun`) never loads it (nor counts its memory).

Where two neighbouring pixels are equal (the flat runs of a resized photo), both sides
differentiate the total variation's |d| as 0 (dlrun's `tv_loss` writes it d * sign(d)).
tests/test_style_transfer_reference.py checks that both sides compute the same features, loss,
gradient and steps, from random images and from the config's own.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import numpy as np

# ------------------------------------------------------------------ what both sides start from


def options(cfg):
    """The experiment's options (`experiment.*` of configs/style_transfer.yaml), validated."""
    from dlrun.core.config import validate_options
    from dlrun.experiments.style_transfer import StyleTransferOptions

    return validate_options(StyleTransferOptions, cfg, "benchmark")


def channels(cfg) -> tuple:
    """The feature network as a torchvision `cfgs` list (conv channels, "M" a max-pool): VGG-19's
    when the config names its weights, else the conv blocks of the config's VGG."""
    from dlrun.core.nn import torchvision_vgg as V

    return V.VGG19 if options(cfg).weights is not None else V.dlrun_vgg_channels(cfg.model.blocks)


def feature_net(cfg):
    """The feature network as the experiment builds it, with the weights dlrun initialises from
    `cfg.seed` (untrained): the conv blocks of the config's VGG (`model`), or VGG-19's layers,
    He-initialised, when the config names VGG-19's weights file (not read: only its shapes matter).

    Returns:
        `torchvision_vgg.Features`: layer kinds in torchvision's numbering, params by index.
    """
    import jax

    from dlrun.core.data.spec import BatchSpec
    from dlrun.core.nn import torchvision_vgg as V
    from dlrun.core.nn.models import build_model
    from dlrun.experiments import style_features as F

    opts, key = options(cfg), jax.random.PRNGKey(cfg.seed)
    if opts.weights is not None:
        return V.Features(V.layer_kinds(V.VGG19), run_once(lambda k: V.init_params(k, V.VGG19), key))
    F.check_model(cfg, "benchmark")
    classes = 2 * opts.grid**2  # the feature task's: which grid cell of which of the two images
    model = build_model(cfg.model, BatchSpec((opts.patch, opts.patch, 3), classes, classes))
    params, _ = run_once(model.init, key)
    return V.from_dlrun_vgg(params, cfg.model.blocks)


def run_once(fn, *args):
    """`fn(*args)` compiled, on a CPU without LLVM's optimisation: it runs once, untimed, and
    the random draws of an init take XLA's CPU compiler 12 s at its default level against 4
    without (the CPU config's VGG, 2 loaded cores), for the same values."""
    import jax

    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
    return jax.jit(fn).lower(*args).compile(options)(*args)


def images(cfg, features) -> tuple[np.ndarray, np.ndarray]:
    """The content and style images, (height, width, 3) float32, normalised as `features` expects
    (the book's `preprocess`), read and resized by the experiment's functions."""
    from dlrun.experiments import style_features as F

    opts, data_dir = options(cfg), getattr(cfg.data, "dir", None)
    out = []
    for name, key in ((opts.content, "experiment.content"), (opts.style, "experiment.style")):
        image = F.read_rgb(F.locate_image(name, data_dir, f"benchmark: {key}"), opts.height, opts.width)
        out.append(F.normalise(image, features.mean, features.std))
    return out[0], out[1]


def layers(cfg) -> tuple[list[int], list[int]]:
    """The content and style layers, torchvision's module indices."""
    opts = options(cfg)
    return list(opts.content_layers), list(opts.style_layers)


# ------------------------------------------------------------------ the book's PyTorch code (D2L 13.12)
# Its functions as printed, with tensor methods for `torch.square`, `torch.abs` and `torch.matmul`
# so that they need no module-level torch, and the network and weights as arguments.


def torch_features(channels: tuple, last: int):
    """torchvision's `vgg.features` for a `cfgs` list (3x3 convs with padding 1, each followed by
    an in-place ReLU; "M" a max-pool 2/2), truncated after module `last` as the book truncates
    VGG-19: `nn.Sequential(*[pretrained_net.features[i] for i in range(last + 1)])`."""
    from torch import nn

    modules, c_in = [], 3
    for c in channels:
        if c == "M":
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            modules += [nn.Conv2d(c_in, c, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c_in = c
    if not 0 <= last < len(modules):
        raise ValueError(f"layer {last} is past the network's {len(modules)} modules")
    return nn.Sequential(*modules[: last + 1])


def copy_params(net, params) -> None:
    """dlrun's feature params (module index -> {"w": HWIO, "b"}) into `net`'s convs (OIHW)."""
    import torch

    with torch.no_grad():
        for i, module in enumerate(net):
            if isinstance(module, torch.nn.Conv2d):
                w, b = np.asarray(params[str(i)]["w"]), np.array(params[str(i)]["b"])  # jax's arrays read only
                module.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1))))
                module.bias.copy_(torch.from_numpy(b))


def extract_features(net, X, content_layers, style_layers):
    contents = []
    styles = []
    for i in range(len(net)):
        X = net[i](X)
        if i in style_layers:
            styles.append(X)
        if i in content_layers:
            contents.append(X)
    return contents, styles


def content_loss(Y_hat, Y):
    return (Y_hat - Y.detach()).square().mean()


def gram(X):
    num_channels, n = X.shape[1], X.numel() // X.shape[1]
    X = X.reshape((num_channels, n))
    return (X @ X.T) / (num_channels * n)


def style_loss(Y_hat, gram_Y):
    return (gram(Y_hat) - gram_Y.detach()).square().mean()


def tv_loss(Y_hat):
    return 0.5 * ((Y_hat[:, :, 1:, :] - Y_hat[:, :, :-1, :]).abs().mean() +
                  (Y_hat[:, :, :, 1:] - Y_hat[:, :, :, :-1]).abs().mean())


def compute_loss(X, contents_Y_hat, styles_Y_hat, contents_Y, styles_Y_gram, weights):
    content_weight, style_weight, tv_weight = weights
    contents_l = [content_loss(Y_hat, Y) * content_weight for Y_hat, Y in zip(contents_Y_hat, contents_Y)]
    styles_l = [style_loss(Y_hat, Y) * style_weight for Y_hat, Y in zip(styles_Y_hat, styles_Y_gram)]
    tv_l = tv_loss(X) * tv_weight
    l = sum(styles_l + contents_l + [tv_l])  # noqa: E741 - the book's name
    return contents_l, styles_l, tv_l, l


def get_inits(X, lr, styles_Y):
    """The image to optimise, started from X, the style Gram matrices and Adam. The book's
    `SynthesizedImage` is a module holding one such parameter, copied from X."""
    import torch

    gen_img = X.detach().clone().requires_grad_(True)
    trainer = torch.optim.Adam([gen_img], lr=lr)
    styles_Y_gram = [gram(Y) for Y in styles_Y]
    return gen_img, styles_Y_gram, trainer


class TorchSynthesis(NamedTuple):
    """What the book's `train` loop reads: the network, the image being optimised, the targets,
    Adam and StepLR, the layers and the three loss weights."""

    net: Any
    X: Any
    contents_Y: list
    styles_Y_gram: list
    trainer: Any
    scheduler: Any
    content_layers: list
    style_layers: list
    weights: tuple[float, float, float]


def torch_synthesis(cfg, features, content: np.ndarray, style: np.ndarray, weight_grads: bool = False) -> TorchSynthesis:
    """The book's `get_contents`, `get_styles`, `get_inits` and StepLR on `features`' weights.

    Args:
        features: dlrun's feature network (`torchvision_vgg.Features`), copied into torch's.
        content, style: (H, W, 3) normalised images (`images`).
        weight_grads: leave the network's weights requiring gradients, as the book does.
    """
    import torch

    opts = options(cfg)
    content_layers, style_layers = layers(cfg)
    net = torch_features(channels(cfg), max(content_layers + style_layers))
    copy_params(net, features.params)
    net.requires_grad_(weight_grads)
    content_X, style_X = (torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)[None])) for a in (content, style))
    contents_Y, _ = extract_features(net, content_X, content_layers, style_layers)
    _, styles_Y = extract_features(net, style_X, content_layers, style_layers)
    X, styles_Y_gram, trainer = get_inits(content_X, opts.lr, styles_Y)
    scheduler = torch.optim.lr_scheduler.StepLR(trainer, opts.lr_period, opts.lr_decay)
    return TorchSynthesis(net, X, contents_Y, styles_Y_gram, trainer, scheduler, content_layers, style_layers,
                          (opts.content_weight, opts.style_weight, opts.tv_weight))


def torch_epochs(s: TorchSynthesis, epochs: int) -> float:
    """`epochs` of the book's `train` loop (each one Adam step on the image); the total loss of
    the last, before its step. The book's animator reads the losses every 10 epochs; on the CPU
    each step has finished when it returns, so that reading costs nothing and is left out."""
    for _ in range(epochs):
        s.trainer.zero_grad()
        contents_Y_hat, styles_Y_hat = extract_features(s.net, s.X, s.content_layers, s.style_layers)
        _, _, _, l = compute_loss(s.X, contents_Y_hat, styles_Y_hat, s.contents_Y, s.styles_Y_gram, s.weights)  # noqa: E741
        l.backward()
        s.trainer.step()
        s.scheduler.step()
    return l.item()


def run_torch(cfg, steps_per_epoch: int, epochs: int, weight_grads: bool = False, features=None) -> dict:
    """One untimed warm-up epoch of `steps_per_epoch` of the book's steps, then `epochs` timed
    ones, on `features` (default: `feature_net(cfg)`)."""
    import torch

    features = feature_net(cfg) if features is None else features
    s = torch_synthesis(cfg, features, *images(cfg, features), weight_grads=weight_grads)
    seconds = []
    for epoch in range(epochs + 1):  # epoch 0 is the warm-up
        t0 = time.perf_counter()
        loss = torch_epochs(s, steps_per_epoch)
        if epoch > 0:
            seconds.append(time.perf_counter() - t0)
    return {"epoch_seconds": seconds, "compile_seconds": 0.0, "val_acc": None, "train_loss": loss,
            "examples_trained": steps_per_epoch, "loop": "eager", "weight_grads": weight_grads,
            "torch": torch.__version__, "threads": torch.get_num_threads()}


# ------------------------------------------------------------------ dlrun's (experiments/style_transfer.py)


def dlrun_synthesis(cfg, features, content: np.ndarray, style: np.ndarray):
    """The experiment's compiled update of the image and where it starts, built as
    `style_transfer.run` builds them: `(step, x, opt_state)`, `step(x, opt_state) -> (x,
    opt_state, losses)` (`make_step`, Adam with StepLR's schedule: `book_optimizer`)."""
    import jax.numpy as jnp

    from dlrun.experiments import style_transfer as S

    opts = options(cfg)
    x_content, x_style = jnp.asarray(content[None]), jnp.asarray(style[None])
    contents = S.features_at(features, x_content, opts.content_layers)
    grams = {i: S.gram(y) for i, y in S.features_at(features, x_style, opts.style_layers).items()}
    optimizer, _ = S.book_optimizer(opts)
    weights = S.Weights(opts.content_weight, opts.style_weight, opts.tv_weight)
    step = S.make_step(features, contents, grams, weights, optimizer)
    return step, x_content, optimizer.init(x_content)


def dlrun_epochs(step, x, opt_state, epochs: int):
    """`epochs` of the experiment's loop: an update, then its losses fetched as floats (the
    experiment's metrics row, written every epoch). `(x, opt_state, total)`."""
    import jax

    total = float("nan")
    for _ in range(epochs):
        x, opt_state, parts = step(x, opt_state)
        total = {k: float(v) for k, v in jax.device_get(parts).items()}["total"]
    return x, opt_state, total


def step_flops(step, x, opt_state) -> float | None:
    """FLOPs of one update from XLA's cost analysis; None where the convolutions are oneDNN's
    calls (dlrun's default on a CPU), which the analysis cannot see into."""
    import jax

    from dlrun.core.nn.conv import default_conv_impl

    if default_conv_impl() == "onednn":
        return None
    cost = jax.jit(step).lower(x, opt_state).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost  # older jax returns one dict per device
    return float(cost.get("flops", 0.0))


def run_dlrun(cfg, steps_per_epoch: int, epochs: int, features=None) -> dict:
    """One untimed warm-up epoch of `steps_per_epoch` of the experiment's steps, then `epochs`
    timed ones, on `features` (default: `feature_net(cfg)`). Compile seconds: the first step's
    wall time less a compiled step's (the mean of the warm-up's other steps)."""
    features = feature_net(cfg) if features is None else features
    step, x, opt_state = dlrun_synthesis(cfg, features, *images(cfg, features))
    t0 = time.perf_counter()
    x, opt_state, loss = dlrun_epochs(step, x, opt_state, 1)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    x, opt_state, loss = dlrun_epochs(step, x, opt_state, steps_per_epoch - 1)
    compiled = (time.perf_counter() - t0) / (steps_per_epoch - 1) if steps_per_epoch > 1 else 0.0
    seconds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        x, opt_state, loss = dlrun_epochs(step, x, opt_state, steps_per_epoch)
        seconds.append(time.perf_counter() - t0)
    out = {"epoch_seconds": seconds, "compile_seconds": max(first - compiled, 0.0), "val_acc": None, "train_loss": loss,
           "examples_trained": steps_per_epoch, "loop": "step"}
    flops = step_flops(step, x, opt_state)  # after the timing: its tracing would warm the step's cache
    if flops is not None:
        out["flops_per_epoch"] = flops * steps_per_epoch
    return out
