"""PyTorch references of a recommender and two GANs for the speed benchmark, written as the book
writes them (eager, `nn.Embedding`, `nn.Sequential`, `torch.optim.Adam`): matrix factorisation
(D2L 16.3, the book's MXNet `MF` ported line for line), the GAN on Gaussian data (D2L 17.1, its
PyTorch `net_G`, `net_D`, `update_D` and `update_G`) and the DCGAN (D2L 17.2, its `G_block`,
`D_block` and `train`). All train on the very arrays dlrun's loaders make, gathered per batch
from tensors already in memory, so that only the training loop is compared.
`benchmarks/speed.py` runs them in their own processes against dlrun's configs of the same
networks (configs/mf_lowrank.yaml, gan_gaussian.yaml, dcgan_cpu.yaml);
tests/test_recsys_gan_reference.py checks them against dlrun's with the same weights. Chapter
16's ranking and click-through networks are in `recsys_reference.py`."""

from __future__ import annotations

import time

import numpy as np
import torch
from nlp_reference import as_tensors, train_on
from torch import nn


def adam(params, opt) -> torch.optim.Adam:
    """`torch.optim.Adam` as dlrun builds it from an optimizer section: its lr, betas and eps
    (1e-8 when unset), and its weight decay added to the gradient (PyTorch's and gluon's `wd`)
    of the weights alone, the params of two axes or more (dlrun's `w` leaves: tables, dense and
    convolution kernels), not of biases or batch norm's scale and shift."""
    params = list(params)
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": opt.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.Adam([g for g in groups if g["params"]], lr=opt.lr, betas=(opt.b1, opt.b2),
                            eps=1e-8 if opt.eps is None else opt.eps)


# ------------------------------------------------------------------ matrix factorisation (D2L 16.3)


class MF(nn.Module):
    """The book's `MF`: r_ui = p_u . q_i + b_u + b_i from four embedding tables."""

    def __init__(self, num_factors: int, num_users: int, num_items: int):
        super().__init__()
        self.P = nn.Embedding(num_users, num_factors)
        self.Q = nn.Embedding(num_items, num_factors)
        self.user_bias = nn.Embedding(num_users, 1)
        self.item_bias = nn.Embedding(num_items, 1)

    def forward(self, user_id, item_id):
        P_u, Q_i = self.P(user_id), self.Q(item_id)
        b_u, b_i = self.user_bias(user_id), self.item_bias(item_id)
        outputs = (P_u * Q_i).sum(dim=1) + b_u.squeeze(-1) + b_i.squeeze(-1)
        return outputs.flatten()


def mf_net(m, num_users: int, num_items: int) -> MF:
    """The `MF` of a dlrun `mf` model section, every table N(0, init_scale^2) (the book's
    `mx.init.Normal(0.01)`)."""
    net = MF(m.num_factors, num_users, num_items)
    for w in net.parameters():
        nn.init.normal_(w, 0, m.init_scale)
    return net


def l2_loss(pred, rating):
    """Gluon's `L2Loss`, each example's 1/2 (y_hat - y)^2, (batch,)."""
    return 0.5 * (pred - rating.reshape(pred.shape)) ** 2


def mf_loss(net, x: dict, y: dict) -> torch.Tensor:
    return l2_loss(net(x["user"], x["item"]), y["rating"])


def run_mf(cfg, data, epochs: int) -> dict:
    """MF trained as the book trains it: the L2 loss on the observed ratings, averaged over the
    batch (gluon's `trainer.step(batch_size)`), Adam with the config's lr and weight decay (the
    book's `wd`, added to the gradient as gluon's and PyTorch's are), on dlrun's (user, item,
    rating) triples in shuffled whole batches. Its validation figure: the held-out RMSE."""
    torch.manual_seed(cfg.seed)
    net = mf_net(cfg.model, data.id_counts["user"], data.id_counts["item"])
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay)
    batch = cfg.data.batch_size
    x, y = as_tensors(data.x_train), as_tensors({"rating": data.y_train})
    n_batches = data.num_train // batch
    seconds, losses = train_on(net, optimizer, lambda xb, yb: mf_loss(net, xb, yb).mean(), x, y, batch, n_batches, epochs)
    xv, yv = as_tensors(data.x_val), as_tensors({"rating": data.y_val})
    with torch.no_grad():
        rmse = float(((net(xv["user"], xv["item"]) - yv["rating"]) ** 2).mean().sqrt())
    return {"epoch_seconds": seconds, "compile_seconds": 0.0, "val_acc": None, "train_loss": losses[-1], "val_rmse": rmse,
            "examples_trained": n_batches * batch, "torch": torch.__version__, "threads": torch.get_num_threads()}


