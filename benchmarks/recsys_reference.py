"""PyTorch references of chapter 16's ranking and click-through networks for the speed benchmark,
written as the book writes them (eager, `nn.Embedding`, `nn.Conv2d`, `nn.Sequential`,
`torch.optim.Adam`; its MXNet code ported line for line): NeuMF (D2L 16.6) and Caser (D2L 16.7)
trained with the BPR loss against a sampled negative item per example, the factorisation machine
(D2L 16.9) and DeepFM (D2L 16.10) with binary cross-entropy. All train on the very arrays dlrun's
loaders make, gathered per batch from tensors already in memory, so that only the training loop
is compared. `benchmarks/speed.py` runs them in their own processes against dlrun's configs of
the same networks (configs/neumf_lowrank.yaml, caser_lowrank.yaml, fm_generated.yaml,
deepfm_generated.yaml); tests/test_recsys_reference.py checks them against dlrun's with the same
weights."""

from __future__ import annotations

import numpy as np
import torch
from nlp_reference import as_tensors, train_on
from recsys_gan_reference import adam
from torch import nn

NEGATIVE_DRAWS = 16  # dlrun's: candidates drawn per negative, the first the user has not seen taken


def init_weights(net: nn.Module, init: str, scale: float) -> nn.Module:
    """A dlrun `model.init` on every weight (tables, dense and convolution kernels: the params
    of two axes or more): N(0, scale^2), the book's `mx.init.Normal(0.01)`, or Xavier-uniform,
    its `init.Xavier()`; biases 0, as MXNet's initialisers leave them."""
    for p in net.parameters():
        if p.dim() < 2:
            nn.init.zeros_(p)
        elif init == "normal":
            nn.init.normal_(p, 0, scale)
        elif init == "xavier":
            nn.init.xavier_uniform_(p)
        else:
            raise ValueError(f"model.init: the reference draws 'normal' or 'xavier', not {init!r}")
    return net


# ------------------------------------------------------------------ ranking: negatives, BPR, HR and AUC


