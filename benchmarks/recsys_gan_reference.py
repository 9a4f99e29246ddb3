"""PyTorch references of a recommender and a GAN for the speed benchmark, written as the book
writes them (eager, `nn.Embedding`, `nn.Sequential`, `torch.optim.Adam`): matrix factorisation
(D2L 16.3, the book's MXNet `MF` ported line for line) and the GAN on Gaussian data (D2L 17.1,
its PyTorch `net_G`, `net_D`, `update_D` and `update_G`). Both train on the very arrays dlrun's
loaders make, gathered per batch from tensors already in memory, so that only the training
loop is compared. `benchmarks/speed.py` runs them in their own processes against dlrun's configs
of the same networks (configs/mf_lowrank.yaml, gan_gaussian.yaml);
tests/test_recsys_gan_reference.py checks them against dlrun's with the same weights."""

from __future__ import annotations

import time

import torch
from nlp_reference import as_tensors, train_on
from torch import nn

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


def run_gan(cfg, data, epochs: int) -> dict:
    """The book's `train`: per batch of real examples, fresh noise Z, `update_D` then `update_G`,
    Adam at the config's two learning rates. BCE-with-logits averaged over the batch, as dlrun's
    (the book sums it: Adam's steps are blind to the factor but for its epsilon). One warm-up
    epoch, then `epochs` timed ones over shuffled whole batches; each epoch's mean losses reach
    the host once, as dlrun's do."""
    torch.manual_seed(cfg.seed)
    m = cfg.model
    X_all = torch.from_numpy(data.x_train.astype("float32"))
    net_G, net_D = gan_nets(m.latent_dim, X_all.shape[1], m.init_scale)
    loss = nn.BCEWithLogitsLoss()
    trainer_D = torch.optim.Adam(net_D.parameters(), lr=cfg.optimizers["discriminator"].lr)
    trainer_G = torch.optim.Adam(net_G.parameters(), lr=cfg.optimizers["generator"].lr)
    batch, n_batches = cfg.data.batch_size, data.num_train // cfg.data.batch_size
    seconds, losses = [], (0.0, 0.0)
    for epoch in range(epochs + 1):  # epoch 0 is the warm-up
        t0 = time.perf_counter()
        order = torch.randperm(len(X_all))
        total_D, total_G = torch.zeros(()), torch.zeros(())
        for i in range(n_batches):
            X = X_all[order[i * batch : (i + 1) * batch]]
            Z = torch.normal(0, 1, size=(X.shape[0], m.latent_dim))
            total_D += update_D(X, Z, net_D, net_G, loss, trainer_D).detach()
            total_G += update_G(Z, net_D, net_G, loss, trainer_G).detach()
        losses = (float(total_D) / n_batches, float(total_G) / n_batches)
        if epoch > 0:
            seconds.append(time.perf_counter() - t0)
    return {"epoch_seconds": seconds, "compile_seconds": 0.0, "val_acc": None, "train_loss": losses[0],
            "train_loss_G": losses[1], "examples_trained": n_batches * batch, "torch": torch.__version__,
            "threads": torch.get_num_threads()}
