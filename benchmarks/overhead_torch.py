"""Stack.fit on the torch plugin vs a hand-written PyTorch loop (see _overhead.py).

python benchmarks/overhead_torch.py [--models mlp,lenet5,resnet] [--rounds 31] [--batch 32] [--native-fused]

The plugin updates with torch's fused Adam (one kernel a tensor); the native loop is the plain
``torch.optim.Adam(model.parameters(), lr=...)`` a user writes, so the ratio is what a user
gains or loses by training through the SDK. ``--native-fused`` gives the native loop the fused
kernel too: the ratio is then the SDK's own cost alone, and the losses equal.
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _overhead import main


class Block(nn.Module):
    """A basic residual block, as the torchvision/CIFAR code writes it."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = None
        if stride != 1:
            self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (self.proj(x) if self.proj is not None else x))


class ResNet8(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.blocks = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        h = self.blocks(F.relu(self.bn(self.stem(x))))
        return self.fc(h.mean(dim=(2, 3)))


def native_model(spec) -> nn.Module:
    """The network written by hand in torch, as a PyTorch user would."""
    if spec.name == "resnet8":
        return ResNet8()
    if spec.name == "mlp":
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    return nn.Sequential(
        nn.Conv2d(1, 6, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 10),
    )


def make_native(spec, weights, optimizer, native_fused=False):
    model = native_model(spec)
    # the hand-written modules hold their tensors in the spec's order (BatchNorm's step counter aside)
    native = [v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    with torch.no_grad():
        for value, p in zip(native, spec.layout(), strict=True):
            w = weights[p.name]
            value.copy_(torch.from_numpy(np.ascontiguousarray(w.T if w.ndim == 2 else w)))
    opt = torch.optim.Adam(model.parameters(), lr=optimizer.lr, fused=native_fused or None)

    def epoch(x, y, order, batch):
        model.train()
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        losses = []
        for s in range(0, len(order), batch):
            idx = torch.from_numpy(order[s : s + batch])
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        return [float(l) for l in losses]

    return epoch


if __name__ == "__main__":
    main("torch", make_native, flags={"--native-fused": "the native loop uses torch's fused Adam too"})
