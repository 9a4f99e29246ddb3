"""The PyTorch reference: each benchmark model written the way the book writes it (eager,
`nn.Sequential`, `torch.optim.SGD`, `nn.CrossEntropyLoss`), trained on tensors already in memory
so that only the training loop is compared. Imported only when torch is installed."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn


class Residual(nn.Module):
    """D2L 8.6's residual block: conv 3x3, BN, ReLU, conv 3x3, BN, plus the input (a 1x1 conv when
    the shape changes), ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride) if (c_in != c_out or stride != 1) else None
        self.bn1, self.bn2 = nn.BatchNorm2d(c_out), nn.BatchNorm2d(c_out)

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (self.conv3(x) if self.conv3 is not None else x))


class ViTBlock(nn.Module):
    """D2L 11.8's pre-norm block: X + MHA(LN(X)), X + MLP(LN(X))."""

    def __init__(self, hidden: int, mlp_hidden: int, heads: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.attention = nn.MultiheadAttention(hidden, heads, dropout=dropout, bias=False, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(hidden, mlp_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_hidden, hidden),
                                 nn.Dropout(dropout))

    def forward(self, x):
        y = self.ln1(x)
        x = x + self.attention(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    """D2L 11.8's Vision Transformer: patch convolution, [cls], learned positions, pre-norm blocks, head on [cls]."""

    def __init__(self, patch: int, hidden: int, mlp_hidden: int, heads: int, blocks: int, dropout: float, num_patches: int):
        super().__init__()
        self.patch_embed = nn.Conv2d(1, hidden, kernel_size=patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, hidden))
        self.pos = nn.Parameter(0.01 * torch.randn(1, num_patches + 1, hidden))
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[ViTBlock(hidden, mlp_hidden, heads, dropout) for _ in range(blocks)])
        self.head = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, 10))

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = self.dropout(torch.cat((self.cls.expand(x.shape[0], -1, -1), x), 1) + self.pos)
        return self.head(self.blocks(x)[:, 0])


def build(model: str) -> nn.Module:
    """D2L 3.7 (softmax regression), 4.3 (MLP 784-256-10), 6.6 (LeNet), 8.5 (BN-LeNet) and the
    CPU-sized ResNet of configs/resnet_cpu.yaml (8.6), with the book's inits."""
    if model == "softmax":
        net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    elif model == "mlp":
        net = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    elif model == "lenet":
        net = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(),
            nn.Linear(120, 84), nn.Sigmoid(),
            nn.Linear(84, 10),
        )  # fmt: skip
    elif model == "bn_lenet":
        net = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5), nn.BatchNorm2d(6), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), nn.BatchNorm2d(16), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(256, 120), nn.BatchNorm1d(120), nn.Sigmoid(),
            nn.Linear(120, 84), nn.BatchNorm1d(84), nn.Sigmoid(),
            nn.Linear(84, 10),
        )  # fmt: skip
    elif model == "vit_cpu":
        net = ViT(patch=4, hidden=64, mlp_hidden=128, heads=4, blocks=2, dropout=0.1, num_patches=49)
    elif model == "resnet_cpu":
        stages, c_in = [], 16
        for i, c in enumerate((16, 32, 64, 128)):
            stages.append(Residual(c_in, c, stride=2 if i else 1))
            c_in = c
        net = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10),
        )  # fmt: skip
    else:
        raise ValueError(f"no PyTorch reference for model '{model}'")

    if model == "vit_cpu":
        return net

    def init(m):
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            if model in ("lenet", "bn_lenet", "resnet_cpu"):
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)

    net.apply(init)
    return net


def timed_epochs(net, optimizer, loss_of, x, y, batch_size: int, n_batches: int, epochs: int, clip_norm=None,
                 warmup: bool = True, on_epoch=None) -> list[float]:
    """The book's training loop: one warm-up epoch (unless not `warmup`), then `epochs` timed ones
    over shuffled minibatches (gradients clipped to `clip_norm` when given); seconds per timed
    epoch. `on_epoch(mean batch loss)` runs after each timed epoch, outside the timing."""
    seconds = []
    for epoch in range(0 if warmup else 1, epochs + 1):
        t0 = time.perf_counter()
        net.train()
        order = torch.randperm(len(x))
        total_loss = torch.zeros(())
        for i in range(n_batches):
            idx = order[i * batch_size : (i + 1) * batch_size]
            loss = loss_of(x[idx], y[idx])
            optimizer.zero_grad()
            loss.backward()
            if clip_norm:
                nn.utils.clip_grad_norm_(net.parameters(), clip_norm)
            optimizer.step()
            total_loss += loss.detach()
        mean_loss = float(total_loss) / n_batches  # the epoch's loss reaches the host once, as dlrun's does
        if epoch > 0:  # epoch 0 is the warm-up
            seconds.append(time.perf_counter() - t0)
            if on_epoch is not None:
                on_epoch(mean_loss)
    return seconds


