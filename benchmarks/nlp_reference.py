"""PyTorch references of chapter 14's pretrained networks for the speed benchmark, written as the
book writes them (eager, `nn.Embedding`, its attention classes, `torch.optim.Adam`): skip-gram
word2vec with its masked sigmoid cross-entropy (D2L 14.4) and BERT pretraining (D2L 14.8, 14.10).
Both train on the very arrays dlrun's loaders make (named inputs and targets, gathered per batch
from tensors already in memory), so that only the training loop is compared.
`benchmarks/speed.py` runs them in their own processes against dlrun's configs of the same
networks; tests/test_nlp_reference.py checks them against dlrun's with the same weights."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch_reference import timed_epochs


def as_tensors(arrays: dict) -> dict:
    """dlrun's named numpy arrays as tensors: ids int64 (what `nn.Embedding` and indexing take),
    the rest float32."""
    return {k: torch.from_numpy(v.astype(np.int64) if np.issubdtype(v.dtype, np.integer) else v.astype(np.float32))
            for k, v in arrays.items()}


def train_on(net, optimizer, loss_of, x: dict, y: dict, batch_size: int, n_batches: int, epochs: int) -> tuple[list[float], list[float]]:
    """`timed_epochs` over named inputs and targets: it shuffles example indices and each step
    gathers its batch of every array, as a DataLoader over the arrays would. Seconds per timed
    epoch and each timed epoch's mean batch loss."""
    n = len(next(iter(x.values())))
    index = torch.arange(n)
    losses: list[float] = []

    def batch_loss(idx, _):
        return loss_of({k: v[idx] for k, v in x.items()}, {k: v[idx] for k, v in y.items()})

    seconds = timed_epochs(net, optimizer, batch_loss, index, index, batch_size, n_batches, epochs, on_epoch=losses.append)
    return seconds, losses


# ------------------------------------------------------------------ word2vec (D2L 14.4)


def skip_gram(center, contexts_and_negatives, embed_v, embed_u):
    """The book's skip-gram: center (batch, 1), contexts (batch, max_len) -> (batch, 1, max_len)."""
    v = embed_v(center)
    u = embed_u(contexts_and_negatives)
    return torch.bmm(v, u.permute(0, 2, 1))


class SigmoidBCELoss(nn.Module):
    """The book's binary cross-entropy with masking: the mean over all max_len positions."""

    def forward(self, inputs, target, mask=None):
        out = nn.functional.binary_cross_entropy_with_logits(inputs, target, weight=mask, reduction="none")
        return out.mean(dim=1)


def word2vec_net(vocab: int, embed_size: int) -> nn.Sequential:
    """The book's two embeddings (centre `net[0]`, context `net[1]`), Xavier-uniform (its `init_weights`)."""
    net = nn.Sequential(nn.Embedding(vocab, embed_size), nn.Embedding(vocab, embed_size))
    for m in net:
        nn.init.xavier_uniform_(m.weight)
    return net


def word2vec_loss(net, x: dict, y: dict) -> torch.Tensor:
    """Each example's loss as the book's `train` computes it, (batch,): the masked mean rescaled
    to the valid positions (`* mask.shape[1] / mask.sum(axis=1)`)."""
    pred = skip_gram(x["center"].reshape(-1, 1), x["contexts_negatives"], net[0], net[1])
    mask, label = y["mask"], y["label"]
    return SigmoidBCELoss()(pred.reshape(label.shape), label, mask) / mask.sum(axis=1) * mask.shape[1]