# ------------------------------------------------------------------ GAN (D2L 17.1)


def gan_nets(latent_dim: int, features: int, init_scale: float) -> tuple[nn.Sequential, nn.Sequential]:
    """The book's `net_G` = Linear(2, 2) and `net_D` = 2-5-3-1 with tanh, every weight and bias
    N(0, 0.02^2) (its `normal_(w, 0, 0.02)`)."""
    net_G = nn.Sequential(nn.Linear(latent_dim, features))
    net_D = nn.Sequential(nn.Linear(features, 5), nn.Tanh(), nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 1))
    for w in [*net_D.parameters(), *net_G.parameters()]:
        nn.init.normal_(w, 0, init_scale)
    return net_G, net_D


def update_D(X, Z, net_D, net_G, loss, trainer_D):
    """The book's discriminator update: real as 1, generated (detached from G) as 0."""
    batch_size = X.shape[0]
    ones, zeros = torch.ones((batch_size,)), torch.zeros((batch_size,))
    trainer_D.zero_grad()
    real_Y = net_D(X)
    fake_Y = net_D(net_G(Z).detach())
    loss_D = (loss(real_Y, ones.reshape(real_Y.shape)) + loss(fake_Y, zeros.reshape(fake_Y.shape))) / 2
    loss_D.backward()
    trainer_D.step()
    return loss_D


def update_G(Z, net_D, net_G, loss, trainer_G):
    """The book's generator update against the updated discriminator, the same Z."""
    ones = torch.ones((Z.shape[0],))
    trainer_G.zero_grad()
    fake_Y = net_D(net_G(Z))
    loss_G = loss(fake_Y, ones.reshape(fake_Y.shape))
    loss_G.backward()
    trainer_G.step()
    return loss_G


def train_gan(net_D, net_G, trainer_D, trainer_G, X_all, noise_shape: tuple[int, ...], batch: int, n_batches: int,
              epochs: int) -> tuple[list[float], tuple[float, float]]:
    """The book's `train`: per batch of real examples, fresh noise Z of `noise_shape`,
    `update_D` then `update_G`, BCE-with-logits averaged over the batch, as dlrun's (the book sums
    it: Adam's steps are blind to the factor but for its epsilon). One warm-up epoch, then
    `epochs` timed ones over shuffled whole batches; each epoch's mean losses reach the host
    once, as dlrun's do. Seconds per timed epoch, and the last one's (loss_D, loss_G)."""
    loss = nn.BCEWithLogitsLoss()
    seconds, losses = [], (0.0, 0.0)
    for epoch in range(epochs + 1):  # epoch 0 is the warm-up
        t0 = time.perf_counter()
        order = torch.randperm(len(X_all))
        total_D, total_G = torch.zeros(()), torch.zeros(())
        for i in range(n_batches):
            X = X_all[order[i * batch : (i + 1) * batch]]
            Z = torch.normal(0, 1, size=(X.shape[0], *noise_shape))
            total_D += update_D(X, Z, net_D, net_G, loss, trainer_D).detach()
            total_G += update_G(Z, net_D, net_G, loss, trainer_G).detach()
        losses = (float(total_D) / n_batches, float(total_G) / n_batches)
        if epoch > 0:
            seconds.append(time.perf_counter() - t0)
    return seconds, losses


def gan_result(seconds: list[float], losses: tuple[float, float], examples: int) -> dict:
    return {"epoch_seconds": seconds, "compile_seconds": 0.0, "val_acc": None, "train_loss": losses[0],
            "train_loss_G": losses[1], "examples_trained": examples, "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def run_gan(cfg, data, epochs: int) -> dict:
    """The book's 17.1 `train` (`train_gan`) of `gan_nets` on dlrun's Gaussian examples, Adam at
    the config's two learning rates."""
    torch.manual_seed(cfg.seed)
    m = cfg.model
    X_all = torch.from_numpy(data.x_train.astype("float32"))
    net_G, net_D = gan_nets(m.latent_dim, X_all.shape[1], m.init_scale)
    trainer_D = torch.optim.Adam(net_D.parameters(), lr=cfg.optimizers["discriminator"].lr)
    trainer_G = torch.optim.Adam(net_G.parameters(), lr=cfg.optimizers["generator"].lr)
    batch, n_batches = cfg.data.batch_size, data.num_train // cfg.data.batch_size
    seconds, losses = train_gan(net_D, net_G, trainer_D, trainer_G, X_all, (m.latent_dim,), batch, n_batches, epochs)
    return gan_result(seconds, losses, n_batches * batch)


# ------------------------------------------------------------------ DCGAN (D2L 17.2)


class G_block(nn.Module):
    """The book's G_block: a 4x4 transposed convolution without bias, batch norm, ReLU."""

    def __init__(self, out_channels: int, in_channels: int = 3, kernel_size: int = 4, strides: int = 2, padding: int = 1):
        super().__init__()
        self.conv2d_trans = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, strides, padding, bias=False)
        self.batch_norm = nn.BatchNorm2d(out_channels)
        self.activation = nn.ReLU()

    def forward(self, X):
        return self.activation(self.batch_norm(self.conv2d_trans(X)))


