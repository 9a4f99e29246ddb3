"""PyTorch references of chapter 15's classifiers for the speed benchmark, written as the book
writes them (eager, `nn.Module`, `nn.LSTM`, `nn.Conv1d`, `torch.optim.Adam`): the BiRNN (D2L
15.2) and textCNN (15.3) of sentiment analysis, decomposable attention for natural language
inference (15.5) and the BERT classifier fine-tuned for it (15.7, its encoder the one of
`nlp_reference.py`). Each trains on the very arrays dlrun's loaders make (token ids, named
inputs, labels, gathered per batch from tensors already in memory), as many examples an epoch as
dlrun's loop trains, so that only the training loop is compared. `benchmarks/speed.py` runs them
in their own processes against dlrun's configs of the same networks
(configs/sentiment_birnn_cpu.yaml, sentiment_textcnn_cpu.yaml, nli_decomposable_cpu.yaml and the
fine-tuning run of bert_snli_cpu.yaml, which `speed_models.bert_classifier_setup` makes without its
pretraining); tests/test_nlp_tasks_reference.py checks them against dlrun's with the same weights.

Where the book's code and dlrun's networks differ, these follow dlrun's: the loss is the batch's
mean cross-entropy (the book sums it over the batch: Adam's steps are blind to the factor but for
its epsilon), and the LSTM has one bias per gate (the sum of PyTorch's two at the start; its
`bias_hh` stays zero and untrained), so that both sides train the same parameters."""

from __future__ import annotations

import numpy as np
import torch
from nlp_reference import as_tensors, bert_net, train_on
from torch import nn

EVAL_BATCH = 1024  # examples per forward pass of the validation accuracy (dlrun's evaluation batch)


# ------------------------------------------------------------------ BiRNN (D2L 15.2)


class BiRNN(nn.Module):
    """The book's BiRNN: embedding, a bidirectional `nn.LSTM`, the outputs at the first and last
    time steps concatenated (4 num_hiddens), a dense decoder."""

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, num_outputs=2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.encoder = nn.LSTM(embed_size, num_hiddens, num_layers=num_layers, bidirectional=True)
        self.decoder = nn.Linear(4 * num_hiddens, num_outputs)

    def forward(self, inputs):  # inputs (batch, steps) -> logits (batch, outputs)
        embeddings = self.embedding(inputs.T)  # time first, as nn.LSTM takes it
        self.encoder.flatten_parameters()
        outputs, _ = self.encoder(embeddings)
        encoding = torch.cat((outputs[0], outputs[-1]), dim=1)
        return self.decoder(encoding)


def init_weights(module):
    """The book's `init_weights` of 15.2 and 15.3: Xavier-uniform dense, convolution and LSTM
    weights; biases stay PyTorch's defaults."""
    if type(module) in (nn.Linear, nn.Conv1d):
        nn.init.xavier_uniform_(module.weight)
    if type(module) == nn.LSTM:
        for param in module._flat_weights_names:
            if "weight" in param:
                nn.init.xavier_uniform_(module._parameters[param])


def one_bias_per_gate(lstm: nn.LSTM) -> None:
    """dlrun's LSTM cell has one bias per gate, b_ih + b_hh as PyTorch draws them: fold b_hh into
    b_ih and keep it at zero, untrained (its gradient is b_ih's, so training both would move
    the sum twice as fast under Adam, and count 4 H parameters more per direction and layer)."""
    with torch.no_grad():
        for name, p in lstm.named_parameters():
            if name.startswith("bias_hh"):
                lstm.get_parameter(name.replace("bias_hh", "bias_ih")).add_(p)
                p.zero_().requires_grad_(False)


def birnn_net(m, vocab: int, num_outputs: int) -> BiRNN:
    """The `BiRNN` of a dlrun `birnn` model section, initialised as the book's (the embedding
    N(0, 1), nn.Embedding's default; untrained when dlrun freezes pretrained vectors)."""
    net = BiRNN(vocab, m.embed_size, m.hidden, m.layers, num_outputs)
    net.apply(init_weights)
    one_bias_per_gate(net.encoder)
    if m.embedding is not None and m.embedding.freeze:
        net.embedding.weight.requires_grad_(False)
    return net