def run_word2vec(cfg, data, epochs: int) -> dict:
    """Skip-gram trained as the book trains it (Adam), on dlrun's examples in shuffled whole
    batches (dlrun's default sampling leaves the remainder out). The book backpropagates the
    batch's sum; this takes its mean, as dlrun does: Adam's steps are blind to the factor but
    for its epsilon. No validation split: the last epoch's training loss."""
    torch.manual_seed(cfg.seed)
    net = word2vec_net(data.num_classes, cfg.model.embed_size)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.optimizer.lr)
    batch = cfg.data.batch_size
    x, y = as_tensors(data.x_train), as_tensors(data.y_train)
    seconds, losses = train_on(net, optimizer, lambda xb, yb: word2vec_loss(net, xb, yb).mean(), x, y, batch,
                               data.num_train // batch, epochs)
    return {"epoch_seconds": seconds, "compile_seconds": 0.0, "val_acc": None, "train_loss": losses[-1],
            "torch": torch.__version__, "threads": torch.get_num_threads()}


# ------------------------------------------------------------------ BERT (D2L 14.8, 14.10)


def masked_softmax(X, valid_lens):
    """The book's softmax over the last axis with the keys at or past each valid length set to -1e6."""
    if valid_lens is None:
        return nn.functional.softmax(X, dim=-1)
    shape = X.shape
    valid_lens = torch.repeat_interleave(valid_lens, shape[1]) if valid_lens.dim() == 1 else valid_lens.reshape(-1)
    X = X.reshape(-1, shape[-1])
    mask = torch.arange(shape[-1], dtype=torch.float32)[None, :] < valid_lens[:, None]
    X[~mask] = -1e6
    return nn.functional.softmax(X.reshape(shape), dim=-1)


class DotProductAttention(nn.Module):
    def __init__(self, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens=None):
        scores = torch.bmm(queries, keys.transpose(1, 2)) / math.sqrt(queries.shape[-1])
        return torch.bmm(self.dropout(masked_softmax(scores, valid_lens)), values)


class MultiHeadAttention(nn.Module):
    """The book's multi-head attention; `nn.Linear` of known inputs in place of its `nn.LazyLinear`
    (the same initialisation once materialised, and weights that can be copied in before a forward)."""

    def __init__(self, num_hiddens: int, num_heads: int, dropout: float, bias: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.attention = DotProductAttention(dropout)
        self.W_q, self.W_k, self.W_v, self.W_o = (nn.Linear(num_hiddens, num_hiddens, bias=bias) for _ in range(4))

    def forward(self, queries, keys, values, valid_lens):
        queries, keys, values = (self.transpose_qkv(w(a)) for w, a in ((self.W_q, queries), (self.W_k, keys), (self.W_v, values)))
        if valid_lens is not None:
            valid_lens = torch.repeat_interleave(valid_lens, repeats=self.num_heads, dim=0)
        return self.W_o(self.transpose_output(self.attention(queries, keys, values, valid_lens)))

    def transpose_qkv(self, X):  # (batch, T, d) -> (batch * heads, T, d / heads)
        X = X.reshape(X.shape[0], X.shape[1], self.num_heads, -1).permute(0, 2, 1, 3)
        return X.reshape(-1, X.shape[2], X.shape[3])

    def transpose_output(self, X):
        X = X.reshape(-1, self.num_heads, X.shape[1], X.shape[2]).permute(0, 2, 1, 3)
        return X.reshape(X.shape[0], X.shape[1], -1)


class AddNorm(nn.Module):
    def __init__(self, norm_shape: int, dropout: float):
        super().__init__()
        self.dropout, self.ln = nn.Dropout(dropout), nn.LayerNorm(norm_shape)

    def forward(self, X, Y):
        return self.ln(self.dropout(Y) + X)


class PositionWiseFFN(nn.Module):
    def __init__(self, num_inputs: int, ffn_num_hiddens: int, ffn_num_outputs: int):
        super().__init__()
        self.dense1, self.relu, self.dense2 = nn.Linear(num_inputs, ffn_num_hiddens), nn.ReLU(), nn.Linear(ffn_num_hiddens, ffn_num_outputs)

    def forward(self, X):
        return self.dense2(self.relu(self.dense1(X)))


class TransformerEncoderBlock(nn.Module):
    def __init__(self, num_hiddens: int, ffn_num_hiddens: int, num_heads: int, dropout: float, use_bias: bool = False):
        super().__init__()
        self.attention = MultiHeadAttention(num_hiddens, num_heads, dropout, use_bias)
        self.addnorm1 = AddNorm(num_hiddens, dropout)
        self.ffn = PositionWiseFFN(num_hiddens, ffn_num_hiddens, num_hiddens)
        self.addnorm2 = AddNorm(num_hiddens, dropout)

    def forward(self, X, valid_lens):
        Y = self.addnorm1(X, self.attention(X, X, X, valid_lens))
        return self.addnorm2(Y, self.ffn(Y))


class BERTEncoder(nn.Module):
    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout, max_len=1000):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, num_hiddens)
        self.segment_embedding = nn.Embedding(2, num_hiddens)
        self.blks = nn.Sequential()
        for i in range(num_blks):
            self.blks.add_module(f"{i}", TransformerEncoderBlock(num_hiddens, ffn_num_hiddens, num_heads, dropout, True))
        self.pos_embedding = nn.Parameter(torch.randn(1, max_len, num_hiddens))

    def forward(self, tokens, segments, valid_lens):
        X = self.token_embedding(tokens) + self.segment_embedding(segments)
        X = X + self.pos_embedding[:, : X.shape[1], :]
        for blk in self.blks:
            X = blk(X, valid_lens)
        return X


