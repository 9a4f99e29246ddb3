"""The PyTorch side of the GPU check: the networks of configs/resnet.yaml (ResNet-18 of
`torch_reference.Residual` blocks) and configs/transformer.yaml (`torch_reference.Transformer`),
trained step by step on the arrays dlrun trains on, on the GPU when PyTorch sees one, in float32
or under `torch.autocast(dtype=torch.bfloat16)`. Each step gathers its batch on the device, as
dlrun's does; ResNet's inputs are resized there per batch (bilinear), as dlrun's input pipeline
resizes them; the Transformer's masks are made there too (`torch_reference` makes them on the
CPU). Imported only when torch is installed."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn
from torch_reference import Residual, Transformer, packed


class DeviceTransformer(Transformer):
    """`torch_reference.Transformer` with its padding and causal masks made on its inputs' device."""

    def forward(self, src, src_len, dec):
        pad = torch.arange(src.shape[1], device=src.device)[None, :] >= src_len[:, None]
        x = self.pos(self.src_embed(src) * self.hidden**0.5)
        for block in self.encoder:
            x = block(x, pad_mask=pad)
        t = dec.shape[1]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=dec.device), 1)
        y = self.pos(self.tgt_embed(dec) * self.hidden**0.5)
        for block in self.decoder:
            y = block(y, self_mask=causal, memory=x, memory_pad_mask=pad)
        return self.out(y)


def masked_mean(logits, yb):
    """The cross-entropy's mean over each target's valid tokens; `yb` holds the labels, then the
    valid length (dlrun's translation layout, as `torch_reference.masked_loss_sum` reads it)."""
    labels, valid = yb[:, :-1], yb[:, -1]
    mask = (torch.arange(labels.shape[1], device=yb.device)[None, :] < valid[:, None]).float()
    per_token = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    return (per_token.reshape(labels.shape) * mask).sum() / mask.sum()


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def environment() -> dict:
    """PyTorch's device and the TF32 settings its float32 rows ran under."""
    return {"torch_device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
            "torch_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "torch_cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "torch_cudnn_benchmark": torch.backends.cudnn.benchmark}


def resnet(model_cfg, in_channels: int = 1, classes: int = 10) -> nn.Module:
    """D2L 8.6's ResNet as a dlrun `resnet` model section with the book's stem (conv 7x7/2 p3, BN,
    ReLU, max-pool 3/2 p1) describes it: per stage, blocks of its channels, the first of each
    stage after the first with stride 2; global average pooling; dense out. Xavier weights, zero
    biases, as dlrun's `init: xavier`."""
    if model_cfg.stem != "imagenet":
        raise ValueError(f"the PyTorch ResNet has the book's stem only, not {model_cfg.stem!r}")
    c_in = model_cfg.stages[0][0]
    layers = [nn.Conv2d(in_channels, c_in, kernel_size=7, stride=2, padding=3), nn.BatchNorm2d(c_in), nn.ReLU(),
              nn.MaxPool2d(kernel_size=3, stride=2, padding=1)]
    for i, (channels, blocks) in enumerate(model_cfg.stages):
        for b in range(blocks):
            layers.append(Residual(c_in, channels, stride=2 if i and not b else 1))
            c_in = channels
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, classes))
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return net


def train(name: str, cfg, data, steps: int, warmup: int, bf16: bool) -> dict:
    """`steps` training steps of config `name`'s network (resnet or transformer) on `data`;
    examples/s over the steps after `warmup`."""
    dev = device()
    torch.manual_seed(cfg.seed)
    if name == "resnet":
        x = torch.from_numpy(np.ascontiguousarray(data.x_train.transpose(0, 3, 1, 2))).to(dev)
        y = torch.from_numpy(data.y_train.astype(np.int64)).to(dev)
        net = resnet(cfg.model, x.shape[1], data.num_classes).to(dev)
        side, loss_fn = cfg.data.resize, nn.CrossEntropyLoss()

        def loss_of(xb, yb):
            if side and xb.shape[-1] != side:
                xb = nn.functional.interpolate(xb, size=(side, side), mode="bilinear", align_corners=False)
            return loss_fn(net(xb), yb)

        optimizer = torch.optim.SGD(net.parameters(), lr=cfg.optimizer.lr)
    elif name == "transformer":
        x = torch.from_numpy(packed(data.x_train).astype(np.int64)).to(dev)
        y = torch.from_numpy(data.y_train.astype(np.int64)).to(dev)
        m, t = cfg.model, cfg.data.num_steps
        net = DeviceTransformer(len(data.meta["src_vocab"]), data.num_classes, m.hidden, m.ffn_hidden, m.heads, m.blocks,
                                m.dropout).to(dev)

        def loss_of(xb, yb):
            return masked_mean(net(xb[:, :t], xb[:, t], xb[:, t + 1 :]), yb)

        optimizer = torch.optim.Adam(net.parameters(), lr=cfg.optimizer.lr)
    else:
        raise ValueError(f"no PyTorch network for config {name!r}")
    return timed_steps(net, optimizer, loss_of, x, y, cfg.data.batch_size, steps, warmup, bf16,
                       cfg.optimizer.clip_norm) | {"params": sum(p.numel() for p in net.parameters())}


def timed_steps(net, optimizer, loss_of, x, y, batch_size: int, steps: int, warmup: int, bf16: bool,
                clip_norm: float | None = None) -> dict:
    """The book's training step, `steps` times, on batches of shuffled epochs (the last partial
    batch left out); the first `warmup` untimed."""
    dev = x.device
    per_epoch = len(x) // batch_size
    order = torch.cat([torch.randperm(len(x), device=dev)[: per_epoch * batch_size].view(per_epoch, batch_size)
                       for _ in range(-(-steps // per_epoch))])
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    net.train()
    losses = []

    def step(i):
        idx = order[i]
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_of(x[idx], y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm:
            nn.utils.clip_grad_norm_(net.parameters(), clip_norm)
        optimizer.step()
        losses.append(loss.detach())

    for i in range(warmup):
        step(i)
    synchronize(dev)
    t = time.perf_counter()
    for i in range(warmup, steps):
        step(i)
    synchronize(dev)
    seconds = time.perf_counter() - t
    return {"device": str(dev), "steps": steps, "warmup": warmup, "batch_size": batch_size,
            "steps_per_second": (steps - warmup) / seconds, "examples_per_second": (steps - warmup) * batch_size / seconds,
            "losses": torch.stack(losses).float().cpu().tolist(),
            "device_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None}


def synchronize(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def finite(losses: list[float]) -> bool:
    return all(math.isfinite(v) for v in losses)
