"""Stack.fit on the torch plugin vs a hand-written PyTorch loop (see _overhead.py).

python benchmarks/overhead_torch.py [--models mlp,lenet5] [--rounds 12] [--batch 32]
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _overhead import main


def native_model(spec) -> nn.Module:
    """The network written by hand in torch, as a PyTorch user would."""
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


def make_native(spec, weights, optimizer):
    model = native_model(spec)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            w = weights[name]
            value.copy_(torch.from_numpy(np.ascontiguousarray(w.T if w.ndim == 2 else w)))
    opt = torch.optim.Adam(model.parameters(), lr=optimizer.lr)

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
    main("torch", make_native)