def run(model: str, lr: float, batch_size: int, epochs: int, x_train, y_train, x_val, y_val, seed: int = 0,
        optimizer: str = "sgd") -> dict:
    """One warm-up epoch, then `epochs` timed ones; x as NHWC numpy (moved to NCHW tensors here)."""
    torch.manual_seed(seed)
    net = build(model)
    x = torch.from_numpy(np.ascontiguousarray(x_train.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(y_train.astype(np.int64))
    loss_fn = nn.CrossEntropyLoss()
    optimizer = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(net.parameters(), lr=lr)
    seconds = timed_epochs(net, optimizer, lambda xb, yb: loss_fn(net(xb), yb), x, y, batch_size, len(x) // batch_size, epochs)
    net.eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(np.ascontiguousarray(x_val.transpose(0, 3, 1, 2))))
        val_acc = float((logits.argmax(1).numpy() == y_val).mean())
    return {"epoch_seconds": seconds, "compile_seconds": 0.0, "val_acc": val_acc, "torch": torch.__version__, "threads": torch.get_num_threads()}


# ------------------------------------------------------------------ sequence models (D2L 10.2, 10.7)


class GRULM(nn.Module):
    """The book's concise GRU language model: one-hot tokens, `nn.GRU`, a dense output."""

    def __init__(self, vocab: int, hidden: int):
        super().__init__()
        self.vocab = vocab
        self.rnn = nn.GRU(vocab, hidden)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, x):  # x (batch, steps) -> logits (batch, steps, vocab)
        y, _ = self.rnn(nn.functional.one_hot(x.T, self.vocab).float())
        return self.out(y).transpose(0, 1)


def init_seq2seq(module: nn.Module) -> None:
    """The book's init: Xavier for `nn.Linear` and GRU weights. An `nn.LazyLinear` is not yet an
    `nn.Linear` when it runs, so such layers keep PyTorch's default init, as in the book."""
    if type(module) is nn.Linear:
        nn.init.xavier_uniform_(module.weight)
    if type(module) is nn.GRU:
        for name, p in module.named_parameters():
            if "weight" in name:
                nn.init.xavier_uniform_(p)


def masked_loss_sum(logits, yb) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the cross-entropy over each target's valid tokens, their count); `yb` holds the
    labels, then the valid length (dlrun's translation layout)."""
    labels, valid = yb[:, :-1], yb[:, -1]
    mask = (torch.arange(labels.shape[1])[None, :] < valid[:, None]).float()
    per_token = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    return (per_token.reshape(labels.shape) * mask).sum(), mask.sum()


class Seq2Seq(nn.Module):
    """The book's Seq2SeqEncoder and Seq2SeqDecoder (D2L 10.7) in one module."""

    def __init__(self, src_vocab: int, tgt_vocab: int, embed: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.enc_embed, self.dec_embed = nn.Embedding(src_vocab, embed), nn.Embedding(tgt_vocab, embed)
        self.encoder = nn.GRU(embed, hidden, layers, dropout=dropout)
        self.decoder = nn.GRU(embed + hidden, hidden, layers, dropout=dropout)
        self.out = nn.Linear(hidden, tgt_vocab)
        self.apply(init_seq2seq)

    def forward(self, src, dec):  # (batch, T) each -> logits (batch, T, vocab)
        _, state = self.encoder(self.enc_embed(src.T))
        x = self.dec_embed(dec.T)
        context = state[-1].unsqueeze(0).expand(x.shape[0], -1, -1)
        y, _ = self.decoder(torch.cat([x, context], dim=2), state)
        return self.out(y).transpose(0, 1)


class PositionalEncoding(nn.Module):
    def __init__(self, hidden: int, dropout: float, max_len: int = 1000):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        pos = torch.arange(max_len, dtype=torch.float32).reshape(-1, 1) / torch.pow(
            10000, torch.arange(0, hidden, 2, dtype=torch.float32) / hidden)
        self.register_buffer("p", torch.zeros(1, max_len, hidden))
        self.p[:, :, 0::2], self.p[:, :, 1::2] = torch.sin(pos), torch.cos(pos)

    def forward(self, x):
        return self.dropout(x + self.p[:, : x.shape[1]])


class TransformerBlock(nn.Module):
    """D2L 11.7's post-norm blocks; with `cross`, a decoder block (masked self-attention, then
    attention over the encoder's outputs)."""

    def __init__(self, hidden: int, ffn_hidden: int, heads: int, dropout: float, cross: bool):
        super().__init__()
        mha = lambda: nn.MultiheadAttention(hidden, heads, dropout=dropout, bias=False, batch_first=True)  # noqa: E731
        self.self_attention, self.cross_attention = mha(), (mha() if cross else None)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(3 if cross else 2))
        self.ffn = nn.Sequential(nn.Linear(hidden, ffn_hidden), nn.ReLU(), nn.Linear(ffn_hidden, hidden))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, self_mask=None, pad_mask=None, memory=None, memory_pad_mask=None):
        y = self.self_attention(x, x, x, attn_mask=self_mask, key_padding_mask=pad_mask, need_weights=False)[0]
        x = self.norms[0](x + self.dropout(y))
        if self.cross_attention is not None:
            y = self.cross_attention(x, memory, memory, key_padding_mask=memory_pad_mask, need_weights=False)[0]
            x = self.norms[1](x + self.dropout(y))
        return self.norms[-1](x + self.dropout(self.ffn(x)))


class Transformer(nn.Module):
    def __init__(self, src_vocab: int, tgt_vocab: int, hidden: int, ffn_hidden: int, heads: int, blocks: int, dropout: float):
        super().__init__()
        self.hidden = hidden
        self.src_embed, self.tgt_embed = nn.Embedding(src_vocab, hidden), nn.Embedding(tgt_vocab, hidden)
        self.pos = PositionalEncoding(hidden, dropout)
        self.encoder = nn.ModuleList(TransformerBlock(hidden, ffn_hidden, heads, dropout, False) for _ in range(blocks))
        self.decoder = nn.ModuleList(TransformerBlock(hidden, ffn_hidden, heads, dropout, True) for _ in range(blocks))
        self.out = nn.Linear(hidden, tgt_vocab)

    def forward(self, src, src_len, dec):
        pad = torch.arange(src.shape[1])[None, :] >= src_len[:, None]
        x = self.pos(self.src_embed(src) * self.hidden**0.5)
        for block in self.encoder:
            x = block(x, pad_mask=pad)
        t = dec.shape[1]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool), 1)
        y = self.pos(self.tgt_embed(dec) * self.hidden**0.5)
        for block in self.decoder:
            y = block(y, self_mask=causal, memory=x, memory_pad_mask=pad)
        return self.out(y)


