"""An ONNX file as a spec and weights that train, compress and serve in every framework
(``sdk import``, :func:`import_onnx`).

Every ONNX node becomes an operator node (:class:`~sdk_core.model.spec.Op`), or a layer where
the match is exact (:func:`sdk_core.model.onnx_layers.to_layers`). Float initializers that feed
a weight slot (a product's or convolution's matrix, a bias, a normalization's scale and shift,
an embedding table) become trainable weights; batch-norm statistics are stored, untrained;
scalars and integer tensors are constants. A weight's canonical name keeps its ONNX name where
it can: ``conv1.weight`` stays ``conv1.weight``, ``layer1.0.conv1.weight`` becomes
``layer1_0_conv1.weight`` (node names hold no dots); :attr:`Imported.onnx_names` maps them
back. Shape-only subgraphs are folded by the core for the input signature; the batch axis
stays free. Files of opsets below 13 are upgraded with ``onnx.version_converter``.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ..errors import NotAvailableError, SdkError, SdkWarning, SpecError
from . import spec as S
from .graph import INPUT
from .onnx_rewrite import EXPANDED
from .ops import OPS

OPSETS = (13, 21)
"""The default-domain opsets read; older files are upgraded to the first."""
WEIGHT_SLOTS = {  # operator -> the input positions whose float initializers train
    "MatMul": (0, 1),
    "Gemm": (0, 1, 2),
    "Conv": (1, 2),
    "Add": (0, 1),
    "Sub": (0, 1),
    "Mul": (0, 1),
    "LayerNormalization": (1, 2),
    "BatchNormalization": (1, 2),
    "Gather": (0,),
    "Identity": (0,),  # the node holding a weight that several nodes read (see _tie)
}
STORED = {"BatchNormalization": (3, 4)}  # float initializers kept as untrained weights
EXTRA_OUTPUTS_OK = {"Dropout", "LayerNormalization", "MaxPool", "BatchNormalization"}
FOLDED_CONV = re.compile(r"^onnx::Conv_\d+$")  # the legacy exporter's name for a conv it fused a batch norm into
FUSED_RULE = "FuseBatchNormIntoConv"  # the dynamo exporter's optimizer names it in a fused Conv's metadata
FOLDED_LOOKUP = re.compile(r"^embedding(_\d+)?$")  # the dynamo exporter's name for an aten.embedding it folded
SIGNATURE = "pkg.torch.export.ExportedProgram.graph_signature"  # the dynamo exporter's list of torch's parameters


@attrs.frozen
class Imported:
    """What :func:`import_onnx` made: the spec, its weights (canonical names), the ONNX name
    of each weight, the model's opset, the operators it used (type: count), notes for the
    user, the batch-norm parameters the exporter folded into convolutions (not in the spec:
    ``torch's count = spec.param_count() + folded_batchnorm_parameters``), and the constants
    the dynamo exporter folded from a table lookup for the exported length (the rows it read,
    trained as they are; the rest of the table is not in the file)."""

    spec: S.ModelSpec
    weights: dict[str, np.ndarray]
    onnx_names: dict[str, str]
    opset: int
    census: dict[str, int]
    notes: tuple[str, ...] = ()
    folded_batchnorm_parameters: int = 0
    untied: tuple[str, ...] = ()
    folded_lookups: tuple[str, ...] = ()

    def metadata(self) -> dict[str, str]:
        """What the weights file stores beside the spec."""
        return {"onnx_names": json.dumps(self.onnx_names, sort_keys=True), "onnx_opset": str(self.opset)}


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise NotAvailableError("importing ONNX files needs the onnx package: pip install 'sdk-core[onnx]'") from None
    return onnx


def list_ops() -> list[tuple[str, str]]:
    """The operators ``sdk import`` reads, with the opsets: (operator, opsets)."""
    every = f"{OPSETS[0]}-{OPSETS[1]}"
    rows = [(name, every) for name in sorted(OPS)] + [("Constant", every)]
    return sorted(rows + [(name, f"20-{OPSETS[1]}") for name in EXPANDED])  # Gelu: ONNX has it from opset 20


def _load(path: str | Path) -> Any:
    onnx = _onnx()
    p = Path(path)
    if not p.is_file():
        raise SdkError(f"'{path}' is not a file")
    try:
        model = onnx.load(str(p))
        onnx.checker.check_model(model)
    except Exception as exc:  # DecodeError, ValidationError, a truncated file, external data missing
        detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise SdkError(f"'{path}' is not a readable ONNX model ({detail})") from None
    if not model.graph.node:
        raise SdkError(f"'{path}' is not a readable ONNX model (its graph has no nodes)")
    return model


def _opset(model: Any, path: str | Path) -> tuple[Any, int]:
    onnx = _onnx()
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if version is None:
        raise SdkError(f"'{path}' imports no default-domain (ai.onnx) opset")
    if version > OPSETS[1]:
        raise SdkError(
            f"'{path}' uses opset {version}; sdk import reads {OPSETS[0]}-{OPSETS[1]}: "
            f"export with opset_version={OPSETS[1]}"
        )
    if version < OPSETS[0]:
        try:
            model = onnx.version_converter.convert_version(model, OPSETS[0])
        except Exception as exc:
            raise SdkError(f"'{path}' (opset {version}) could not be upgraded to opset {OPSETS[0]}: {exc}") from None
        version = OPSETS[0]
    return model, version


def _attributes(node: Any) -> dict[str, Any]:
    onnx = _onnx()
    out: dict[str, Any] = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, onnx.TensorProto):  # ConstantOfShape's value: one number
            value = onnx.numpy_helper.to_array(value)
            if node.op_type != "Constant":
                if value.size != 1:
                    raise SdkError(
                        f"node '{node.name}' ({node.op_type}): attribute '{a.name}' is a tensor of {value.size} values"
                    )
                value = value.reshape(()).item()
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]
        out[a.name] = value
    return out


def _constant(node: Any) -> np.ndarray:
    a = _attributes(node)
    for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
        if key in a:
            value = np.asarray(a[key])
            return value.astype(np.int64) if value.dtype.kind in "iu" else value
    raise SdkError(f"Constant node '{node.name}' has no value this importer reads (sparse or string values)")


_KEY_BAD = re.compile(r"[^A-Za-z0-9_.-]")
_NODE_BAD = re.compile(r"[^A-Za-z0-9_-]")


def _module_of(onnx_name: str, fallback: str) -> str:
    """A node's name from the torch exporters' scoped names: ``/layer1/layer1.0/conv1/Conv``
    is ``layer1_0_conv1`` (the module it came from), ``/act/Div`` is ``act``."""
    path: list[str] = []
    for segment in (s for s in onnx_name.strip("/").split("/")[:-1] if s):
        if path and segment.startswith(path[-1] + "."):  # "layer1", "layer1.0": one module
            path[-1] = segment
        else:
            path.append(segment)
    return ".".join(path).replace(".", "_") or fallback


def _key(name: str) -> str:
    key = _KEY_BAD.sub("_", name).strip(".") or "w"
    return key if key[0].isalpha() or key[0] == "_" else f"_{key}"


class _Names:
    """Unique node names (1-64 letters, digits, '_' or '-')."""

    def __init__(self) -> None:
        self.used = {INPUT}

    def free(self, name: str) -> bool:
        return name not in self.used

    def take(self, wish: str) -> str:
        base = (_NODE_BAD.sub("_", wish).strip("_") or "node")[:56]
        name, i = base, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name


@attrs.define
class _Node:
    """A node being imported: its ONNX facts and what it became."""

    name: str
    op: str
    inputs: list[
        tuple[str, Any]
    ]  # ("node", name) | ("input", None) | ("init", name) | ("const", array) | ("none", None)
    attributes: dict[str, Any]
    onnx_name: str


def import_onnx(
    path: str | Path, input_shape: Sequence[int] | None = None
) -> tuple[S.ModelSpec, dict[str, np.ndarray]]:
    """The spec and weights of an ONNX file (``input_shape``: the full input shape, batch
    first, for inputs with free axes). See :func:`read` for the import's report."""
    done = read(path, input_shape)
    return done.spec, done.weights


def read(path: str | Path, input_shape: Sequence[int] | None = None, layers: bool = True) -> Imported:
    """Import ``path``: :class:`Imported`. ``layers=False`` keeps every node an operator node.
    Errors are one :class:`SdkError` line naming what is wrong; warnings
    (:class:`~sdk_core.errors.SdkWarning`) say what was changed."""
    onnx = _onnx()
    model, opset = _opset(_load(path), path)
    graph = model.graph
    inits = {t.name: _stored(onnx.numpy_helper.to_array(t)) for t in graph.initializer}
    consts = {node.output[0] for node in graph.node if node.op_type == "Constant" and node.output}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            inits[node.output[0]] = _stored(_constant(node))
    real_inputs = [i for i in graph.input if i.name not in inits]
    if len(real_inputs) != 1:
        names = ", ".join(i.name for i in real_inputs) or "none"
        raise SdkError(
            f"'{path}' has {len(real_inputs)} inputs ({names}); sdk import takes models with exactly one input: "
            "export with only the one the model needs"
        )
    given = real_inputs[0]
    shape, dtype = _input_signature(given, input_shape, path)
    unsupported = [
        n
        for n in graph.node
        if n.op_type not in ("Constant", *EXPANDED) and (n.domain not in ("", "ai.onnx") or n.op_type not in OPS)
    ]
    if unsupported:
        n = unsupported[0]
        where = f"domain '{n.domain}', " if n.domain not in ("", "ai.onnx") else ""
        raise SdkError(
            f"operator {n.op_type} ({where}opset {opset}) of node '{n.name or n.output[0]}' is not supported "
            f"(see sdk import --list-ops)"
        )
    folded, lookups = _folded_batchnorms(graph, inits), _folded_lookups(graph, inits, consts)
    graph = _rewrite(model, inits)
    nodes, outputs = _nodes(graph, inits, given.name)
    nodes = _tie(nodes, inits, consts)
    census: dict[str, int] = {}
    for n in graph.node:
        census[n.op_type] = census.get(n.op_type, 0) + 1
    result, renamed = _assemble(nodes, outputs, graph, inits, consts, shape, dtype, {}, path)
    if layers:
        from .onnx_layers import to_layers

        index = {name: i for i, name in enumerate(result.spec.names)}

        def shape_of(name: str) -> tuple[int, ...] | None:
            if name == "input":
                return result.spec.input_shape
            i = index.get(renamed.get(name, ""))
            return None if i is None else result.spec.shapes[i + 1]

        plan = to_layers(nodes, inits, consts, shape_of)
        if plan:
            result = _assemble(nodes, outputs, graph, inits, consts, shape, dtype, plan, path)[0]
    notes = list(result.notes)
    if folded:
        notes.append(
            "the exporter folded BatchNormalization into Conv (an eval-mode export, or a dynamo export): imported "
            "as those convolutions; to keep the batch norms, export with training=torch.onnx.TrainingMode.TRAINING "
            "and dynamo=False"
        )
    if lookups:
        shown = ", ".join(f"{name} {inits[name].shape}" for name in lookups)
        notes.append(
            f"the exporter folded a table lookup for the exported length into {shown}: imported as a trainable "
            "weight of those rows; the rest of the table is not in the file: to keep it, export with a free "
            "sequence axis (dynamic_shapes={'input_ids': {0: batch, 1: length}}) and import with --input-shape"
        )
    result = attrs.evolve(result, notes=tuple(notes), folded_batchnorm_parameters=folded, folded_lookups=lookups)
    spec, kept = _free_axes(result.spec, _symbolic_axes(given))
    result = attrs.evolve(result, notes=result.notes + kept)
    for note in result.notes:
        warnings.warn(note, SdkWarning, stacklevel=2)
    return attrs.evolve(
        result, opset=opset, census=dict(sorted(census.items())), spec=attrs.evolve(spec, name=_spec_name(path))
    )


def _symbolic_axes(given: Any) -> list[int]:
    """The input's axes after the batch that the file leaves free (a name or no length), as
    indices into the spec's input shape."""
    dims = given.type.tensor_type.shape.dim
    return [i - 1 for i, d in enumerate(dims) if i and not (d.HasField("dim_value") and d.dim_value > 0)]


def _free_axes(spec: S.ModelSpec, axes: list[int]) -> tuple[S.ModelSpec, tuple[str, ...]]:
    """``spec`` with the file's free ``axes`` free where the graph allows it: planned at another
    length (one less, or one more for a length of 1), it runs with the same weights. The
    axes it cannot keep get a note saying why."""
    free, notes = [], []
    for axis in axes:
        probe = list(spec.input_shape)
        probe[axis] += -1 if probe[axis] > 1 else 1
        try:
            attrs.evolve(spec, free_axes=[axis]).at(probe)
            free.append(axis)
        except SpecError as exc:
            notes.append(
                f"input axis {axis + 1} is free in the file but stays {spec.input_shape[axis]} here: {exc}; "
                "import again with another --input-shape for another length"
            )
    return attrs.evolve(spec, free_axes=free), tuple(notes)


def _folded_batchnorms(graph: Any, inits: dict[str, np.ndarray]) -> int:
    """The batch-norm parameters the exporter folded into convolutions (torch's count less the
    import's): a scale and a shift per channel, less the bias the folded convolution gained.
    The TorchScript exporter names a folded convolution's weight ``onnx::Conv_<n>``; the dynamo
    exporter's optimizer keeps the weight's name and writes its rule into the node's metadata
    (it drops a bias of zeros: a fresh batch norm's)."""
    signature = next((p.value for p in graph.metadata_props if p.key == SIGNATURE), "")
    parameters = set(re.findall(r": PARAMETER target='([^']+)'", signature))
    total = 0
    for n in graph.node:
        if n.op_type != "Conv" or len(n.input) < 2 or n.input[1] not in inits:
            continue
        rules = " ".join(p.value for p in n.metadata_props if p.key == "pkg.onnxscript.rewriter.rule_name")
        if FOLDED_CONV.match(n.input[1]) or FUSED_RULE in rules:
            had_bias = n.input[1].endswith(".weight") and f"{n.input[1][: -len('weight')]}bias" in parameters
            has_bias = len(n.input) > 2 and bool(n.input[2])
            total += int(inits[n.input[1]].shape[0]) * (2 + had_bias - has_bias)
    return total


def _folded_lookups(graph: Any, inits: dict[str, np.ndarray], consts: set[str]) -> tuple[str, ...]:
    """The float constants of a dynamo export named after an ``aten.embedding`` it folded: the
    rows of a table (a position table) for the exported length."""
    if not any(p.key == SIGNATURE for p in graph.metadata_props):
        return ()
    read = {i for n in graph.node for i in n.input}
    return tuple(
        sorted(
            name
            for name, value in inits.items()
            if FOLDED_LOOKUP.match(name) and name in read and name not in consts and value.dtype.kind == "f"
        )
    )


def _rewrite(model: Any, inits: dict[str, np.ndarray]) -> Any:
    """The model's graph with :mod:`sdk_core.model.onnx_rewrite` applied."""
    onnx = _onnx()
    from .onnx_rewrite import rewrite

    shapes: dict[str, tuple[Any, ...]] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        for v in (*inferred.graph.value_info, *inferred.graph.input):
            dims = v.type.tensor_type.shape.dim
            shapes[v.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    except Exception:  # shape inference is a help here, not a requirement
        pass
    graph = model.graph
    nodes = rewrite(graph, inits, shapes)
    del graph.node[:]
    graph.node.extend(nodes)
    return graph


def _spec_name(path: str | Path) -> str:
    return _NODE_BAD.sub("_", Path(path).stem)[:64]


def _stored(value: np.ndarray) -> np.ndarray:
    """An initializer as the spec keeps it: floats as float32, integers as int64."""
    if value.dtype.kind == "f":
        return np.array(value, dtype=np.float32)
    if value.dtype.kind in "iu":
        return np.array(value, dtype=np.int64)
    return np.array(value)


def _input_signature(given: Any, input_shape: Sequence[int] | None, path: str | Path) -> tuple[tuple[int, ...], str]:
    onnx = _onnx()
    t = given.type.tensor_type
    dtypes = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64", onnx.TensorProto.DOUBLE: "float64"}
    if t.elem_type not in dtypes:
        name = onnx.TensorProto.DataType.Name(t.elem_type)
        raise SdkError(f"input '{given.name}' is {name}; sdk import reads float32, float64 or int64 inputs")
    dims: list[int | None] = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]
    if input_shape is not None:
        want = [int(v) for v in input_shape]
        if len(want) != len(dims) or any(d is not None and d != w for d, w in zip(dims, want, strict=False)):
            shown = ",".join("?" if d is None else str(d) for d in dims)
            raise SdkError(
                f"--input-shape {','.join(map(str, want))} does not fit input '{given.name}' of shape ({shown})"
            )
        dims = list(want)
    if len(dims) < 2:
        raise SdkError(
            f"input '{given.name}' has {len(dims)} axes; sdk import needs a batch axis and at least one more"
        )
    if any(d is None for d in dims[1:]):
        shown = ",".join("?" if d is None else str(d) for d in dims)
        raise SdkError(f"input '{given.name}' has free axes ({shown}): give them with --input-shape (batch first)")
    return tuple(int(d) for d in dims[1:]), dtypes[t.elem_type]  # type: ignore[arg-type]


def _nodes(graph: Any, inits: dict[str, np.ndarray], input_name: str) -> tuple[list[_Node], dict[str, str]]:
    """The ONNX nodes as :class:`_Node` (Split's outputs each their own node) and, for each
    ONNX value a node computes, the name of that node."""
    names, made = _Names(), []
    produced: dict[str, str] = {}
    alias: dict[str, str] = {}  # Identity of an initializer: read the initializer
    for n in graph.node:
        if n.op_type == "Constant":
            continue
        if n.op_type == "Identity" and n.input[0] in inits:
            alias[n.output[0]] = n.input[0]
            continue
        ins: list[tuple[str, Any]] = []
        for name in n.input:
            name = alias.get(name, name)
            if not name:
                ins.append(("none", None))
            elif name == input_name:
                ins.append(("input", None))
            elif name in produced:
                ins.append(("node", produced[name]))
            elif name in inits:
                ins.append(("init", name))
            else:
                raise SdkError(f"node '{n.name}' ({n.op_type}) reads '{name}', which nothing computes")
        attributes = _attributes(n)
        if n.op_type == "BatchNormalization":  # a training-mode export: the spec's node trains in training mode anyway
            attributes.pop("training_mode", None)
        outs = list(n.output)
        if n.op_type == "Split":
            for k, out in enumerate(outs):
                if out:
                    node = _Node(
                        names.take(f"{n.name or 'split'}_{k}"), "Split", ins, {**attributes, "output": k}, n.name
                    )
                    if "num_outputs" not in attributes and len(ins) < 2:
                        node.attributes["num_outputs"] = len(outs)
                    made.append(node)
                    produced[out] = node.name
            continue
        extra = [o for o in outs[1:] if o]
        if extra and n.op_type not in EXTRA_OUTPUTS_OK:
            raise SdkError(f"node '{n.name}' ({n.op_type}) has {len(outs)} outputs; only its first is supported")
        node = _Node(names.take(n.name or n.op_type), n.op_type, ins, attributes, n.name)
        made.append(node)
        produced[outs[0]] = node.name
        for o in extra:
            produced.setdefault(f"\0unused:{o}", node.name)
            _refuse_read(graph, o, n)
    outputs = [o.name for o in graph.output]
    if len(outputs) != 1:
        raise SdkError(
            f"the model has {len(outputs)} outputs ({', '.join(outputs)}); sdk import takes models with one output"
        )
    if alias.get(outputs[0], outputs[0]) not in produced:
        raise SdkError(f"output '{outputs[0]}' is not computed by any node")
    return made, produced


def _tie(nodes: list[_Node], inits: dict[str, np.ndarray], consts: set[str]) -> list[_Node]:
    """A token table that several nodes read (a language model's output layer tied to its
    embedding: a Gather and a MatMul or Transpose) stays one weight: an ``Identity`` node
    holds it and the readers read that node. Other shared initializers are tensors the
    exporter stored once because their values are equal (the ones and zeros of freshly made
    norms, a folded batch norm's shifts): parameters that were never tied, so each reader
    keeps its own copy."""
    counts: dict[str, int] = {}
    tables: set[str] = set()
    for n in nodes:
        for position, (kind, ref) in enumerate(n.inputs):
            if kind == "init":
                counts[ref] = counts.get(ref, 0) + 1
                if n.op == "Gather" and position == 0:
                    tables.add(ref)
    tied = [
        name
        for name, count in counts.items()
        if count > 1
        and name in tables
        and name not in consts
        and not name.startswith("onnx::")
        and inits[name].dtype.kind == "f"
        and inits[name].size > 1
    ]
    # the dynamo exporter stores a tied output layer as the table's transpose, folded
    flipped = {
        name: table
        for name, count in counts.items()
        if name not in tables and name not in consts and inits[name].ndim == 2 and inits[name].dtype.kind == "f"
        for table in tables
        if inits[table].shape == inits[name].shape[::-1] and np.array_equal(inits[name], inits[table].T)
    }
    tied += sorted({t for t in flipped.values() if t not in tied})
    holders = [_Node(f"\0tied:{name}", "Identity", [("init", name)], {}, name) for name in tied]
    at = {name: h.name for name, h in zip(tied, holders, strict=True)}
    turned = [
        _Node(f"\0tied:{name}", "Transpose", [("node", at[table])], {"perm": [1, 0]}, name)
        for name, table in flipped.items()
    ]
    at.update({name: f"\0tied:{name}" for name in flipped})
    for n in nodes:
        n.inputs = [("node", at[ref]) if kind == "init" and ref in at else (kind, ref) for kind, ref in n.inputs]
    return holders + turned + nodes


def _refuse_read(graph: Any, value: str, node: Any) -> None:
    if any(value in n.input for n in graph.node) or any(value == o.name for o in graph.output):
        raise SdkError(
            f"node '{node.name}' ({node.op_type}): its output '{value}' is read; only its first output is supported"
        )


def _slot(op: str, position: int, value: np.ndarray, constant: bool = False) -> str:
    """What an initializer at ``position`` of ``op`` becomes: weight, stored or constant
    (``constant``: the output of a Constant node, never trained)."""
    if constant or value.dtype.kind != "f" or value.size <= 1:
        return "const"
    if position in STORED.get(op, ()):
        return "stored"
    return "weight" if position in WEIGHT_SLOTS.get(op, ()) else "const"


def _assemble(
    nodes: list[_Node],
    produced: dict[str, str],
    graph: Any,
    inits: dict[str, np.ndarray],
    consts: set[str],
    shape: tuple[int, ...],
    dtype: str,
    plan: dict[str, Any],
    path: str | Path,
) -> tuple[Imported, dict[str, str]]:
    """The spec (``plan``: the nodes that become layers) and the ONNX node -> spec node names."""
    owners: dict[str, int] = {}
    for n in nodes:
        for kind, ref in n.inputs:
            if kind == "init":
                owners[ref] = owners.get(ref, 0) + 1
    untied = sorted(
        name
        for name, count in owners.items()
        if count > 1 and name not in consts and inits[name].dtype.kind == "f" and inits[name].size > 1
    )
    notes: list[str] = []
    if untied:
        notes.append(
            f"{len(untied)} constant(s) the exporter shares between nodes ({', '.join(untied[:3])}) "
            "become weights of each node that reads them"
        )
    spec_nodes, weights, onnx_names = [], {}, {}
    skip = {name for name, (_, _, _, absorbed) in plan.items() for name in absorbed}
    taken = _Names()
    renamed: dict[str, str] = {}
    for n in nodes:
        if n.name in skip:
            continue
        if n.name in plan:
            layer, node_inputs, params, _ = plan[n.name]
            name = _layer_name(n, params, taken)
            renamed[n.name] = name
            for param, init_name, value in params:
                weights[f"{name}.{param}"] = value
                onnx_names[f"{name}.{param}"] = init_name
            spec_nodes.append((name, layer, node_inputs))
            continue
        name, op = _op_node(n, inits, consts, taken, weights, onnx_names)
        renamed[n.name] = name
        spec_nodes.append((name, op, None))
    # an embedding reads only the token ids: it goes first, where the spec wants it
    spec_nodes.sort(key=lambda node: not isinstance(node[1], S.Embedding))
    built = []
    for name, layer, node_inputs in spec_nodes:
        if node_inputs is None:  # an Op: its inputs name nodes (renamed) and its own tensors
            layer = attrs.evolve(layer, inputs=tuple(renamed.get(i, i) for i in layer.inputs))
            built.append(S.Node(name, layer))
        else:
            built.append(S.Node(name, layer, tuple(renamed.get(i, i) for i in node_inputs)))
    last = produced[graph.output[0].name]
    if built[-1].name != renamed.get(last, last):
        raise SdkError(f"the model's output is not its last node ('{last}'); sdk import needs the output computed last")
    try:
        spec = S.ModelSpec.from_nodes(shape, built, input_dtype="int64" if dtype == "int64" else "float32")
    except SpecError as exc:
        hint = ""
        if graph.input and "batch axis" in str(exc):
            dims = graph.input[0].type.tensor_type.shape.dim
            if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
                hint = (
                    f" (the file was exported for a fixed batch of {dims[0].dim_value}: export with a dynamic "
                    "batch axis, dynamic_axes= or dynamic_shapes=)"
                )
        raise SdkError(f"'{path}' cannot be imported: {exc}{hint}") from None
    if dtype == "float64":
        notes.append("the input is float64 in the file; the spec takes float32 (build with dtype='float64' to keep it)")
    return Imported(spec, weights, onnx_names, 0, {}, tuple(notes), untied=tuple(untied)), renamed


def _prefix_name(refs: list[str], taken: _Names) -> str | None:
    """The node name of weights whose ONNX names share one module prefix (``conv1.weight``,
    ``conv1.bias``: ``conv1``), if that name is free and valid."""
    prefixes = {ref.rsplit(".", 1)[0] for ref in refs if "." in ref}
    if len(prefixes) != 1:
        return None
    wish = next(iter(prefixes)).replace(".", "_")
    ok = taken.free(wish) and _NODE_BAD.sub("_", wish) == wish and len(wish) <= 64
    return taken.take(wish) if ok else None


def _layer_name(n: _Node, params: list[tuple[str, str, np.ndarray]], taken: _Names) -> str:
    return _prefix_name([p for _, p, _ in params], taken) or taken.take(_module_of(n.onnx_name, n.name))


def _op_node(
    n: _Node,
    inits: dict[str, np.ndarray],
    consts: set[str],
    taken: _Names,
    weights: dict[str, np.ndarray],
    onnx_names: dict[str, str],
) -> tuple[str, S.Op]:
    owned = [
        (pos, ref)
        for pos, (kind, ref) in enumerate(n.inputs)
        if kind == "init" and _slot(n.op, pos, inits[ref], ref in consts) != "const"
    ]
    refs = [ref for _, ref in owned]
    named = _prefix_name(refs if all("." in ref for ref in refs) else [], taken)  # keys: the last parts
    short = named is not None
    name = named or taken.take(_module_of(n.onnx_name, n.name))
    inputs, w, c = [], {}, {}
    for pos, (kind, ref) in enumerate(n.inputs):
        if kind == "none":
            inputs.append("")
        elif kind == "input":
            inputs.append("input")
        elif kind == "node":
            inputs.append(ref)
        else:
            value = inits[ref] if kind == "init" else ref
            what = _slot(n.op, pos, value, ref in consts) if kind == "init" else "const"
            key = (ref.rsplit(".", 1)[-1] if short else _key(ref)) if kind == "init" else f"c{pos}"
            key = key if key not in w and key not in c else f"{key}_{pos}"
            key = _key(key)
            if what == "const":
                c[key] = S.Constant(value)
            else:
                w[key] = S.Weight(value.shape, trainable=what == "weight")
                weights[f"{name}.{key}"] = value
                onnx_names[f"{name}.{key}"] = ref
            inputs.append(key)
    while inputs and inputs[-1] == "":
        inputs.pop()
    return name, S.Op(n.op, inputs=tuple(inputs), attributes=n.attributes, weights=w, constants=c)


__all__ = ["OPSETS", "Imported", "import_onnx", "list_ops", "read"]
