"""PyTorch references of chapter 13's trained networks for the speed benchmark, written as the
book writes them (NCHW, eager, its loss and target assignment per step): TinySSD with anchor
labelling (D2L 13.4, 13.7) and the FCN (D2L 13.11). `benchmarks/speed.py` runs them in their own
processes against dlrun's configs of the same networks."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch_reference import timed_epochs

# ------------------------------------------------------------------ anchors (D2L 13.4), batched as the book's


def multibox_prior(height: int, width: int, sizes, ratios) -> torch.Tensor:
    """(height * width * (len(sizes) + len(ratios) - 1), 4) corner anchors centred on each pixel."""
    size, ratio = torch.tensor(sizes), torch.tensor(ratios)
    centre_h = (torch.arange(height) + 0.5) / height
    centre_w = (torch.arange(width) + 0.5) / width
    shift_y, shift_x = torch.meshgrid(centre_h, centre_w, indexing="ij")
    w = torch.cat((size * torch.sqrt(ratio[0]), sizes[0] * torch.sqrt(ratio[1:]))) * height / width
    h = torch.cat((size / torch.sqrt(ratio[0]), sizes[0] / torch.sqrt(ratio[1:])))
    half = torch.stack((-w, -h, w, h)).T.repeat(height * width, 1) / 2
    centres = torch.stack([shift_x.reshape(-1), shift_y.reshape(-1)] * 2, dim=1).repeat_interleave(len(w), dim=0)
    return centres + half


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    upper_left = torch.max(a[:, None, :2], b[:, :2])
    lower_right = torch.min(a[:, None, 2:], b[:, 2:])
    inter = (lower_right - upper_left).clamp(min=0).prod(dim=2)
    return inter / (area(a)[:, None] + area(b) - inter)


def assign(truth: torch.Tensor, anchors: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Each anchor's ground-truth box index or -1: the largest IoUs first, then the threshold."""
    iou = box_iou(anchors, truth)
    best, index = iou.max(dim=1)
    assigned = torch.where(best >= threshold, index, torch.full_like(index, -1))
    iou = iou.clone()
    for _ in range(truth.shape[0]):
        at = torch.argmax(iou)
        row, col = at // truth.shape[0], at % truth.shape[0]
        assigned[row] = col
        iou[:, col], iou[row, :] = -1, -1
    return assigned


def to_centre(b: torch.Tensor) -> torch.Tensor:
    return torch.stack(((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]), dim=1)


def multibox_target(anchors: torch.Tensor, labels: torch.Tensor):
    """Offsets, their mask and classes of every anchor for labels (batch, m, 5) [class, corners]."""
    offsets, masks, classes = [], [], []
    for label in labels:
        valid = label[label[:, 0] >= 0]
        index = assign(valid[:, 1:], anchors)
        mask = (index >= 0).float()[:, None].repeat(1, 4)
        cls = torch.zeros(len(anchors), dtype=torch.long)
        boxes = torch.zeros(len(anchors), 4)
        hit = index >= 0
        cls[hit] = valid[index[hit], 0].long() + 1
        boxes[hit] = valid[index[hit], 1:]
        a, g = to_centre(anchors), to_centre(boxes)
        off = torch.cat((10 * (g[:, :2] - a[:, :2]) / a[:, 2:], 5 * torch.log(1e-6 + g[:, 2:] / a[:, 2:])), dim=1)
        offsets.append((off * mask).reshape(-1))
        masks.append(mask.reshape(-1))
        classes.append(cls)
    return torch.stack(offsets), torch.stack(masks), torch.stack(classes)


# ------------------------------------------------------------------ TinySSD (D2L 13.7)

SIZES = [[0.2, 0.272], [0.37, 0.447], [0.54, 0.619], [0.71, 0.79], [0.88, 0.961]]
RATIOS = [1, 2, 0.5]