def packed(x) -> np.ndarray:
    """dlrun's named translation inputs as one row per pair, [source (T) | its valid length |
    decoder input (T)], the layout the PyTorch models below slice; an array stays as it is."""
    if not isinstance(x, dict):
        return x
    return np.concatenate([x["src"], x["src_len"][:, None], x["dec"]], axis=1)


def run_sequence(model: str, cfg, data, epochs: int) -> dict:
    """The GRU language model or seq2seq as the book trains them: shuffled minibatches, the
    mean cross-entropy over (valid) tokens, gradients clipped to norm 1; tokens as dlrun counts them."""
    torch.manual_seed(cfg.seed)
    batch_size = cfg.data.batch_size
    x, y = torch.from_numpy(packed(data.x_train).astype(np.int64)), torch.from_numpy(data.y_train.astype(np.int64))
    if model == "gru_lm":
        net = GRULM(data.num_classes, cfg.model.hidden)
        optimizer = torch.optim.SGD(net.parameters(), lr=cfg.optimizer.lr)

        def loss_of(xb, yb):
            return nn.functional.cross_entropy(net(xb).reshape(-1, data.num_classes), yb.reshape(-1))
    else:
        m, t = cfg.model, cfg.data.num_steps
        if model == "transformer":
            net = Transformer(len(data.meta["src_vocab"]), data.num_classes, m.hidden, m.ffn_hidden, m.heads, m.blocks, m.dropout)
            forward = lambda xb: net(xb[:, :t], xb[:, t], xb[:, t + 1 :])  # noqa: E731
        else:
            net = Seq2Seq(len(data.meta["src_vocab"]), data.num_classes, m.embed, m.hidden, m.layers, m.dropout)
            forward = lambda xb: net(xb[:, :t], xb[:, t + 1 :])  # noqa: E731
        optimizer = torch.optim.Adam(net.parameters(), lr=cfg.optimizer.lr)

        def loss_of(xb, yb):
            total, count = masked_loss_sum(forward(xb), yb)
            return total / count
    n_batches = -(-len(x) // batch_size)  # the last, partial batch too, as the book's loaders keep it
    seconds = timed_epochs(net, optimizer, loss_of, x, y, batch_size, n_batches, epochs, cfg.optimizer.clip_norm)
    net.eval()
    with torch.no_grad():
        xv, yv = torch.from_numpy(packed(data.x_val).astype(np.int64)), torch.from_numpy(data.y_val.astype(np.int64))
        if model == "gru_lm":
            val_acc = float((net(xv).argmax(-1) == yv).float().mean())
        else:
            t = cfg.data.num_steps
            hits = (forward(xv).argmax(-1) == yv[:, :-1]).float()
            mask = (torch.arange(t)[None, :] < yv[:, -1:]).float()
            val_acc = float((hits * mask).sum() / mask.sum())
    return {"epoch_seconds": seconds, "compile_seconds": 0.0, "val_acc": val_acc, "torch": torch.__version__,
            "threads": torch.get_num_threads()}
