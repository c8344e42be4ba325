"""``sdk train`` and ``sdk predict``: the main job from the command line."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any

from ..errors import SdkError
from .common import DATA, add_command, add_stack_options, counting, data_for, data_name, emit, stack_from


def train(args: argparse.Namespace) -> int:
    """``sdk train``: train a model on ``--data`` (digits, counting text or files) and optionally save it."""
    from ..model import zoo
    from ..model.files import check_output
    from ..model.optim import Optimizer, Schedule

    if args.resume and not args.checkpoint_dir:
        raise SdkError("--resume needs --checkpoint-dir")
    if args.tensor_parallel > 1 and not args.strategy.startswith("zero"):
        raise SdkError("--tensor-parallel needs --strategy zero1, zero2 or zero3")
    if args.out:  # before any work: a bad output path must not cost a training run
        reads = [p for p in (args.model, args.init) if p and Path(p).exists()]
        check_output(args.out, reads=reads, what="weights file")
    from ..runtime.world import Sharded, from_environ

    world = from_environ()  # under sdk launch, torchrun or srun: one of several workers
    if args.num_classes is not None and args.num_classes < 1:
        raise SdkError(f"--num-classes must be at least 1 (got {args.num_classes})")
    if args.init:  # start from a weights file (an imported model, an earlier run)
        from ..runtime.stack import load_spec

        spec = load_spec(args.init)
    else:
        spec = zoo.resolve(args.model, args.image_size)
    stack = stack_from(args, spec)
    stack.refuse_training()  # an inference-only framework: before anything is built or announced
    if args.init:
        stack.load(args.init)
    else:
        stack.build(spec, seed=args.seed)
    if args.num_classes is not None:  # transfer learning: a fresh classifier of that many outputs
        spec = stack.replace_head(args.num_classes, seed=args.seed)._need_model()
    x_train, y_train, x_test, y_test = data_for(spec, args.data, args.seed)
    schedule = None
    if args.schedule == "cosine":  # decay over every update of the run
        updates = args.epochs * -(-len(x_train) // (args.batch_size * args.accumulate))
        schedule = Schedule("cosine", total_steps=max(updates, 1))
    optimizer = Optimizer(args.optimizer, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov, schedule=schedule)
    if not args.json and world.main:
        print(
            f"training {spec.name or 'model'} ({spec.param_count():,} parameters) on "
            f"{stack.framework.name}/{stack.device.id}: {len(x_train)} train, {len(x_test)} test "
            f"samples, {args.optimizer} lr {args.lr}",
            file=sys.stderr,
        )
    strategy: Any = args.strategy if world.size > 1 else None
    if args.strategy.startswith("zero"):  # one process: ordinary training, unless tensor parallelism asks for more
        strategy = Sharded(int(args.strategy[-1]), tensor=args.tensor_parallel)
    history = stack.fit(
        x_train,
        y_train,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=optimizer,
        seed=args.seed,
        validation_data=(x_test, y_test),
        progress=not args.json,
        strategy=strategy,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        keep_checkpoints=args.keep_checkpoints,
        resume=args.resume,
        accumulate=args.accumulate,
        precision=args.precision,
        remat=args.remat,
    )
    result = stack.evaluate(x_test, y_test)
    if not world.main:
        if args.out and isinstance(strategy, Sharded):
            stack.get_weights()  # sharded weights are gathered by every rank together while rank 0 saves
        return 0  # rank 0 prints the result and writes the file: every rank holds the same weights
    if args.out:
        from ..model.tokenizer import for_data

        tokenizer = for_data(data_name(spec, args.data), getattr(spec.layers[0], "vocab_size", 0))
        stack.save(args.out, {"tokenizer": tokenizer.describe()} if tokenizer else None)
    data = {
        "framework": stack.framework.name,
        "device": stack.device.id,
        "model": spec.name,
        "history": history.to_dict(),
        "precision": args.precision,
        "skipped_steps": history.skipped,
        "test": result,
        "weights": args.out,
    }
    text = f"test accuracy {result['accuracy']:.4f}, loss {result['loss']:.4f}" + (
        f"; weights saved to {args.out}" if args.out else ""
    )
    if args.precision == "fp16":
        text += f"; {history.skipped} update(s) skipped by fp16 loss scaling (overflow)"
    return emit(args, data, text)


def predict(args: argparse.Namespace) -> int:
    """``sdk predict``: run a saved model on .npy inputs or the ``--data`` test split."""
    import numpy as np

    from ..model.files import atomic_write, check_output, read_npy
    from ..runtime.stack import load_spec

    if args.output:  # before any work, and never onto a file this command reads
        check_output(args.output, reads=[args.weights, args.input], what="output")
    spec = load_spec(args.weights)
    stack = stack_from(args, spec, task="infer").load(args.weights, allow_nonfinite=args.allow_nonfinite)
    labels = None
    if args.input:
        x = read_npy(args.input, max_bytes=stack.device.memory_total, what="input")
    else:
        _, _, x, labels = data_for(spec, args.data, args.seed)
    out = stack.predict(x)
    data: dict[str, Any] = {
        "framework": stack.framework.name,
        "device": stack.device.id,
        "samples": len(x),
        "weights": args.weights,
    }
    text = [f"predicted {len(x)} samples with {stack.framework.name}/{stack.device.id} from {args.weights}"]
    if labels is not None:
        data["accuracy"] = stack.evaluate(x, labels)["accuracy"]
        text.append(f"accuracy {data['accuracy']:.4f} on the {data_name(spec, args.data)} test split")
    if args.output:
        buffer = io.BytesIO()
        np.save(buffer, out)
        atomic_write(args.output, buffer.getvalue())
        text.append(f"outputs saved to {args.output}")
    else:
        data["classes"] = np.argmax(out, axis=-1).tolist()
    return emit(args, data, "\n".join(text))


def image_size(text: str) -> int:
    """``--image-size``: a multiple of 8 from 8 to 256, checked before anything is built."""
    size = counting(8)(text)
    if size % 8 or size > 256:
        raise argparse.ArgumentTypeError(f"'image_size' must be a multiple of 8 from 8 to 256 (got {size})")
    return size


def _data_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default="auto",
        help=f"{', '.join(DATA)} (the set the model takes), or PATH: an .npz with x_train, y_train, "
        "x_test, y_test, or a folder of those .npy files (memory-mapped)",
    )


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``train`` and ``predict``."""
    p = add_command(sub, "train", train, "train a model on the digits data set, counting text or your files")
    add_stack_options(p)
    _data_option(p)
    p.add_argument("--model", default="lenet5", help="mlp, lenet5 (default), gpt, resnet, bert or a spec .json file")
    p.add_argument("--image-size", type=image_size, default=32, help="digits image size for lenet5 (8 to 256)")
    p.add_argument("--epochs", type=counting(1), default=10)
    p.add_argument("--batch-size", type=counting(1), default=32)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum (sgd with --momentum)")
    p.add_argument(
        "--schedule",
        default="constant",
        choices=("constant", "cosine"),
        help="cosine: the rate decays from --lr along a cosine over the whole run (default: constant)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16", "fp16"),
        help="mixed precision: float32 master weights, low-precision compute (fp16 with loss scaling)",
    )
    p.add_argument(
        "--accumulate", type=counting(1), default=1, help="micro-batches of --batch-size per update (default: 1)"
    )
    p.add_argument("--remat", action="store_true", help="activation checkpointing of transformer blocks")
    p.add_argument(
        "--strategy",
        default="data_parallel",
        choices=("data_parallel", "zero1", "zero2", "zero3"),
        help="under sdk launch, torchrun or srun: data_parallel (default), or ZeRO stage 1 (optimizer state "
        "sharded), 2 (also gradients) or 3 (also weights)",
    )
    p.add_argument(
        "--tensor-parallel",
        type=counting(1),
        default=1,
        metavar="T",
        help="with --strategy zeroN: split dense and attention layers over groups of T ranks (default: 1)",
    )
    p.add_argument("--init", default=None, help="start from this weights file (its spec included): sdk import's output")
    p.add_argument(
        "--num-classes", type=int, default=None, help="replace the final classifier with a fresh one of N outputs"
    )
    p.add_argument("--out", default=None, help="save the weights to this .safetensors file")
    p.add_argument("--checkpoint-dir", default=None, help="write checkpoints (weights, optimizer state, position) here")
    p.add_argument(
        "--checkpoint-every",
        type=counting(1),
        default=None,
        help="updates between checkpoints (default: at the end of each epoch)",
    )
    p.add_argument("--keep-checkpoints", type=counting(1), default=3, help="how many checkpoints to keep (default: 3)")
    p.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in --checkpoint-dir (any framework)"
    )
    p = add_command(sub, "predict", predict, "run inference from a weights file")
    add_stack_options(p)
    p.add_argument("--weights", required=True, help="a .safetensors file saved by sdk, or a compressed .sdkz file")
    p.add_argument("--input", default=None, help=".npy inputs (default: the --data test split)")
    p.add_argument(
        "--allow-nonfinite", action="store_true", help="load weights that hold NaN or infinity (refused by default)"
    )
    _data_option(p)
    p.add_argument("--output", default=None, help="save outputs to this .npy file")
