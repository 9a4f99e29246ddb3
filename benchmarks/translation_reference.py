"""Validation loss of the translation models: dlrun against the book's own PyTorch code, same data.

For each config (seq2seq, bahdanau, transformer by default), dlrun trains it as `dlrun train`
would; then the book's 1.0-edition PyTorch models (`torch_reference.Seq2Seq`, `Transformer`
and `BookBahdanau` below, written as the book writes them: `nn.LazyLinear` layers left at
PyTorch's default init, `init_seq2seq`'s Xavier weights elsewhere) train on the very same
arrays with the config's hyperparameters, the book's loop (shuffled batches of 128 with the last
partial one, Adam, gradients clipped to norm 1). After every epoch both report the validation
loss as dlrun does (masked cross-entropy summed over all valid tokens of the held-out pairs,
divided by their count); PyTorch's is also reported the way the book's plots average it (the
mean of the per-batch means, so the 129th pair weighs as much as the other 128 together).

    DLRUN_DATA_DIR=../shared/data python benchmarks/translation_reference.py
    DLRUN_DATA_DIR=../shared/data python benchmarks/translation_reference.py --configs bahdanau --seeds 0,1,2

Writes benchmarks/results/translation-<machine>-<date>.json and .md. Needs torch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import ROOT, machine_name, versions  # noqa: E402
from torch_reference import Seq2Seq, Transformer, init_seq2seq, masked_loss_sum, packed, timed_epochs  # noqa: E402


def masked_softmax(scores, valid_len):
    """Softmax over the last axis; keys at or beyond each row's valid length get -1e6 first."""
    mask = torch.arange(scores.shape[-1])[None, None, :] < valid_len[:, None, None]
    return nn.functional.softmax(scores.masked_fill(~mask, -1e6), dim=-1)


class AdditiveAttention(nn.Module):
    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.W_k, self.W_q = nn.LazyLinear(hidden, bias=False), nn.LazyLinear(hidden, bias=False)
        self.w_v, self.dropout = nn.LazyLinear(1, bias=False), nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_len):
        features = torch.tanh(self.W_q(queries).unsqueeze(2) + self.W_k(keys).unsqueeze(1))
        weights = masked_softmax(self.w_v(features).squeeze(-1), valid_len)
        return torch.bmm(self.dropout(weights), values)


