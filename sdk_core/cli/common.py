"""What the ``sdk`` subcommands share: the one-line-error parser, output, and choosing a stack
from the command line."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import SdkError
from ..runtime.select import POLICIES

if TYPE_CHECKING:
    import numpy as np

    from ..model.spec import ModelSpec
    from ..runtime.stack import Stack


class Formatter(argparse.HelpFormatter):
    """argparse's formatter, sized from ``os.get_terminal_size`` (argparse's own default
    imports ``shutil``, which costs every ``sdk`` command a few milliseconds)."""

    def __init__(self, prog: str) -> None:
        try:
            width = os.get_terminal_size().columns
        except OSError:
            width = int(os.environ.get("COLUMNS", "80")) if os.environ.get("COLUMNS", "").isdigit() else 80
        super().__init__(prog, width=max(width - 2, 40))


class Parser(argparse.ArgumentParser):
    """argparse with one line on error and exit code 1 (argparse's default is 2 plus usage)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"sdk: error: {message}\n")


def add_command(sub: argparse._SubParsersAction, name: str, func: Any, help: str) -> argparse.ArgumentParser:
    """A subcommand with ``--json`` whose handler is ``func(args) -> exit code``."""
    p = sub.add_parser(name, help=help, description=help)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=func)
    return p


def emit(args: argparse.Namespace, data: Any, text: str) -> int:
    """Print ``data`` as JSON with ``--json``, else ``text``; exit code 0."""
    print(json.dumps(data, indent=2, default=str) if args.json else text)
    return 0


def gib(n: int | None) -> str:
    return "" if n is None else f"{n / 2**30:.1f} GiB"


def counting(low: int) -> Any:
    """An argparse type: an int >= ``low``, with a one-line error otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int >= {low} (got '{text}')") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an int >= {low} (got {value})")
        return value

    return parse


def add_stack_options(p: argparse.ArgumentParser) -> None:
    """``--framework``, ``--device``, ``--seed``, ``--policy`` and ``--strict``."""
    p.add_argument("--framework", default="auto", help="framework name, or auto (default)")
    p.add_argument("--device", default=None, help="device such as cpu or cuda:0")
    p.add_argument("--seed", type=counting(0), default=0, help="random seed, an int >= 0 (default: 0)")
    p.add_argument(
        "--policy", default="accelerator", choices=POLICIES, help="how --framework auto chooses (default: accelerator)"
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail rather than fall back to the cpu (or to another backend, such as an execution provider)",
    )


def stack_from(args: argparse.Namespace, spec: ModelSpec | None = None, task: str = "train") -> Stack:
    """The stack ``add_stack_options`` describes, for ``task`` (``train`` or ``infer``: then
    inference-only frameworks such as onnxruntime are candidates for ``auto``)."""
    from ..runtime.stack import Stack

    if args.framework == "auto":
        return Stack.auto(args.policy, spec=spec, device=args.device, strict=args.strict, task=task)
    stack = Stack(args.framework, args.device or "cpu", strict=args.strict)
    if args.strict and stack.device.kind == "cpu":
        raise SdkError(f"strict: {args.framework}/{stack.device.id} is not an accelerator")
    return stack


def digits_for(spec: ModelSpec, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The digits data shaped for ``spec``: (1, N, N) or (3, N, N) images or flat 64-vectors."""
    from ..model.data import digits

    if len(spec.input_shape) == 3:
        c, h, w = spec.input_shape
        if h != w or c not in (1, 3) or h % 8 or h > 256:
            raise SdkError(
                f"the digits data needs a (1 or 3, N, N) input, N a multiple of 8; the model takes {spec.input_shape}"
            )
        return digits(image_size=h, seed=seed, channels=c)
    if spec.input_shape != (64,):
        raise SdkError(f"the digits data needs a (64,) or (1, N, N) input, the model takes {spec.input_shape}")
    return digits(image_size=None, seed=seed)


DATA = ("auto", "digits", "counting_text", "counting_or_not")


def data_name(spec: ModelSpec, data: str) -> str:
    """``--data auto`` resolved: counting text for token models with an output per token,
    counting-or-not for token models with one output per sequence (encoders), else digits."""
    if data == "auto":
        if spec.input_dtype != "int64":
            return "digits"
        return "counting_text" if len(spec.output_shape) > 1 else "counting_or_not"
    return data


def data_for(spec: ModelSpec, data: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``--data``: ``digits``, ``counting_text`` (next-token sequences for token models),
    ``counting_or_not`` (sequence labels for encoders), ``auto`` (the one the model takes) or
    a path: an ``.npz`` with x_train, y_train, x_test, y_test, or a folder of those ``.npy``
    files (memory-mapped)."""
    from ..model.data import counting_or_not, counting_text, load_split

    data = data_name(spec, data)
    if data == "digits":
        return digits_for(spec, seed)
    if data == "counting_text":
        if spec.input_dtype != "int64" or len(spec.input_shape) != 1:
            raise SdkError(f"the counting_text data needs a (tokens,) int64 input, the model takes {spec.input_shape}")
        vocab = min(getattr(spec.layers[0], "vocab_size", 16), 16)
        x_train, y_train = counting_text(1024, spec.input_shape[0], vocab, seed)
        x_test, y_test = counting_text(256, spec.input_shape[0], vocab, seed + 1)
        return x_train, y_train, x_test, y_test
    if data == "counting_or_not":
        if spec.input_dtype != "int64" or len(spec.input_shape) != 1 or spec.output_shape[-1] < 2:
            raise SdkError(
                f"the counting_or_not data needs a (tokens,) int64 input and two or more class outputs, "
                f"the model takes {spec.input_shape} and gives {spec.output_shape}"
            )
        vocab = min(getattr(spec.layers[0], "vocab_size", 16), 16)
        x_train, y_train = counting_or_not(1024, spec.input_shape[0], vocab, seed)
        x_test, y_test = counting_or_not(256, spec.input_shape[0], vocab, seed + 1)
        return x_train, y_train, x_test, y_test
    return load_split(data)
