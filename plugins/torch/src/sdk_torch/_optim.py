"""The core's optimizers as ``torch.optim`` optimizers, which follow the core's rules as they
are; the schedule (evaluated by the core) drives a ``LambdaLR``."""

from __future__ import annotations

from typing import Any

import torch

from sdk_core import Optimizer


def make_optimizer(opt: Optimizer, params) -> tuple[torch.optim.Optimizer, Any]:
    """torch.optim's optimizers follow the core's rules as they are; the schedule is a LambdaLR."""
    if opt.name == "sgd":
        native = torch.optim.SGD(
            params, lr=opt.lr, momentum=opt.momentum, nesterov=opt.nesterov, weight_decay=opt.weight_decay
        )
    elif opt.name == "adagrad":
        native = torch.optim.Adagrad(params, lr=opt.lr, eps=opt.eps, weight_decay=opt.weight_decay)
    elif opt.name == "rmsprop":
        native = torch.optim.RMSprop(params, lr=opt.lr, alpha=opt.rho, eps=opt.eps, weight_decay=opt.weight_decay)
    else:
        cls = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
        native = cls(params, lr=opt.lr, betas=(opt.beta1, opt.beta2), eps=opt.eps, weight_decay=opt.weight_decay)
    schedule = None
    if not opt.schedule.is_constant:
        schedule = torch.optim.lr_scheduler.LambdaLR(native, lambda t: opt.lr_at(t) / opt.lr)
    return native, schedule