class D_block(nn.Module):
    """The book's D_block: a 4x4 convolution without bias, batch norm, leaky ReLU (slope 0.2)."""

    def __init__(self, out_channels: int, in_channels: int = 3, kernel_size: int = 4, strides: int = 2, padding: int = 1,
                 alpha: float = 0.2):
        super().__init__()
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding, bias=False)
        self.batch_norm = nn.BatchNorm2d(out_channels)
        self.activation = nn.LeakyReLU(alpha, inplace=True)

    def forward(self, X):
        return self.activation(self.batch_norm(self.conv2d(X)))


def dcgan_nets(m, image_shape: tuple[int, int, int]) -> tuple[nn.Sequential, nn.Sequential]:
    """The book's `net_G` and `net_D` for images (side, side, channels) of a dlrun `dcgan` model
    section: k = log2(side) - 2 blocks on each side (the book's 4 at 64 x 64), the G_blocks of
    n_G 2^(k-1), ..., n_G channels growing the 1x1 noise to side/2 and a last transposed
    convolution doubling it, the D_blocks of n_D, ..., n_D 2^(k-1) shrinking the image to 4x4
    and a 4x4 convolution to one logit. Every parameter N(0, init_scale^2), batch norm's scale
    and shift included (the book's `nn.init.normal_(w, 0, 0.02)` over `parameters()`), or with
    `batch_norm_init: ones` the convolutions' alone."""
    if m.init != "normal":
        raise ValueError(f"model.init: the reference draws the book's N(0, init_scale^2), not {m.init!r}")
    side, _, channels = image_shape
    k = side.bit_length() - 3
    g = [m.generator_channels * 2**i for i in reversed(range(k))]
    d = [m.discriminator_channels * 2**i for i in range(k)]
    net_G = nn.Sequential(G_block(g[0], m.latent_dim, strides=1, padding=0), *(G_block(o, i) for i, o in zip(g, g[1:])),
                          nn.ConvTranspose2d(g[-1], channels, kernel_size=4, stride=2, padding=1, bias=False), nn.Tanh())
    net_D = nn.Sequential(D_block(d[0], channels), *(D_block(o, i) for i, o in zip(d, d[1:])),
                          nn.Conv2d(d[-1], 1, kernel_size=4, bias=False))
    for w in [*net_D.parameters(), *net_G.parameters()]:
        if w.dim() > 1 or m.batch_norm_init == "normal":
            nn.init.normal_(w, 0, m.init_scale)
    return net_G, net_D


def run_dcgan(cfg, data, epochs: int) -> dict:
    """The book's 17.2 `train` (`train_gan`: its `update_D` and `update_G`, noise (latent, 1, 1))
    of `dcgan_nets` on dlrun's NHWC images in [-1, 1], moved to NCHW once; each part's Adam from
    `optimizers.<part>` (the book's lr 0.005, betas (0.5, 0.999))."""
    torch.manual_seed(cfg.seed)
    m = cfg.model
    X_all = torch.from_numpy(np.ascontiguousarray(data.x_train.transpose(0, 3, 1, 2), np.float32))
    net_G, net_D = dcgan_nets(m, data.x_train.shape[1:])
    trainer_D = adam(net_D.parameters(), cfg.optimizers.get("discriminator", cfg.optimizer))
    trainer_G = adam(net_G.parameters(), cfg.optimizers.get("generator", cfg.optimizer))
    batch, n_batches = cfg.data.batch_size, data.num_train // cfg.data.batch_size
    seconds, losses = train_gan(net_D, net_G, trainer_D, trainer_G, X_all, (m.latent_dim, 1, 1), batch, n_batches, epochs)
    return gan_result(seconds, losses, n_batches * batch)