def run_birnn(cfg, data, epochs: int) -> dict:
    """The BiRNN trained as the book trains it (Adam, cross-entropy) on dlrun's token ids."""
    torch.manual_seed(cfg.seed)
    net = birnn_net(cfg.model, len(data.meta["vocab"]), data.num_classes)
    return run_classifier(net, lambda x: net(x["x"]), cfg, data, epochs)


# ------------------------------------------------------------------ textCNN (D2L 15.3)


class TextCNN(nn.Module):
    """The book's textCNN: a trained and a constant embedding concatenated (2 embed_size
    channels), a `nn.Conv1d` per kernel size, pooling over time and ReLU, dropout, a dense
    decoder. `pool` max is the max-over-time pooling of the text (dlrun's default), avg the
    PyTorch tab's `AdaptiveAvgPool1d`."""

    def __init__(self, vocab_size, embed_size, kernel_sizes, num_channels, dropout=0.5, pool="max", num_outputs=2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        # the constant embedding is not trained (the book's requires_grad = False)
        self.constant_embedding = nn.Embedding(vocab_size, embed_size)
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(sum(num_channels), num_outputs)
        self.pool = nn.AdaptiveMaxPool1d(1) if pool == "max" else nn.AdaptiveAvgPool1d(1)
        self.relu = nn.ReLU()
        self.convs = nn.ModuleList()
        for c, k in zip(num_channels, kernel_sizes):
            self.convs.append(nn.Conv1d(2 * embed_size, c, k))

    def forward(self, inputs):  # inputs (batch, steps) -> logits (batch, outputs)
        embeddings = torch.cat((self.embedding(inputs), self.constant_embedding(inputs)), dim=2)
        embeddings = embeddings.permute(0, 2, 1)  # channels first, as nn.Conv1d takes them
        encoding = torch.cat([torch.squeeze(self.relu(self.pool(conv(embeddings))), dim=-1) for conv in self.convs], dim=1)
        return self.decoder(self.dropout(encoding))


def textcnn_net(m, vocab: int, num_outputs: int) -> TextCNN:
    """The `TextCNN` of a dlrun `textcnn` model section, initialised as the book's (both
    embeddings their own N(0, 1) draws, as dlrun's)."""
    net = TextCNN(vocab, m.embed_size, m.kernel_sizes, m.channels, m.dropout, m.pool, num_outputs)
    net.apply(init_weights)
    net.constant_embedding.weight.requires_grad = False
    return net


def run_textcnn(cfg, data, epochs: int) -> dict:
    """textCNN trained as the book trains it (Adam, cross-entropy) on dlrun's token ids."""
    torch.manual_seed(cfg.seed)
    net = textcnn_net(cfg.model, len(data.meta["vocab"]), data.num_classes)
    return run_classifier(net, lambda x: net(x["x"]), cfg, data, epochs)


# ------------------------------------------------------------------ decomposable attention (D2L 15.5)


def mlp(num_inputs, num_hiddens, flatten, dropout=0.2):
    """The book's `mlp`: dropout, dense, ReLU, twice (its flatten a no-op on (batch, features))."""
    net = []
    net.append(nn.Dropout(dropout))
    net.append(nn.Linear(num_inputs, num_hiddens))
    net.append(nn.ReLU())
    if flatten:
        net.append(nn.Flatten(start_dim=1))
    net.append(nn.Dropout(dropout))
    net.append(nn.Linear(num_hiddens, num_hiddens))
    net.append(nn.ReLU())
    if flatten:
        net.append(nn.Flatten(start_dim=1))
    return nn.Sequential(*net)


class Attend(nn.Module):
    def __init__(self, num_inputs, num_hiddens, dropout):
        super().__init__()
        self.f = mlp(num_inputs, num_hiddens, flatten=False, dropout=dropout)

    def forward(self, A, B):
        f_A = self.f(A)
        f_B = self.f(B)
        e = torch.bmm(f_A, f_B.permute(0, 2, 1))  # (batch, T_a, T_b)
        beta = torch.bmm(nn.functional.softmax(e, dim=-1), B)
        alpha = torch.bmm(nn.functional.softmax(e.permute(0, 2, 1), dim=-1), A)
        return beta, alpha


class Compare(nn.Module):
    def __init__(self, num_inputs, num_hiddens, dropout):
        super().__init__()
        self.g = mlp(num_inputs, num_hiddens, flatten=False, dropout=dropout)

    def forward(self, A, B, beta, alpha):
        V_A = self.g(torch.cat([A, beta], dim=2))
        V_B = self.g(torch.cat([B, alpha], dim=2))
        return V_A, V_B


class Aggregate(nn.Module):
    def __init__(self, num_inputs, num_hiddens, num_outputs, dropout):
        super().__init__()
        self.h = mlp(num_inputs, num_hiddens, flatten=True, dropout=dropout)
        self.linear = nn.Linear(num_hiddens, num_outputs)

    def forward(self, V_A, V_B):
        V_A = V_A.sum(dim=1)
        V_B = V_B.sum(dim=1)
        return self.linear(self.h(torch.cat([V_A, V_B], dim=1)))


class DecomposableAttention(nn.Module):
    """The book's `DecomposableAttention`; padding is embedded, attended to and summed like any
    other token, as in the book and dlrun (no mask). PyTorch's default initialisation, dlrun's."""

    def __init__(self, vocab_size, embed_size, num_hiddens, dropout=0.2, num_outputs=3):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.attend = Attend(embed_size, num_hiddens, dropout)
        self.compare = Compare(2 * embed_size, num_hiddens, dropout)
        self.aggregate = Aggregate(2 * num_hiddens, num_hiddens, num_outputs, dropout)

    def forward(self, X):
        premises, hypotheses = X
        A = self.embedding(premises)
        B = self.embedding(hypotheses)
        beta, alpha = self.attend(A, B)
        V_A, V_B = self.compare(A, B, beta, alpha)
        return self.aggregate(V_A, V_B)


def decomposable_net(m, vocab: int, num_outputs: int) -> DecomposableAttention:
    """The `DecomposableAttention` of a dlrun `decomposable_attention` model section."""
    return DecomposableAttention(vocab, m.embed_size, m.num_hiddens, m.dropout, num_outputs)


def run_decomposable(cfg, data, epochs: int) -> dict:
    """Decomposable attention trained as the book trains it (Adam, cross-entropy) on dlrun's
    premise and hypothesis ids."""
    torch.manual_seed(cfg.seed)
    net = decomposable_net(cfg.model, len(data.meta["vocab"]), data.num_classes)
    return run_classifier(net, lambda x: net((x["premise"], x["hypothesis"])), cfg, data, epochs)


# ------------------------------------------------------------------ BERT fine-tuned (D2L 15.7)


class BERTClassifier(nn.Module):
    """The book's `BERTClassifier`: a BERTModel's encoder and NSP hidden layer, a new dense
    output (`nn.Linear` of known inputs in place of its `nn.LazyLinear`)."""

    def __init__(self, bert, num_hiddens, num_outputs=3):
        super().__init__()
        self.encoder = bert.encoder
        self.hidden = bert.hidden
        self.output = nn.Linear(num_hiddens, num_outputs)

    def forward(self, inputs):
        tokens_X, segments_X, valid_lens_x = inputs
        encoded_X = self.encoder(tokens_X, segments_X, valid_lens_x)
        return self.output(self.hidden(encoded_X[:, 0, :]))


def bert_classifier_net(m, vocab: int, num_outputs: int) -> BERTClassifier:
    """The `BERTClassifier` of a dlrun `bert_classifier` model section, from a fresh BERTModel
    (dlrun's `scratch` run; a fine-tuned run starts from pretrained weights, the same network).
    Attention biases start at zero, as dlrun's."""
    net = BERTClassifier(bert_net(m, vocab), m.num_hiddens, num_outputs)
    for blk in net.encoder.blks:
        for w in (blk.attention.W_q, blk.attention.W_k, blk.attention.W_v, blk.attention.W_o):
            nn.init.zeros_(w.bias)
    return net


def run_bert_classifier(cfg, data, epochs: int) -> dict:
    """The BERT classifier fine-tuned as the book fine-tunes it (Adam, cross-entropy) on dlrun's
    `snli_bert` pairs (tokens, segments, valid lengths)."""
    torch.manual_seed(cfg.seed)
    net = bert_classifier_net(cfg.model, len(data.meta["vocab"]), data.num_classes)
    return run_classifier(net, lambda x: net((x["tokens"], x["segments"], x["valid_lens"])), cfg, data, epochs)


# ------------------------------------------------------------------ the training run


def named_tensors(x) -> dict:
    """dlrun's inputs as named tensors: a plain array of ids is `x`."""
    return as_tensors(x if isinstance(x, dict) else {"x": x})


def epoch_batches(data, batch_size: int) -> tuple[int, int]:
    """(batches, examples) of an epoch, as dlrun's sampling walks the set: whole batches, or
    with `drop_last` False (SNLI's, as the book's loaders) a last, partial batch too."""
    n = data.num_train
    if data.sampling.drop_last or n % batch_size == 0:
        return n // batch_size, n // batch_size * batch_size
    return -(-n // batch_size), n


def accuracy(forward, x: dict, y: torch.Tensor) -> float:
    """The fraction of examples whose largest logit is their label, in batches of EVAL_BATCH."""
    hits = torch.zeros(())
    with torch.no_grad():
        for i in range(0, len(y), EVAL_BATCH):
            logits = forward({k: v[i : i + EVAL_BATCH] for k, v in x.items()})
            hits += (logits.argmax(dim=1) == y[i : i + EVAL_BATCH]).sum()
    return float(hits) / len(y)


def adam(net: nn.Module, cfg) -> torch.optim.Adam:
    """`torch.optim.Adam` with the config's lr, betas and epsilon (Adam's default 1e-8 when it
    gives none, as dlrun's); the untrained tables get no gradient, so Adam leaves them.

    Raises:
        ValueError: a config that trains otherwise (another optimizer, weight decay, clipping,
            a schedule, another loss), which the reference does not follow.
    """
    o = cfg.optimizer
    if o.name != "adam" or o.weight_decay or o.clip_norm or o.groups or o.schedule.name != "constant":
        raise ValueError(f"the reference trains with constant-rate Adam; the config asks for {o}")
    if cfg.loss.name != "cross_entropy" or cfg.loss.l2_penalty:
        raise ValueError(f"the reference's loss is the mean cross-entropy; the config asks for {cfg.loss}")
    return torch.optim.Adam(net.parameters(), lr=o.lr, betas=(o.b1, o.b2), eps=o.eps if o.eps is not None else 1e-8)


def run_classifier(net: nn.Module, forward, cfg, data, epochs: int) -> dict:
    """One warm-up epoch, then `epochs` timed ones of shuffled batches, each step the batch's
    mean cross-entropy (`nn.CrossEntropyLoss`) and an `adam` step; then the validation accuracy
    in evaluation mode (no dropout). `forward(named tensors) -> logits`."""
    optimizer = adam(net, cfg)
    loss = nn.CrossEntropyLoss()
    batch = cfg.data.batch_size
    n_batches, examples = epoch_batches(data, batch)
    x, y = named_tensors(data.x_train), as_tensors({"label": data.y_train})
    seconds, losses = train_on(net, optimizer, lambda xb, yb: loss(forward(xb), yb["label"]), x, y, batch, n_batches, epochs)
    net.eval()
    val_acc = None
    if len(data.y_val):
        val_acc = accuracy(forward, named_tensors(data.x_val), torch.from_numpy(data.y_val.astype(np.int64)))
    return {"epoch_seconds": seconds, "compile_seconds": 0.0, "val_acc": val_acc, "train_loss": losses[-1],
            "examples_trained": examples, "torch": torch.__version__, "threads": torch.get_num_threads()}