class BookBahdanau(nn.Module):
    """D2L 11.4 (1.0): the seq2seq GRU encoder; a decoder whose top-layer state queries the
    encoder outputs through additive attention at each step, [context; embedding] into its GRU."""

    def __init__(self, src_vocab: int, tgt_vocab: int, embed: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.enc_embed, self.encoder = nn.Embedding(src_vocab, embed), nn.GRU(embed, hidden, layers, dropout=dropout)
        self.attention = AdditiveAttention(hidden, dropout)
        self.dec_embed = nn.Embedding(tgt_vocab, embed)
        self.decoder = nn.GRU(embed + hidden, hidden, layers, dropout=dropout)
        self.dense = nn.LazyLinear(tgt_vocab)
        self.apply(init_seq2seq)

    def forward(self, src, src_len, dec):
        enc_out, state = self.encoder(self.enc_embed(src.T))
        enc_out, outputs = enc_out.permute(1, 0, 2), []
        for x in self.dec_embed(dec.T):
            context = self.attention(state[-1].unsqueeze(1), enc_out, enc_out, src_len)
            out, state = self.decoder(torch.cat([context, x.unsqueeze(1)], dim=-1).permute(1, 0, 2), state)
            outputs.append(out)
        return self.dense(torch.cat(outputs, dim=0)).permute(1, 0, 2)


def book_model(cfg, data) -> tuple[nn.Module, callable]:
    """The book's PyTorch model for `cfg`, and its forward from dlrun's packed inputs."""
    m, t, src_vocab = cfg.model, cfg.data.num_steps, len(data.meta["src_vocab"])
    if m.name == "transformer":
        net = Transformer(src_vocab, data.num_classes, m.hidden, m.ffn_hidden, m.heads, m.blocks, m.dropout)
        return net, lambda xb: net(xb[:, :t], xb[:, t], xb[:, t + 1 :])
    if m.name == "bahdanau":
        net = BookBahdanau(src_vocab, data.num_classes, m.embed, m.hidden, m.layers, m.dropout)
        return net, lambda xb: net(xb[:, :t], xb[:, t], xb[:, t + 1 :])
    net = Seq2Seq(src_vocab, data.num_classes, m.embed, m.hidden, m.layers, m.dropout)
    return net, lambda xb: net(xb[:, :t], xb[:, t + 1 :])


def train_book(cfg, data, seed: int) -> list[dict]:
    """The book's loop on dlrun's arrays; per epoch the train loss (mean over batches) and the
    validation loss over tokens and as the book's plot averages it."""
    torch.manual_seed(seed)
    as_tensor = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    x, y, xv, yv = map(as_tensor, (packed(data.x_train), data.y_train, packed(data.x_val), data.y_val))
    net, forward = book_model(cfg, data)
    with torch.no_grad():
        forward(x[:2])  # gives the lazy layers their shapes
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.optimizer.lr)
    b, rows = cfg.data.batch_size, []

    def loss_of(xb, yb):
        total, count = masked_loss_sum(forward(xb), yb)
        return total / count

    def evaluate(train_loss: float) -> None:
        net.eval()
        with torch.no_grad():
            sums = [masked_loss_sum(forward(xv[i : i + b]), yv[i : i + b]) for i in range(0, len(xv), b)]
        rows.append({"train": train_loss, "val": float(sum(s for s, _ in sums) / sum(n for _, n in sums)),
                     "val_book_average": statistics.fmean(float(s / n) for s, n in sums)})

    timed_epochs(net, optimizer, loss_of, x, y, b, -(-len(x) // b), cfg.trainer.epochs, cfg.optimizer.clip_norm,
                 warmup=False, on_epoch=evaluate)
    return rows


def train_dlrun(cfg, data) -> list[dict]:
    import dlrun

    with tempfile.TemporaryDirectory() as out:
        result = dlrun.train(cfg, Path(out) / cfg.name, data=data, plot=False)
    return [{"train": r["train/loss"], "val": r["val/loss"]} for r in result.rows]


def compare(name: str, seeds: list[int], epochs: int | None) -> dict:
    from dlrun.core.config import load_config
    from dlrun.core.data.registry import load_dataset

    runs = {"dlrun": [], "book_pytorch": []}
    for seed in seeds:
        cfg = load_config(ROOT / "configs" / f"{name}.yaml", [f"seed={seed}"] + ([f"trainer.epochs={epochs}"] if epochs else []))
        data = load_dataset(cfg.data, cfg.seed)
        runs["dlrun"].append(train_dlrun(cfg, data))
        runs["book_pytorch"].append(train_book(cfg, data, seed))
        print(f"{name} seed {seed}: dlrun val {runs['dlrun'][-1][-1]['val']:.3f}, "
              f"book's PyTorch val {runs['book_pytorch'][-1][-1]['val']:.3f}", flush=True)
    book = cfg.book.reported if cfg.book is not None else None
    return {"config": name, "seeds": seeds, "epochs": cfg.trainer.epochs, "book_reported": book, "runs": runs}


def mean_curve(rows_per_seed: list[list[dict]], key: str) -> list[float]:
    return [statistics.fmean(rows[e][key] for rows in rows_per_seed) for e in range(len(rows_per_seed[0]))]


def to_markdown(results: list[dict], header: str) -> str:
    lines = [header, "", "| config | implementation | train loss | val loss (final) | val loss (min) | "
             "val loss, the book's averaging (final) | book (final val) |", "|---|---|---|---|---|---|---|"]
    for r in results:
        for impl, label in (("dlrun", "dlrun"), ("book_pytorch", "the book's PyTorch code")):
            val, train = mean_curve(r["runs"][impl], "val"), mean_curve(r["runs"][impl], "train")
            book_avg = f"{mean_curve(r['runs'][impl], 'val_book_average')[-1]:.3f}" if impl == "book_pytorch" else "-"
            reported = "-" if r["book_reported"] is None else "-".join(f"{v:.2f}" for v in sorted(set(r["book_reported"])))
            lines.append(f"| {r['config']} | {label} | {train[-1]:.3f} | {val[-1]:.3f} | {min(val):.3f} | {book_avg} | {reported} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="seq2seq,bahdanau,transformer", help="config names under configs/")
    parser.add_argument("--seeds", default="0", help="comma-separated; the table shows the mean over seeds")
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.epochs (default: the config's)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    args = parser.parse_args()
    import jax

    seeds = [int(s) for s in args.seeds.split(",")]
    results = [compare(name, seeds, args.epochs) for name in args.configs.split(",")]
    v = versions()
    header = (f"{machine_name(jax)}, " + ", ".join(f"{k} {val}" for k, val in v.items()) +
              f". English-French, each config's data and hyperparameters; mean over seeds {args.seeds}.")
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"translation-{machine_name(jax)}-{date.today().isoformat()}"
    stem.with_suffix(".json").write_text(json.dumps({"versions": v, "results": results}, indent=1))
    table = to_markdown(results, header)
    stem.with_suffix(".md").write_text(table)
    print(table + f"written: {stem}.json, {stem}.md")


if __name__ == "__main__":
    main()