def sample_negatives(seen: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
    """One item per example that its user has no training interaction with (seen (users,
    items) bool), uniform over those (D2L 16.5), drawn as dlrun draws it, so that a step does the
    same work: the first unseen of `NEGATIVE_DRAWS` uniform draws, or for a batch where some
    user's draws were all seen an exact draw over each row's unseen items. (The book draws each
    on the host, in Python, in its `PRDataset`.)"""
    draws = torch.randint(0, seen.shape[1], (len(user), NEGATIVE_DRAWS))
    unseen = ~seen[user[:, None], draws]
    found = unseen.any(dim=1)
    quick = draws.gather(1, unseen.to(torch.uint8).argmax(dim=1, keepdim=True))[:, 0]
    if bool(found.all()):
        return quick
    noise = torch.rand(len(user), seen.shape[1]).masked_fill(seen[user], -1.0)
    return torch.where(found, quick, noise.argmax(dim=1))


def bpr_loss(positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """The book's `BPRLoss` per (user, positive, negative) triple, -log sigmoid(pos - neg), (batch,)."""
    return -nn.functional.logsigmoid(positive - negative)


def hit_and_auc(scores: torch.Tensor, item: torch.Tensor, seen: torch.Tensor, top_k: int) -> tuple[float, float]:
    """dlrun's val/hit_rate and val/auc (the book's `hit_and_auc`): each held-out item (scores
    (users, items), item (users,)) ranked against the other items its user has no training
    interaction with, ties counted against it for the hit and one half for the AUC; the means
    over the held-out interactions."""
    own = scores.gather(1, item[:, None])
    others = ~seen & (torch.arange(scores.shape[1])[None, :] != item[:, None])
    above = ((scores > own) & others).sum(dim=1).double()
    ties = ((scores == own) & others).sum(dim=1).double()
    n = others.sum(dim=1).double()
    return float((above + ties < top_k).double().mean()), float(((n - above - 0.5 * ties) / n.clamp(min=1)).mean())


# ------------------------------------------------------------------ NeuMF (D2L 16.6)


class NeuMF(nn.Module):
    """The book's `NeuMF`: generalised MF (p_u * q_i) beside an MLP (ReLU) on [u_u, v_i], then one
    sigmoid unit without bias over both."""

    def __init__(self, num_factors: int, num_users: int, num_items: int, nums_hiddens):
        super().__init__()
        self.P = nn.Embedding(num_users, num_factors)
        self.Q = nn.Embedding(num_items, num_factors)
        self.U = nn.Embedding(num_users, num_factors)
        self.V = nn.Embedding(num_items, num_factors)
        layers, inputs = [], 2 * num_factors
        for num_hiddens in nums_hiddens:
            layers += [nn.Linear(inputs, num_hiddens), nn.ReLU()]
            inputs = num_hiddens
        self.mlp = nn.Sequential(*layers)
        self.prediction_layer = nn.Sequential(nn.Linear(num_factors + inputs, 1, bias=False), nn.Sigmoid())

    def forward(self, user_id, item_id):
        gmf = self.P(user_id) * self.Q(item_id)
        mlp = self.mlp(torch.cat([self.U(user_id), self.V(item_id)], dim=1))
        return self.prediction_layer(torch.cat([gmf, mlp], dim=1)).flatten()

    def pair_scores(self, x: dict, neg) -> tuple[torch.Tensor, torch.Tensor]:
        """The positive and negative items' scores, (batch,) each: the book's two calls of the net."""
        return self(x["user"], x["item"]), self(x["user"], neg)

    def all_scores(self, x: dict, users_per_call: int = 128) -> torch.Tensor:
        """Every item's score for each user, (users, items), a few users' pairs per call."""
        items = torch.arange(self.Q.num_embeddings)
        return torch.cat([self(u.repeat_interleave(len(items)), items.repeat(len(u))).reshape(len(u), -1)
                          for u in x["user"].split(users_per_call)])


# ------------------------------------------------------------------ Caser (D2L 16.7)


class Caser(nn.Module):
    """The book's `Caser`: the L previous items' embeddings as a 1 x L x k image; a vertical
    convolution (d' filters of L x 1) and horizontal ones (d filters of h x k for h = 1..L, ReLU,
    max-pooled over their L - h + 1 positions), concatenated, dropout, dense + ReLU to z (k); item
    i scores [z, p_u] . q'_i + b_i."""

    def __init__(self, num_factors: int, num_users: int, num_items: int, L: int = 5, d: int = 16, d_prime: int = 4,
                 drop_ratio: float = 0.05):
        super().__init__()
        self.P = nn.Embedding(num_users, num_factors)
        self.Q = nn.Embedding(num_items, num_factors)
        self.conv_v = nn.Conv2d(1, d_prime, (L, 1))
        self.conv_h = nn.ModuleList(nn.Conv2d(1, d, (h, num_factors)) for h in range(1, L + 1))
        self.max_pool = nn.ModuleList(nn.MaxPool1d(L - h + 1) for h in range(1, L + 1))
        self.fc = nn.Sequential(nn.Linear(d_prime * num_factors + d * L, num_factors), nn.ReLU())
        self.Q_prime = nn.Embedding(num_items, 2 * num_factors)
        self.b = nn.Embedding(num_items, 1)
        self.dropout = nn.Dropout(drop_ratio)

    def features(self, user_id, seq) -> torch.Tensor:
        """[z, p_u], (batch, 2k): the book's forward up to the item's embeddings."""
        item_embs = self.Q(seq).unsqueeze(1)
        out_v = self.conv_v(item_embs).reshape(len(seq), -1)
        out_h = torch.cat([maxp(torch.relu(conv(item_embs)).squeeze(3)).squeeze(2)
                           for conv, maxp in zip(self.conv_h, self.max_pool)], dim=1)
        z = self.fc(self.dropout(torch.cat([out_v, out_h], dim=1)))
        return torch.cat([z, self.P(user_id)], dim=1)

    def score(self, features, item_id) -> torch.Tensor:
        return (features * self.Q_prime(item_id)).sum(dim=1) + self.b(item_id).squeeze(-1)

    def forward(self, user_id, seq, item_id):
        return self.score(self.features(user_id, seq), item_id)

    def pair_scores(self, x: dict, neg) -> tuple[torch.Tensor, torch.Tensor]:
        """The positive and negative items' scores from one pass over the sequence, as dlrun's
        (the book calls the net twice: twice the convolutions, and two dropout masks)."""
        f = self.features(x["user"], x["seq"])
        return self.score(f, x["item"]), self.score(f, neg)

    def all_scores(self, x: dict) -> torch.Tensor:
        return self.features(x["user"], x["seq"]) @ self.Q_prime.weight.T + self.b.weight[:, 0]


def ranking_net(m, id_counts: dict, seq_len: int = 0) -> NeuMF | Caser:
    """The `NeuMF` or `Caser` of a dlrun `neumf` or `caser` model section, initialised as dlrun's."""
    users, items = id_counts["user"], id_counts["item"]
    if m.name == "neumf":
        return init_weights(NeuMF(m.num_factors, users, items, m.hidden), m.init, m.init_scale)
    if m.init != "normal":  # dlrun's convolution kernels are (L, d') and (h, k, d): Xavier's fans would differ
        raise ValueError(f"model.init: the reference draws Caser's N(0, init_scale^2), not {m.init!r}")
    return init_weights(Caser(m.num_factors, users, items, seq_len, m.d, m.d_prime, m.dropout), m.init, m.init_scale)


def run_ranking(cfg, data, epochs: int) -> dict:
    """NeuMF or Caser (`cfg.model.name`) trained as the book's `train_ranking`: per batch of
    dlrun's training interactions a sampled negative item each, the BPR loss averaged over the
    batch (gluon's `trainer.step(batch_size)`), Adam with the config's lr and weight decay, in
    shuffled whole batches. Its validation figures: the hit rate in the top `data.top_k` and the
    AUC over every item each held-out interaction's user has not trained on."""
    torch.manual_seed(cfg.seed)
    seq_len = data.x_train["seq"].shape[1] if "seq" in data.x_train else 0
    net = ranking_net(cfg.model, data.id_counts, seq_len)
    optimizer = adam(net.parameters(), cfg.optimizer)
    seen = torch.from_numpy(data.negatives)
    batch = cfg.data.batch_size
    n_batches = data.num_train // batch

    def loss_of(x, _):
        return bpr_loss(*net.pair_scores(x, sample_negatives(seen, x["user"]))).mean()

    seconds, losses = train_on(net, optimizer, loss_of, as_tensors(data.x_train), {}, batch, n_batches, epochs)
    net.eval()
    with torch.no_grad():
        scores = net.all_scores(as_tensors(data.x_val))
    item, held_seen = torch.from_numpy(data.y_val["item"].astype(np.int64)), torch.from_numpy(data.y_val["seen"])
    hit, auc = hit_and_auc(scores, item, held_seen, cfg.data.top_k)
    return {"epoch_seconds": seconds, "compile_seconds": 0.0, "val_acc": None, "train_loss": losses[-1],
            "val_hit_rate": hit, "val_auc": auc, "examples_trained": n_batches * batch, "torch": torch.__version__,
            "threads": torch.get_num_threads()}


run_neumf = run_caser = run_ranking  # the network is the config's


# ------------------------------------------------------------------ FM and DeepFM (D2L 16.9, 16.10)


class FM(nn.Module):
    """The book's `FM`: w0 + sum_i w_i + sum_{i<j} <v_i, v_j> over a row's feature ids, as a logit
    (batch,): the book's sigmoid here is left to the loss, which takes logits, as dlrun's does
    (the book applies it twice, here and in `SigmoidBinaryCrossEntropyLoss`)."""

    def __init__(self, num_inputs: int, num_factors: int):
        super().__init__()
        self.embedding = nn.Embedding(num_inputs, num_factors)
        self.fc = nn.Embedding(num_inputs, 1)
        self.linear_layer = nn.Linear(1, 1)

    def terms(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """The linear and pairwise terms, (batch, 1), and the field embeddings (batch, fields, k)."""
        embed_x = self.embedding(x)
        square_of_sum = embed_x.sum(dim=1) ** 2
        sum_of_square = (embed_x**2).sum(dim=1)
        return self.linear_layer(self.fc(x).sum(dim=1)) + 0.5 * (square_of_sum - sum_of_square).sum(dim=1, keepdim=True), embed_x

    def forward(self, x):
        return self.terms(x)[0].flatten()


class DeepFM(FM):
    """The book's `DeepFM`: the FM's logit plus an MLP (ReLU, dropout after each) on the
    concatenated field embeddings, ending in one unit."""

    def __init__(self, num_inputs: int, num_fields: int, num_factors: int, mlp_dims, drop_rate: float = 0.1):
        super().__init__(num_inputs, num_factors)
        layers, input_dim = [], num_fields * num_factors
        for dim in mlp_dims:
            layers += [nn.Linear(input_dim, dim), nn.ReLU(), nn.Dropout(drop_rate)]
            input_dim = dim
        self.mlp = nn.Sequential(*layers, nn.Linear(input_dim, 1))

    def forward(self, x):
        fm, embed_x = self.terms(x)
        return (fm + self.mlp(embed_x.reshape(len(x), -1))).flatten()


def ctr_net(m, num_inputs: int, num_fields: int) -> FM:
    """The `FM` or `DeepFM` of a dlrun `fm` or `deepfm` model section, initialised as dlrun's."""
    net = FM(num_inputs, m.num_factors) if m.name == "fm" else DeepFM(num_inputs, num_fields, m.num_factors, m.hidden, m.dropout)
    return init_weights(net, m.init, m.init_scale)


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """The ROC AUC: the chance that a random positive scores above a random negative, ties
    counting one half (dlrun's val/auc)."""
    pos, neg = scores[labels > 0.5][:, None], scores[labels <= 0.5][None, :]
    return float((pos > neg).double().mean() + 0.5 * (pos == neg).double().mean())


def run_ctr(cfg, data, epochs: int) -> dict:
    """FM or DeepFM (`cfg.model.name`) trained as the book's `train_ch13`: binary cross-entropy
    from the logit averaged over the batch, Adam with the config's lr, on dlrun's rows of feature
    ids and click labels in shuffled whole batches. Its validation figures: the accuracy of
    logit > 0, the log-loss and the AUC on the held-out rows."""
    torch.manual_seed(cfg.seed)
    net = ctr_net(cfg.model, data.id_counts["x"], data.x_train.shape[1])
    optimizer = adam(net.parameters(), cfg.optimizer)
    batch = cfg.data.batch_size
    n_batches = data.num_train // batch
    x, y = as_tensors({"x": data.x_train}), as_tensors({"click": data.y_train})

    def loss_of(xb, yb):
        return nn.functional.binary_cross_entropy_with_logits(net(xb["x"]), yb["click"])

    seconds, losses = train_on(net, optimizer, loss_of, x, y, batch, n_batches, epochs)
    net.eval()
    xv, yv = torch.from_numpy(data.x_val.astype(np.int64)), torch.from_numpy(data.y_val.astype(np.float32))
    with torch.no_grad():
        logits = net(xv)
    return {"epoch_seconds": seconds, "compile_seconds": 0.0, "val_acc": float(((logits > 0) == (yv > 0.5)).double().mean()),
            "train_loss": losses[-1], "val_loss": float(nn.functional.binary_cross_entropy_with_logits(logits, yv)),
            "val_auc": auc(logits, yv), "examples_trained": n_batches * batch, "torch": torch.__version__,
            "threads": torch.get_num_threads()}


run_fm = run_deepfm = run_ctr  # the network is the config's
