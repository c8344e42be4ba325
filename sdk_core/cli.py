"""The ``sdk`` command: plugins, devices, stacks, doctor, train, predict.

Tables for people, ``--json`` for scripts; on bad input one line on stderr and exit code 1.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import SdkError
from .select import POLICIES


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 1 (argparse's default is 2 + usage)
        self.exit(1, f"sdk: error: {message}\n")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _gib(n: int | None) -> str:
    return "" if n is None else f"{n / 2**30:.1f} GiB"


def _emit(args: argparse.Namespace, data: Any, text: str) -> int:
    print(json.dumps(data, indent=2, default=str) if args.json else text)
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from .manager import get_manager

    m = get_manager()
    frameworks = {f.plugin: f for f in m.frameworks().values()}
    kinds = {d.plugin for d in m.devices()}
    rows, data = [], []
    for p in m.plugins():
        fw = frameworks.get(p.name)
        role = "framework" if fw else "devices" if p.name in kinds else ""
        detail = p.reason or (f"{fw.name} {fw.version}" if fw and fw.installed
                              else f"{fw.name} not installed" if fw else "")
        rows.append((p.name, p.dist, role, p.status, detail))
        data.append({**p.to_dict(), "role": role, "framework": fw.to_dict() if fw else None})
    return _emit(args, data, table(rows, ("plugin", "distribution", "provides", "status", "detail")))


def cmd_devices(args: argparse.Namespace) -> int:
    from .manager import get_manager

    m = get_manager()
    devices = m.devices()
    drivers = {d.id: [f.name for f in m.frameworks().values() if f.installed and d.kind in f.device_kinds]
               for d in devices}
    rows = [(d.id, d.vendor, d.name, _gib(d.memory_total), _gib(d.memory_free), d.compute_units,
             ", ".join(drivers[d.id]) or "-", d.plugin) for d in devices]
    data = [{**d.to_dict(), "frameworks": drivers[d.id]} for d in devices]
    return _emit(args, data, table(rows, ("device", "vendor", "name", "memory", "free", "units",
                                          "frameworks", "plugin")))


def cmd_stacks(args: argparse.Namespace) -> int:
    from .stack import usable_stacks

    pairs = usable_stacks()
    rows = [(f"{fw.name}/{dev.id}", fw.version, dev.name, "yes" if i == 0 else "")
            for i, (fw, dev) in enumerate(pairs)]
    data = [{"framework": fw.name, "device": dev.id, "auto": i == 0} for i, (fw, dev) in enumerate(pairs)]
    text = table(rows, ("stack", "version", "device", "auto")) if pairs else \
        "no usable stack: install a framework plugin (pip install sdk-numpy for the default)"
    return _emit(args, data, text)


def cmd_doctor(args: argparse.Namespace) -> int:
    from . import __version__
    from .manager import get_manager
    from .stack import usable_stacks

    m = get_manager()
    plugins = m.plugins()
    problems = [f"plugin '{p.name}' {p.status}: {p.reason}" for p in plugins
                if p.status in ("failed", "refused")]
    frameworks = m.frameworks()
    problems += [f"framework '{f.name}' (plugin '{f.plugin}') is not installed"
                 for f in frameworks.values() if not f.installed]
    advice = [] if any(f.installed for f in frameworks.values()) else \
        ["no framework plugin installed: pip install sdk-numpy (the default) or sdk-torch, ..."]
    pairs = usable_stacks(m)
    data = {"sdk_core": __version__, "python": platform.python_version(),
            "plugins": [p.to_dict() for p in plugins], "devices": [d.id for d in m.devices()],
            "stacks": [f"{fw.name}/{dev.id}" for fw, dev in pairs], "problems": problems,
            "advice": advice}
    lines = [f"sdk-core {__version__} on Python {data['python']}",
             f"plugins: {sum(p.ok for p in plugins)} ok of {len(plugins)}",
             f"devices: {', '.join(data['devices']) or 'none'}",
             f"stacks: {', '.join(data['stacks']) or 'none'}"]
    lines += [f"problem: {p}" for p in problems] + [f"advice: {a}" for a in advice]
    if not problems and not advice:
        lines.append("all good")
    return _emit(args, data, "\n".join(lines))


def _stack(args: argparse.Namespace, spec=None):
    from .stack import Stack

    if args.framework == "auto":
        return Stack.auto(args.policy, spec=spec, device=args.device, strict=args.strict)
    stack = Stack(args.framework, args.device or "cpu")
    if args.strict and stack.device.kind == "cpu":
        raise SdkError(f"strict: {args.framework}/{stack.device.id} is not an accelerator")
    return stack


def _spec(model: str, image_size: int):
    from . import zoo
    from .spec import ModelSpec

    if model.endswith(".json"):
        path = Path(model)
        if not path.is_file():
            raise SdkError(f"spec file '{model}' does not exist")
        return ModelSpec.from_json(path.read_text())
    if model == "lenet5":
        return zoo.lenet5(input_shape=(1, image_size, image_size))
    return zoo.get(model)


def _digits_for(spec, seed: int):
    from .data import digits

    if len(spec.input_shape) == 3:
        if spec.input_shape[1] != spec.input_shape[2] or spec.input_shape[0] != 1:
            raise SdkError(f"the digits data needs a (1, N, N) input, the model takes {spec.input_shape}")
        return digits(image_size=spec.input_shape[1], seed=seed)
    if spec.input_shape != (64,):
        raise SdkError(f"the digits data needs a (64,) or (1, N, N) input, the model takes {spec.input_shape}")
    return digits(image_size=None, seed=seed)


def cmd_train(args: argparse.Namespace) -> int:
    from .optim import Optimizer

    spec = _spec(args.model, args.image_size)
    stack = _stack(args, spec).build(spec, seed=args.seed)
    x_train, y_train, x_test, y_test = _digits_for(spec, args.seed)
    optimizer = Optimizer(args.optimizer, lr=args.lr, momentum=args.momentum)
    if not args.json:
        print(f"training {spec.name or 'model'} ({spec.param_count():,} parameters) on "
              f"{stack.framework.name}/{stack.device.id}: {len(x_train)} train, {len(x_test)} test "
              f"samples, {args.optimizer} lr {args.lr}", file=sys.stderr)
    history = stack.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        optimizer=optimizer, seed=args.seed, validation_data=(x_test, y_test),
                        progress=not args.json)
    result = stack.evaluate(x_test, y_test)
    if args.out:
        stack.save(args.out)
    data = {"framework": stack.framework.name, "device": stack.device.id, "model": spec.name,
            "history": history.to_dict(), "test": result, "weights": args.out}
    text = (f"test accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}"
            + (f"; weights saved to {args.out}" if args.out else ""))
    return _emit(args, data, text)


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from .stack import load_spec

    spec = load_spec(args.weights)
    stack = _stack(args, spec)
    stack.build(spec).load(args.weights)
    labels = None
    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise SdkError(f"input file '{args.input}' does not exist")
        try:
            x = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise SdkError(f"'{args.input}' is not a .npy array file: {exc}") from None
    else:
        _, _, x, labels = _digits_for(spec, args.seed)
    out = stack.predict(x)
    data: dict[str, Any] = {"framework": stack.framework.name, "device": stack.device.id,
                            "samples": len(x), "weights": args.weights}
    text = [f"predicted {len(x)} samples with {stack.framework.name}/{stack.device.id} "
            f"from {args.weights}"]
    if labels is not None:
        data["accuracy"] = stack.evaluate(x, labels)["accuracy"]
        text.append(f"accuracy {data['accuracy']:.4f} on the digits test split")
    if args.output:
        from .weights import atomic_write
        import io

        buffer = io.BytesIO()
        np.save(buffer, out)
        atomic_write(args.output, buffer.getvalue())
        text.append(f"outputs saved to {args.output}")
    else:
        data["classes"] = np.argmax(out, axis=-1).tolist()
    return _emit(args, data, "\n".join(text))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sdk", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, func, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)
        return p

    command("plugins", cmd_plugins, "list plugins with their status")
    command("devices", cmd_devices, "list probed devices")
    command("stacks", cmd_stacks, "list usable (framework, device) pairs, best first")
    command("doctor", cmd_doctor, "check the installation and explain problems")
    for name, func, help in (("train", cmd_train, "train a model on the digits data set"),
                             ("predict", cmd_predict, "run inference from a weights file")):
        p = command(name, func, help)
        p.add_argument("--framework", default="auto", help="framework name, or auto (default)")
        p.add_argument("--device", default=None, help="device such as cpu or cuda:0")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--policy", default="accelerator", choices=POLICIES,
                       help="how --framework auto chooses (default: accelerator)")
        p.add_argument("--strict", action="store_true", help="fail rather than fall back to the cpu")
    train, predict = sub.choices["train"], sub.choices["predict"]
    train.add_argument("--model", default="lenet5", help="mlp, lenet5, gpt or a spec .json file")
    train.add_argument("--image-size", type=int, default=32, help="digits image size for lenet5")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--optimizer", default="adam")
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--momentum", type=float, default=0.0)
    train.add_argument("--out", default=None, help="save the weights to this .safetensors file")
    predict.add_argument("--weights", required=True, help="a .safetensors file saved by sdk")
    predict.add_argument("--input", default=None, help=".npy inputs (default: digits test split)")
    predict.add_argument("--output", default=None, help="save outputs to this .npy file")
    from .bench import add_command as add_bench_command
    from .manager import get_manager

    add_bench_command(sub)
    get_manager().add_commands(sub)  # plugins' own commands; a failing plugin is disabled
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SdkError as exc:
        print(f"sdk: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sdk: interrupted", file=sys.stderr)
        return 130