def down_sample(c_in: int, c_out: int) -> nn.Sequential:
    layers = []
    for c in (c_in, c_out):
        layers += [nn.Conv2d(c, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class TinySSD(nn.Module):
    def __init__(self, num_classes: int, base=(16, 32, 64), widths=(128, 128, 128)):
        super().__init__()
        chans, outs = [3, *base], [base[-1], *widths]
        self.num_classes = num_classes
        self.blocks = nn.ModuleList([nn.Sequential(*[down_sample(a, b) for a, b in zip(chans, chans[1:])]),
                                     *[down_sample(a, b) for a, b in zip(outs, outs[1:])], nn.AdaptiveMaxPool2d((1, 1))])
        a = len(SIZES[0]) + len(RATIOS) - 1
        ins = [*outs, outs[-1]]
        self.cls = nn.ModuleList([nn.Conv2d(c, a * (num_classes + 1), 3, padding=1) for c in ins])
        self.bbox = nn.ModuleList([nn.Conv2d(c, a * 4, 3, padding=1) for c in ins])
        self._anchors: dict = {}

    def forward(self, x):
        anchors, cls, bbox = [], [], []
        for i, block in enumerate(self.blocks):
            x = block(x)
            key = (i, *x.shape[2:])
            if key not in self._anchors:  # the book makes them every step; they depend on the shape alone
                self._anchors[key] = multibox_prior(x.shape[2], x.shape[3], SIZES[i], RATIOS)
            anchors.append(self._anchors[key])
            cls.append(self.cls[i](x).permute(0, 2, 3, 1).flatten(1))
            bbox.append(self.bbox[i](x).permute(0, 2, 3, 1).flatten(1))
        cls = torch.cat(cls, dim=1).reshape(x.shape[0], -1, self.num_classes + 1)
        return torch.cat(anchors), cls, torch.cat(bbox, dim=1)


def ssd_loss(cls_preds, cls_labels, bbox_preds, bbox_labels, bbox_masks) -> torch.Tensor:
    """The book's calc_loss: class cross-entropy and masked L1, each a mean over anchors."""
    batch, classes = cls_preds.shape[0], cls_preds.shape[2]
    cls = nn.functional.cross_entropy(cls_preds.reshape(-1, classes), cls_labels.reshape(-1), reduction="none")
    box = nn.functional.l1_loss(bbox_preds * bbox_masks, bbox_labels * bbox_masks, reduction="none")
    return cls.reshape(batch, -1).mean(dim=1) + box.mean(dim=1)


def as_labels(boxes: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """dlrun's targets (n, m, 4) boxes and (n, m) classes as the book's (n, m, 5) labels."""
    return np.concatenate([classes[..., None].astype(np.float32), boxes.astype(np.float32)], axis=-1)


def run_ssd(cfg, data, epochs: int) -> dict:
    """TinySSD trained as the book trains it (SGD with weight decay, target assignment per batch);
    the validation class error over anchors, dlrun's `val/class_err`."""
    torch.manual_seed(cfg.seed)
    net = TinySSD(cfg.model.num_classes, tuple(cfg.model.base_widths), tuple(cfg.model.widths))
    x = torch.from_numpy(np.ascontiguousarray(data.x_train.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(as_labels(data.y_train["boxes"], data.y_train["classes"]))
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay)

    def loss_of(xb, yb):
        anchors, cls_preds, bbox_preds = net(xb)
        offsets, masks, classes = multibox_target(anchors, yb)
        return ssd_loss(cls_preds, classes, bbox_preds, offsets, masks).mean()

    batch = cfg.data.batch_size
    seconds = timed_epochs(net, optimizer, loss_of, x, y, batch, len(x) // batch, epochs)
    net.eval()
    with torch.no_grad():
        xv = torch.from_numpy(np.ascontiguousarray(data.x_val.transpose(0, 3, 1, 2)))
        anchors, cls_preds, _ = net(xv)
        _, _, classes = multibox_target(anchors, torch.from_numpy(as_labels(data.y_val["boxes"], data.y_val["classes"])))
        class_err = float((cls_preds.argmax(-1) != classes).float().mean())
    return {"epoch_seconds": seconds, "compile_seconds": 0.0, "val_acc": 1.0 - class_err, "torch": torch.__version__,
            "threads": torch.get_num_threads()}


# ------------------------------------------------------------------ FCN (D2L 13.11)


def bilinear_kernel(c_in: int, c_out: int, k: int) -> torch.Tensor:
    """The book's bilinear interpolation kernel for a transposed convolution."""
    factor = (k + 1) // 2
    centre = factor - 1 if k % 2 == 1 else factor - 0.5
    og = (torch.arange(k).reshape(-1, 1), torch.arange(k).reshape(1, -1))
    filt = (1 - torch.abs(og[0] - centre) / factor) * (1 - torch.abs(og[1] - centre) / factor)
    weight = torch.zeros((c_in, c_out, k, k))
    weight[range(c_in), range(c_out), :, :] = filt
    return weight


def upsampling(num_classes: int, stride: int) -> nn.ConvTranspose2d:
    """The transposed convolution that brings a map of 1/stride the size back to full size."""
    k, p = 2 * stride, stride // 2
    layer = nn.ConvTranspose2d(num_classes, num_classes, kernel_size=k, padding=p, stride=stride)
    layer.weight.data.copy_(bilinear_kernel(num_classes, num_classes, k))
    return layer


def pixel_loss(logits, labels) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, labels, reduction="none").mean(1).mean(1)


def run_fcn(net: nn.Module, cfg, data, epochs: int) -> dict:
    """An FCN (body, 1x1 conv, bilinear transposed conv) trained as the book trains it; pixel
    accuracy on the validation split."""
    torch.manual_seed(cfg.seed)
    x = torch.from_numpy(np.ascontiguousarray(data.x_train.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(data.y_train["mask"].astype(np.int64))
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.optimizer.lr, weight_decay=cfg.optimizer.weight_decay)
    batch = cfg.data.batch_size
    seconds = timed_epochs(net, optimizer, lambda xb, yb: pixel_loss(net(xb), yb).mean(), x, y, batch, len(x) // batch, epochs)
    net.eval()
    with torch.no_grad():
        xv = torch.from_numpy(np.ascontiguousarray(data.x_val.transpose(0, 3, 1, 2)))
        acc = float((net(xv).argmax(1).numpy() == data.y_val["mask"]).mean())
    return {"epoch_seconds": seconds, "compile_seconds": 0.0, "val_acc": acc, "torch": torch.__version__,
            "threads": torch.get_num_threads()}


class Residual(nn.Module):
    """The book's residual block: conv-BN-ReLU-conv-BN plus the input (a 1x1 conv when the shape changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, stride=stride), nn.BatchNorm2d(c_out), nn.ReLU(),
                                  nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out))
        self.project = nn.Conv2d(c_in, c_out, 1, stride=stride) if stride != 1 or c_in != c_out else None

    def forward(self, x):
        return torch.relu(self.body(x) + (x if self.project is None else self.project(x)))


def fcn_net(stages, stem: str, num_classes: int) -> nn.Module:
    """The FCN of a dlrun `fcn` model section: the ResNet body of `stages` [(channels, blocks)]
    behind its stem, a 1x1 conv to the classes, the bilinear transposed conv back to full size."""
    c0 = stages[0][0]
    if stem == "imagenet":
        layers = [nn.Conv2d(3, c0, 7, padding=3, stride=2), nn.BatchNorm2d(c0), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    else:
        layers = [nn.Conv2d(3, c0, 3, padding=1), nn.BatchNorm2d(c0), nn.ReLU()] + ([nn.MaxPool2d(2)] if stem == "small_pooled" else [])
    shrink = {"imagenet": 4, "small_pooled": 2}.get(stem, 1)
    c_in = c0
    for i, (channels, n) in enumerate(stages):
        for j in range(n):
            stride = 2 if j == 0 and i > 0 else 1
            layers.append(Residual(c_in, channels, stride))
            c_in = channels
        shrink *= 2 if i > 0 else 1
    return nn.Sequential(*layers, nn.Conv2d(c_in, num_classes, 1), upsampling(num_classes, shrink))