class MaskLM(nn.Module):
    def __init__(self, vocab_size: int, num_hiddens: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(num_hiddens, num_hiddens), nn.ReLU(), nn.LayerNorm(num_hiddens),
                                 nn.Linear(num_hiddens, vocab_size))

    def forward(self, X, pred_positions):
        num_pred_positions = pred_positions.shape[1]
        batch_idx = torch.repeat_interleave(torch.arange(0, X.shape[0]), num_pred_positions)
        masked_X = X[batch_idx, pred_positions.reshape(-1)].reshape((X.shape[0], num_pred_positions, -1))
        return self.mlp(masked_X)


class BERTModel(nn.Module):
    """The book's `BERTModel`: the encoder, MaskLM, the `<cls>` hidden layer and NextSentencePred
    (`nsp`, its `output` dense(2))."""

    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout, max_len=1000):
        super().__init__()
        self.encoder = BERTEncoder(vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout, max_len=max_len)
        self.hidden = nn.Sequential(nn.Linear(num_hiddens, num_hiddens), nn.Tanh())
        self.mlm = MaskLM(vocab_size, num_hiddens)
        self.nsp = nn.Sequential()
        self.nsp.add_module("output", nn.Linear(num_hiddens, 2))

    def forward(self, tokens, segments, valid_lens=None, pred_positions=None):
        encoded_X = self.encoder(tokens, segments, valid_lens)
        mlm_Y_hat = self.mlm(encoded_X, pred_positions) if pred_positions is not None else None
        return encoded_X, mlm_Y_hat, self.nsp(self.hidden(encoded_X[:, 0, :]))


def bert_net(m, vocab: int) -> BERTModel:
    """The `BERTModel` of a dlrun `bert` model section."""
    return BERTModel(vocab, m.num_hiddens, m.ffn_num_hiddens, m.num_heads, m.num_blks, m.dropout, m.max_len)


def bert_loss(net, x: dict, y: dict) -> torch.Tensor:
    """Each example's loss, (batch,): its mean MLM cross-entropy over its predicted tokens
    (`mlm_weights` 1) plus its NSP cross-entropy, dlrun's `bert_pretraining` loss (the book's
    `_get_batch_loss_bert` averages the MLM term over the batch's predictions instead)."""
    _, mlm_Y_hat, nsp_Y_hat = net(x["tokens"], x["segments"], x["valid_lens"].reshape(-1), x["pred_positions"])
    ce = nn.functional.cross_entropy(mlm_Y_hat.reshape(-1, mlm_Y_hat.shape[-1]), y["mlm_labels"].reshape(-1), reduction="none")
    w = y["mlm_weights"]
    mlm = (ce.reshape(w.shape) * w).sum(dim=1) / w.sum(dim=1).clamp(min=1e-8)
    return mlm + nn.functional.cross_entropy(nsp_Y_hat, y["nsp_labels"], reduction="none")


def run_bert(cfg, data, epochs: int) -> dict:
    """BERT pretrained as dlrun trains it (Adam), each epoch `data.steps_per_epoch` shuffled
    batches (dlrun's epochs of its endless stream: the same number of examples); no validation
    split: the last epoch's training loss."""
    torch.manual_seed(cfg.seed)
    net = bert_net(cfg.model, data.num_classes)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.optimizer.lr)
    batch = cfg.data.batch_size
    steps = cfg.data.steps_per_epoch or data.num_train // batch
    x, y = as_tensors(data.x_train), as_tensors(data.y_train)
    seconds, losses = train_on(net, optimizer, lambda xb, yb: bert_loss(net, xb, yb).mean(), x, y, batch, steps, epochs)
    return {"epoch_seconds": seconds, "compile_seconds": 0.0, "val_acc": None, "train_loss": losses[-1],
            "torch": torch.__version__, "threads": torch.get_num_threads()}
