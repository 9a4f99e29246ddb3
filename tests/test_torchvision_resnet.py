"""torchvision's ResNet-18 (D2L 13.2): the same logits as PyTorch's network from one state dict,
and state dict files that are not a resnet18's are refused by key."""

import jax
import numpy as np
import pytest

from dlrun.core.config import ConfigError
from dlrun.core.config.torchvision import TorchvisionResNetModel
from dlrun.core.nn import torchvision_resnet as tv
from dlrun.core.training.transfer import load_params

torch = pytest.importorskip("torch")
nn = torch.nn


class BasicBlock(nn.Module):
    """torchvision's BasicBlock, written out with its attribute names."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    """torchvision.models.resnet18, its module names and state-dict keys."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = 64
        for i, c in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(c_in, c, stride), BasicBlock(c, c, 1)))
            c_in = c
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@pytest.fixture(scope="module")
def torch_net():
    """Random weights and random BN statistics (so that the running mean and variance matter)."""
    torch.manual_seed(0)
    net = ResNet18(num_classes=7)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.fixture(scope="module")
def weights_file(torch_net, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torch_net.state_dict(), path)
    return path


def tree(named, part):
    """`{"params/layer1/0/conv1/w": a, ...}` -> `{"layer1": {"0": {"conv1": {"w": a}}}}` (no init to compile)."""
    out = {}
    for key, array in named.items():
        first, *path, leaf = key.split("/")
        if first == part:
            node = out
            for name in path:
                node = node.setdefault(name, {})
            node[leaf] = array
    return out


def dlrun_logits(named, x_nhwc, normalize):
    net = tv.resnet18(TorchvisionResNetModel(normalize=normalize), 7)
    apply = jax.jit(lambda p, s, x: net.apply(p, s, x, train=False)[0])
    return np.asarray(apply(tree(named, "params"), tree(named, "model_state"), x_nhwc))


def test_logits_equal_pytorchs_in_eval_mode(torch_net, weights_file):
    """On a random 64x64 batch, with ImageNet's normalisation in front (torchvision's Normalize)."""
    x = np.random.default_rng(0).uniform(0, 1, (2, 3, 64, 64)).astype(np.float32)
    t = (torch.from_numpy(x) - torch.tensor(tv.IMAGENET_MEAN)[:, None, None]) / torch.tensor(tv.IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        expected = torch_net(t).numpy()
    named = tv.named_from_state_dict(tv.read_state_dict(weights_file))
    ours = dlrun_logits(named, x.transpose(0, 2, 3, 1), "imagenet")
    assert np.abs(expected).max() > 0.1  # a network whose logits carry signal
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=1e-4)


def test_npz_of_the_same_keys_loads_without_torch_and_as_a_run(weights_file, tmp_path):
    npz = tv.save_npz(weights_file, tmp_path / "resnet18.npz")
    from_pth, from_npz = tv.read_state_dict(weights_file), tv.read_state_dict(npz)
    assert sorted(from_pth) == sorted(from_npz)
    run = tv.write_as_run(npz, tmp_path / "run")
    named = load_params(run)
    np.testing.assert_array_equal(named["params/layer2/0/downsample/0/w"],
                                  from_pth["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(named["model_state/layer4/1/bn2/var"], from_pth["layer4.1.bn2.running_var"])
    np.testing.assert_array_equal(named["params/fc/w"], from_pth["fc.weight"].T)
    assert not any("num_batches_tracked" in k for k in named)


def test_a_missing_or_misshapen_key_is_named(weights_file, tmp_path):
    sd = tv.read_state_dict(weights_file)
    missing = {k: v for k, v in sd.items() if k != "layer3.1.bn1.running_var"}
    with pytest.raises(ConfigError, match=r"missing keys: layer3\.1\.bn1\.running_var"):
        tv.named_from_state_dict(missing)
    misshapen = dict(sd, **{"layer1.0.conv2.weight": np.zeros((64, 64, 5, 5), np.float32)})
    with pytest.raises(ConfigError, match=r"layer1\.0\.conv2\.weight \(64, 64, 5, 5\) \(expected \(64, 64, 3, 3\)\)"):
        tv.named_from_state_dict(misshapen)
    with pytest.raises(ConfigError, match="missing key fc.weight"):
        tv.named_from_state_dict({k: v for k, v in sd.items() if not k.startswith("fc.")})
    with pytest.raises(ConfigError, match="does not exist"):
        tv.read_state_dict(tmp_path / "absent.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="cannot be read as a state dict"):
        tv.read_state_dict(tmp_path / "bad.pth")
