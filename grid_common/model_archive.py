"""torch.export model archives (.pt2): checked without torch, loaded without ever unpickling."""

from __future__ import annotations

import io
import json
import os
import pickletools
import re
import tempfile
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grid_common.shape_expressions import ShapeExpressionError, check_shape_expression

if TYPE_CHECKING:
    import torch
    from torch.export import ExportedProgram

MAX_CONFIG_BYTES = 16 << 20
MAX_GRAPH_BYTES = 64 << 20
MAX_SAMPLE_INPUTS_BYTES = 64 << 20
ALLOWED_OP_NAMESPACES = frozenset({"aten", "prims"})
# aten operators that touch the filesystem: a model has no business reading or writing files.
DENIED_OPS = frozenset({"aten.from_file", "aten.save"})
# Operators whose output is a view of their first input: writing to the view writes to the
# tensor it was taken from. (torch 2.13's aten operators whose schema returns an alias.)
_VIEW_OPS = frozenset(
    {"alias", "as_strided", "broadcast_to", "chunk", "conj", "contiguous", "detach", "diagonal"}
    | {"dsplit", "expand", "expand_as", "flatten", "hsplit", "imag", "lift_fresh", "movedim"}
    | {"moveaxis", "narrow", "numpy_T", "mH", "mT", "matrix_H", "adjoint", "permute", "ravel"}
    | {"real", "reshape", "reshape_as", "resolve_conj", "resolve_neg", "select", "slice"}
    | {"split", "split_with_sizes", "squeeze", "swapaxes", "swapdims", "t", "tensor_split"}
    | {"to", "transpose", "unbind", "unflatten", "unfold", "unsqueeze", "view", "view_as"}
    | {"view_as_complex", "view_as_real", "vsplit", "_conj", "_neg_view", "_reshape_alias"}
    | {"linalg_diagonal", "positive", "_indices", "_values", "indices", "values"}
)
# The batch normalization operators whose running_mean and running_var updates Grid accepts.
_BATCH_NORM_OPS = frozenset(
    {"batch_norm", "native_batch_norm", "_native_batch_norm_legit", "cudnn_batch_norm"}
    | {"_batch_norm_with_update", "miopen_batch_norm"}
)
# Operators that write into arguments other than an in-place `self` or a keyword-only `out`.
_WRITTEN_ARGS = {
    **dict.fromkeys(
        _BATCH_NORM_OPS | {"_batch_norm_impl_index", "batch_norm_update_stats", "instance_norm"},
        ("running_mean", "running_var"),
    ),
    "_fused_moving_avg_obs_fq_helper": ("running_min", "running_max", "scale", "zero_point"),
    "fused_moving_avg_obs_fake_quant": ("running_min", "running_max", "scale", "zero_point"),
    "rrelu_with_noise": ("noise",),
    "set_data": ("self",),
}
_RUNNING_STATS = ("running_mean", "running_var")
_BATCH_COUNTER = "num_batches_tracked"
_KEYWORD = 2  # torch.export's ArgumentKind.KEYWORD: out= tensors are keyword-only
# Python builtins the exporter emits for shape arithmetic. Nothing like operator.attrgetter or
# operator.call, which would let a graph of constants reach arbitrary Python.
ALLOWED_BUILTIN_TARGETS = frozenset(
    {f"_operator.{name}" for name in ("getitem", "add", "sub", "mul", "truediv", "floordiv")}
    | {f"_operator.{name}" for name in ("mod", "pow", "neg", "pos", "eq", "ne", "lt", "le")}
    | {f"_operator.{name}" for name in ("gt", "ge", "and_", "or_", "lshift", "rshift")}
    | {"math.trunc", "torch.sym_int", "torch.sym_float", "torch.sym_max", "torch.sym_min"}
    | {"torch.sym_ite", "torch.sym_not", "torch._sym_sqrt"}
)
MODEL_NAME = "model"
# Members that only carry the writer's bookkeeping; the loader needs none of them to be trusted.
_PLAIN_MEMBERS = frozenset(
    {"archive_format", "archive_version", ".data/version", ".data/serialization_id", "byteorder"}
)
_MEMBER = re.compile(
    r"^(?:models/(?P<model>[A-Za-z0-9_]+)\.json"
    r"|data/weights/(?P<wcfg>[A-Za-z0-9_]+)_weights_config\.json"
    r"|data/weights/weight_[0-9]+"
    r"|data/constants/(?P<ccfg>[A-Za-z0-9_]+)_constants_config\.json"
    r"|data/constants/tensor_[0-9]+"
    r"|data/sample_inputs/(?P<sample>[A-Za-z0-9_]+)\.pt)$"
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FQN = re.compile(r"^[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*$")
_SYMBOL = re.compile(r"^[a-z]+[0-9]+$")
# Argument kinds and signature entries that smuggle objects, code or subgraphs into a program.
_DENIED_KEYS = frozenset({"as_graph", "as_custom_obj", "as_operator"})
_INPUT_KINDS = frozenset({"user_input", "parameter", "buffer", "tensor_constant"})
_OUTPUT_KINDS = frozenset({"user_output", "buffer_mutation"})
_TREESPEC_TYPES = frozenset({None, "builtins.tuple", "builtins.list", "builtins.dict"})
# torch.save of plain tensors needs nothing but these to be rebuilt.
_SAMPLE_GLOBALS = frozenset(
    {"torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter"}
    | {"collections.OrderedDict", "torch.Size"}
)
_STORAGE_GLOBAL = re.compile(r"^torch\.[A-Za-z0-9]+Storage$")
_DTYPES = {
    1: ("uint8", 1),
    2: ("int8", 1),
    3: ("int16", 2),
    4: ("int32", 4),
    5: ("int64", 8),
    6: ("float16", 2),
    7: ("float32", 4),
    8: ("float64", 8),
    9: ("complex32", 4),
    10: ("complex64", 8),
    11: ("complex128", 16),
    12: ("bool", 1),
    13: ("bfloat16", 2),
    28: ("uint16", 2),
    29: ("float8_e4m3fn", 1),
    30: ("float8_e5m2", 1),
    31: ("float8_e4m3fnuz", 1),
    32: ("float8_e5m2fnuz", 1),
    33: ("float8_e8m0fnu", 1),
    34: ("uint32", 4),
    35: ("uint64", 8),
}
_NOT_EXPORT = "not a torch.export archive (.pt2): "
_PICKLED = "holds pickled data, which Grid never loads: "
_SAVE_HINT = "save the model with torch.export.save (Grid's client does this for you)"


class ModelArchiveError(ValueError):
    """A model archive Grid refuses to load; the message says why in a data scientist's terms."""


@dataclass(frozen=True)
class TensorInfo:
    """A named tensor of the program: its shape (None for a dimension that varies) and dtype."""

    name: str
    shape: list[int | None]
    dtype: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": self.shape, "dtype": self.dtype}


@dataclass(frozen=True)
class ArchiveInfo:
    """What a checked archive holds, summarized for a reviewer: operators, weights and shapes."""

    root: str
    operators: dict[str, int]
    parameters: list[TensorInfo]
    buffers: list[TensorInfo]
    constants: list[TensorInfo]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    parameter_count: int
    dialect: list[str] = field(default_factory=list)
    torch_version: str | None = None
    changed_buffers: list[str] = field(default_factory=list)  # BatchNorm running statistics

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description for review screens and audit entries."""
        return {
            "operators": self.operators,
            "parameter_count": self.parameter_count,
            "parameters": [t.to_json() for t in self.parameters],
            "buffers": [t.to_json() for t in self.buffers],
            "constants": [t.to_json() for t in self.constants],
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "dialect": self.dialect,
            "torch_version": self.torch_version,
            "changed_buffers": self.changed_buffers,
        }


@dataclass
class _Archive:
    root: str
    members: dict[str, zipfile.ZipInfo]
    graph: dict[str, Any]
    weights_config: dict[str, Any]
    constants_config: dict[str, Any]


def inspect_archive(path: Path, *, dp: bool = False) -> ArchiveInfo:
    """Check that `path` is a torch.export archive Grid can load safely, and summarize it.

    Reads the zip directory and the JSON members only; imports no torch and unpickles nothing.
    The graph may change only batch normalization's running statistics, and with `dp` (a job
    under differential privacy) no buffer at all.
    """
    with _open_zip(path) as zf:
        archive = _check(zf)
    changed = check_buffer_updates(archive.graph, dp=dp)
    return _summarize(archive, changed)


def load_exported_program(path: Path, workdir: Path) -> ExportedProgram:
    """Load a checked archive with torch.export.load, from a copy that holds nothing pickled.

    The copy is rebuilt in `workdir` from the checked members only: sample inputs (a pickle)
    are emptied and per-node debug metadata dropped. The loaded graph is then checked again,
    operator by operator, before anyone runs it.
    """
    import torch

    with _open_zip(path) as zf:
        archive = _check(zf)
        fd, name = tempfile.mkstemp(prefix="sanitized-", suffix=".pt2", dir=workdir)
        os.close(fd)
        clean = Path(name)
        try:
            _write_sanitized(zf, archive, clean)
        except BaseException:
            clean.unlink(missing_ok=True)
            raise
    try:
        ep = torch.export.load(clean)
    except MemoryError:
        raise
    except Exception as e:  # the deserializer's own checks: a broken graph or mismatched weights
        if "can't allocate memory" in str(e):
            raise MemoryError(str(e)) from e
        raise ModelArchiveError(f"the model archive could not be loaded: {_first_line(e)}") from e
    finally:
        clean.unlink(missing_ok=True)
    check_program(ep)
    return ep


def check_program(ep: ExportedProgram) -> None:
    """Refuse a loaded program that calls anything but allowed operators."""
    allowed = _allowed_callables()
    for node in ep.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if node.op != "call_function":
            raise ModelArchiveError(f"the model's graph has a {node.op!r} node, which Grid refuses")
        _check_callable(node.target, allowed)
    module = ep.module()
    for node in module.graph.nodes:
        if node.op == "call_function":
            _check_callable(node.target, allowed)
        elif node.op == "call_module" and node.target != "_guards_fn":
            raise ModelArchiveError(f"the model calls a submodule {node.target!r}")


@dataclass(frozen=True)
class _Write:
    """A graph's write to one of its weights: which, and whether it is a BatchNorm statistic."""

    kind: str  # parameter, buffer or tensor_constant
    fqn: str
    running_stat: bool = False
    counter: bool = False


def check_buffer_updates(program: dict[str, Any], *, dp: bool = False) -> list[str]:
    """The buffers a program's graph changes, refused unless they are BatchNorm statistics.

    `program` is the archive's JSON program (training IR with in-place writes, or a functional
    one whose writes are buffer_mutation outputs). A buffer counts as a running statistic only
    when the graph hands it, itself and not a view, to a batch normalization operator as its
    running_mean or running_var; `num_batches_tracked` is accepted when it is only incremented
    by one beside such statistics. Whatever a buffer is named, any other write is refused, as is
    a write to a parameter or a constant; with `dp` every buffer write is refused.
    """
    try:
        found = _weight_writes(program)
    except (AttributeError, TypeError, KeyError, IndexError) as e:  # a crafted, odd structure
        raise ModelArchiveError(_NOT_EXPORT + "its graph or signature is malformed") from e
    # Running statistics first, so a refusal under DP names the one a reader recognizes.
    writes = sorted(found, key=lambda w: not w.running_stat)
    stats_of = {w.fqn.rpartition(".")[0] for w in writes if w.running_stat}
    changed: set[str] = set()
    for w in writes:
        if w.kind != "buffer":
            kind = w.kind.replace("tensor_", "")
            raise ModelArchiveError(
                f"the model's forward writes to its {kind} {w.fqn!r}; Grid accepts graphs that "
                "change parameters only through the optimizer's steps"
            )
        recognized = w.running_stat or (w.counter and w.fqn.rpartition(".")[0] in stats_of)
        if dp:
            hint = (
                " (the running statistics of batch normalization, which also mixes the rows of "
                "a batch: use GroupNorm or LayerNorm instead)"
                if recognized
                else ""
            )
            raise ModelArchiveError(
                f"under differential privacy no model buffer may change, and the model's forward "
                f"changes its buffer {w.fqn!r}{hint}"
            )
        if not recognized:
            raise ModelArchiveError(
                f"the model's forward changes its buffer {w.fqn!r}, which would leave the domain "
                "with the result: a model may change only the running statistics of its batch "
                "normalization layers (running_mean, running_var, num_batches_tracked)"
            )
        changed.add(w.fqn)
    return sorted(changed)


def check_loaded_buffer_updates(ep: ExportedProgram, *, dp: bool = False) -> list[str]:
    """`check_buffer_updates` on a loaded program, functionalized first.

    Functionalization turns every write the graph would make at run time, through any view or
    operator, into an explicit buffer or parameter mutation output, so nothing the archive's own
    graph hides from the check at filing escapes this one.
    """
    from torch._export.serde.serialize import serialize

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation notes, nothing a job acts on
            functional = ep.run_decompositions({})
            program = json.loads(serialize(functional).exported_program)
    except MemoryError:
        raise
    except Exception as e:  # fail closed: a graph that cannot be checked does not train
        raise ModelArchiveError(
            f"the model's graph could not be checked for buffer writes: {_first_line(e)}"
        ) from e
    return check_buffer_updates(program, dp=dp)


def _tensor_names(arg: Any) -> list[str]:
    """The tensors an argument of a serialized node refers to."""
    names: list[str] = []
    for key, item in _walk(arg):
        if key == "as_tensor" and isinstance(item, dict) and isinstance(item.get("name"), str):
            names.append(item["name"])
        elif key == "as_tensors" and isinstance(item, dict) and isinstance(item.get("name"), str):
            names.append(item["name"])  # _walk yields each element of a list under its key
    return names


def _packet(target: str) -> str:
    parts = target.split(".")
    return parts[3] if target.startswith("torch.ops.") and len(parts) == 5 else ""


def _weight_writes(program: dict[str, Any]) -> list[_Write]:
    gm = program["graph_module"]
    signature = gm.get("signature") or {}
    weights: dict[str, tuple[str, str]] = {}  # placeholder -> (kind, fully qualified name)
    for spec in signature.get("input_specs") or []:
        kind = next(iter(spec))
        body = spec[kind]
        fqn = body.get(f"{kind}_name")
        arg = body.get("arg") or {}
        name = (arg.get("as_tensor") or arg).get("name")
        if kind in ("parameter", "buffer", "tensor_constant") and isinstance(name, str):
            weights[name] = (kind, str(fqn))
    root = {name: name for name in weights}  # a weight, or a view of one -> the weight
    produced: dict[str, tuple[dict[str, Any], int]] = {}
    writes: list[_Write] = []
    for node in gm["graph"]["nodes"]:
        target = node["target"]
        packet = _packet(target)
        inputs = [i for i in node.get("inputs") or [] if isinstance(i, dict)]
        outputs = [n for out in node.get("outputs") or [] for n in _tensor_names(out)]
        for position, name in enumerate(outputs):
            produced[name] = (node, position)
        if packet in _VIEW_OPS and inputs:
            source = next((root[n] for n in _tensor_names(inputs[0]) if n in root), None)
            if source is not None:
                root.update(dict.fromkeys(outputs, source))
        written = dict.fromkeys(_WRITTEN_ARGS.get(packet, ()))
        for position, item in enumerate(inputs):
            in_place = position == 0 and packet.endswith("_") and not packet.startswith("__")
            if not (in_place or item.get("kind") == _KEYWORD or item.get("name") in written):
                continue
            for name in _tensor_names(item.get("arg")):
                if name not in root:
                    continue
                kind, fqn = weights[root[name]]
                direct = kind == "buffer" and name == root[name]
                writes.append(
                    _Write(
                        kind,
                        fqn,
                        running_stat=direct
                        and packet in _BATCH_NORM_OPS
                        and item.get("name") in _RUNNING_STATS,
                        counter=direct and _is_increment(packet == "add_", fqn, inputs),
                    )
                )
    for spec in signature.get("output_specs") or []:
        kind = next(iter(spec))
        if kind not in ("buffer_mutation", "parameter_mutation"):
            continue
        body = spec[kind]
        fqn = str(body.get(f"{kind.partition('_')[0]}_name"))
        value = (body.get("arg") or {}).get("name")
        source = next((p for p, (k, f) in weights.items() if f == fqn), None)
        if kind == "parameter_mutation" or value not in produced or source is None:
            writes.append(_Write(kind.partition("_")[0], fqn))
            continue
        node, position = produced[value]
        packet = _packet(node["target"])
        inputs = [i for i in node.get("inputs") or [] if isinstance(i, dict)]
        stat = _RUNNING_STATS[position - 3] if position in (3, 4) else None
        fed = [n for i in inputs if i.get("name") == stat for n in _tensor_names(i.get("arg"))]
        writes.append(
            _Write(
                "buffer",
                fqn,
                running_stat=packet == "_native_batch_norm_legit_functional" and fed == [source],
                counter=packet == "add"
                and _tensor_names(inputs[0].get("arg") if inputs else None) == [source]
                and _is_increment(True, fqn, inputs),
            )
        )
    return writes


def _is_increment(adds: bool, fqn: str, inputs: list[dict[str, Any]]) -> bool:
    """Whether a write is BatchNorm's `num_batches_tracked += 1`."""
    if not adds or fqn.rpartition(".")[2] != _BATCH_COUNTER or len(inputs) < 2:
        return False
    other = inputs[1].get("arg") or {}
    return other.get("as_int") == 1 and all(i.get("arg") == {"as_int": 1} for i in inputs[2:])


def export_for_training(module: torch.nn.Module, example: torch.Tensor) -> ExportedProgram:
    """Export `module` in train mode with a dynamic batch dimension, as Grid's workers need.

    `example` is a batch of at least two rows (a batch of one would fix the batch size).
    """
    import torch
    from torch.export import Dim

    training = module.training
    module.train()
    try:
        batch = Dim("batch", min=1)
        return torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    finally:
        module.train(training)


def save_for_training(
    module: torch.nn.Module, example: torch.Tensor, path: Path, *, dp: bool = False
) -> ArchiveInfo:
    """Export `module` for training and save it as a .pt2 archive; returns what Grid will see.

    `dp`: checked as for a job under differential privacy, where no buffer may change.
    """
    import torch

    torch.export.save(export_for_training(module, example), str(path))
    return inspect_archive(path, dp=dp)


def _first_line(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0][:500]


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        with Path(path).open("rb") as fh:
            head = fh.read(2)
    except OSError as e:
        raise ModelArchiveError(f"cannot read the model archive: {e.strerror}") from e
    if head[:1] == b"\x80":
        raise ModelArchiveError(_PICKLED + f"the file is a Python pickle; {_SAVE_HINT}")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ModelArchiveError(_NOT_EXPORT + f"it is not a zip file ({e}); {_SAVE_HINT}") from e


def _check(zf: zipfile.ZipFile) -> _Archive:
    infos = zf.infolist()
    if not infos:
        raise ModelArchiveError(_NOT_EXPORT + "the zip file is empty")
    roots = {info.filename.split("/", 1)[0] for info in infos}
    names = [info.filename for info in infos]
    if any(n.endswith(".pkl") for n in names):
        pkl = next(n for n in names if n.endswith(".pkl"))
        raise ModelArchiveError(
            _PICKLED + f"it has {pkl!r}, so it is a torch.save file, not an export; {_SAVE_HINT}"
        )
    if len(roots) != 1 or any("/" not in n for n in names):
        raise ModelArchiveError(_NOT_EXPORT + "its files are not all inside one top-level folder")
    root = roots.pop()
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        rel = info.filename.split("/", 1)[1]
        if rel in members:
            raise ModelArchiveError(_NOT_EXPORT + f"the zip lists {info.filename!r} twice")
        members[rel] = info
    if "archive_format" not in members:
        raise ModelArchiveError(_NOT_EXPORT + f"it has no archive_format entry; {_SAVE_HINT}")
    if _read(zf, members, "archive_format", 64).strip() != b"pt2":
        raise ModelArchiveError(_NOT_EXPORT + "its archive_format is not pt2")
    if "archive_version" in members and _read(zf, members, "archive_version", 64).strip() != b"0":
        raise ModelArchiveError(_NOT_EXPORT + "its archive version is not one this torch reads")
    for rel, info in members.items():
        if info.flag_bits & 0x1:
            raise ModelArchiveError(_NOT_EXPORT + f"{rel!r} is encrypted")
        if info.compress_type != zipfile.ZIP_STORED:
            raise ModelArchiveError(
                _NOT_EXPORT + f"{rel!r} is compressed, which torch.export.save never does"
            )
        if rel in _PLAIN_MEMBERS:
            continue
        match = _MEMBER.match(rel)
        if match is None:
            if rel.endswith(".pt") or rel.startswith(("data/constants/", "data/weights/")):
                raise ModelArchiveError(_PICKLED + f"{rel!r} is not a raw tensor file")
            raise ModelArchiveError(
                f"the model archive holds {rel!r}, which Grid does not accept: only a graph, "
                "weights and constants (no extra files, compiled code or custom objects)"
            )
        named = next((g for g in match.groups() if g is not None), MODEL_NAME)
        if named != MODEL_NAME:
            raise ModelArchiveError(
                f"the model archive holds a program named {named!r}; Grid needs exactly one, "
                f"named {MODEL_NAME!r}, as torch.export.save writes"
            )
    for required in (
        f"models/{MODEL_NAME}.json",
        f"data/weights/{MODEL_NAME}_weights_config.json",
        f"data/constants/{MODEL_NAME}_constants_config.json",
    ):
        if required not in members:
            raise ModelArchiveError(_NOT_EXPORT + f"it has no {required!r}; {_SAVE_HINT}")
    sample = f"data/sample_inputs/{MODEL_NAME}.pt"
    if sample in members:
        _check_sample_inputs(_read(zf, members, sample, MAX_SAMPLE_INPUTS_BYTES), sample)
    archive = _Archive(
        root=root,
        members=members,
        graph=_json(zf, members, f"models/{MODEL_NAME}.json", MAX_GRAPH_BYTES),
        weights_config=_payload_config(zf, members, "weights"),
        constants_config=_payload_config(zf, members, "constants"),
    )
    _check_graph(archive.graph)
    _check_payloads(archive)
    return archive


def _read(zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], rel: str, limit: int) -> bytes:
    info = members[rel]
    if info.file_size > limit:
        raise ModelArchiveError(f"the model archive's {rel!r} is larger than {limit:,} bytes")
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ModelArchiveError(_NOT_EXPORT + f"{rel!r} cannot be read: {e}") from e


def _json(zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], rel: str, limit: int) -> Any:
    try:
        value = json.loads(_read(zf, members, rel, limit))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelArchiveError(_NOT_EXPORT + f"{rel!r} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise ModelArchiveError(_NOT_EXPORT + f"{rel!r} is not a JSON object")
    return value


def _payload_config(
    zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], kind: str
) -> dict[str, Any]:
    rel = f"data/{kind}/{MODEL_NAME}_{kind}_config.json"
    config = _json(zf, members, rel, MAX_CONFIG_BYTES).get("config")
    if not isinstance(config, dict):
        raise ModelArchiveError(_NOT_EXPORT + f"{rel!r} has no config")
    return config


def _check_payloads(archive: _Archive) -> None:
    for kind, config, folder, prefix in (
        ("weight", archive.weights_config, "data/weights/", "weight_"),
        ("constant", archive.constants_config, "data/constants/", "tensor_"),
    ):
        for fqn, meta in config.items():
            if not isinstance(meta, dict):
                raise ModelArchiveError(_NOT_EXPORT + f"{kind} {fqn!r} has no description")
            if meta.get("use_pickle") is not False:
                raise ModelArchiveError(
                    _PICKLED + f"{kind} {fqn!r} is stored as a pickle, not as raw tensor bytes"
                )
            path_name = meta.get("path_name")
            if not (
                isinstance(path_name, str)
                and re.fullmatch(prefix + "[0-9]+", path_name)
                and folder + path_name in archive.members
            ):
                raise ModelArchiveError(
                    f"the model archive's {kind} {fqn!r} is stored as {path_name!r}, which is not "
                    "a raw tensor file of the archive (custom objects are refused)"
                )
            if not _FQN.match(fqn):
                raise ModelArchiveError(f"the model archive names a {kind} {fqn!r}: bad name")
            if not isinstance(meta.get("tensor_meta"), dict):
                raise ModelArchiveError(_NOT_EXPORT + f"{kind} {fqn!r} has no tensor description")


def _walk(value: Any) -> Iterator[tuple[str | None, Any]]:
    stack: list[tuple[str | None, Any]] = [(None, value)]
    while stack:
        key, item = stack.pop()
        yield key, item
        if isinstance(item, dict):
            stack.extend(item.items())
        elif isinstance(item, list):
            stack.extend((key, v) for v in item)


def _check_graph(program: dict[str, Any]) -> None:
    if program.get("guards_code"):
        raise ModelArchiveError(
            "the model archive carries guard code (Python source), which Grid never runs"
        )
    gm = program.get("graph_module")
    graph = gm.get("graph") if isinstance(gm, dict) else None
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        raise ModelArchiveError(_NOT_EXPORT + "its program has no graph")
    assert isinstance(gm, dict)
    symbols = program.get("range_constraints") or {}
    if not isinstance(symbols, dict):
        raise ModelArchiveError(_NOT_EXPORT + "its range constraints are malformed")
    for name in symbols:
        if not _SYMBOL.match(name):
            raise ModelArchiveError(f"the model's graph has a shape symbol {name!r}: bad name")
    for key, item in _walk(program):
        if key in _DENIED_KEYS:
            raise ModelArchiveError(
                f"the model passes a {key[3:].replace('_', ' ')} to an operator; Grid accepts "
                "graphs of tensor operators only (no custom objects, operators or subgraphs)"
            )
        if key == "expr_str":
            _check_sym_expr(item, symbols)
        if key == "name" and not (isinstance(item, str) and _IDENTIFIER.match(item)):
            raise ModelArchiveError(f"the model's graph has a value named {item!r}: bad name")
    if graph.get("custom_obj_values"):
        raise ModelArchiveError("the model's graph holds custom objects, which Grid refuses")
    for node in graph["nodes"]:
        target = node.get("target") if isinstance(node, dict) else None
        if not isinstance(target, str):
            raise ModelArchiveError(_NOT_EXPORT + "a node of its graph has no target")
        _check_target_name(target)
    signature = gm.get("signature") or {}
    user_inputs = 0
    for spec in signature.get("input_specs") or []:
        kind = _only_key(spec)
        if kind not in _INPUT_KINDS:
            raise ModelArchiveError(f"the model takes a {kind} input, which Grid refuses")
        user_inputs += kind == "user_input"
        for k in ("parameter_name", "buffer_name", "tensor_constant_name"):
            fqn = spec[kind].get(k)
            if fqn is not None and not (isinstance(fqn, str) and _FQN.match(fqn)):
                raise ModelArchiveError(f"the model names a weight {fqn!r}: bad name")
    user_outputs = 0
    for spec in signature.get("output_specs") or []:
        kind = _only_key(spec)
        if kind not in _OUTPUT_KINDS:
            raise ModelArchiveError(f"the model produces a {kind} output, which Grid refuses")
        user_outputs += kind == "user_output"
        fqn = spec[kind].get("buffer_name")
        if fqn is not None and not (isinstance(fqn, str) and _FQN.match(fqn)):
            raise ModelArchiveError(f"the model names a buffer {fqn!r}: bad name")
    if user_inputs != 1 or user_outputs != 1:
        raise ModelArchiveError(
            f"the model takes {user_inputs} tensors and returns {user_outputs}; Grid trains "
            "models that take one tensor (a batch of features) and return one tensor"
        )
    for entry in gm.get("module_call_graph") or []:
        fqn = entry.get("fqn") if isinstance(entry, dict) else None
        if not isinstance(fqn, str) or (fqn and not _FQN.match(fqn)):
            raise ModelArchiveError(f"the model has a submodule named {fqn!r}: bad name")
        sig = entry.get("signature") or {}
        for spec_key in ("in_spec", "out_spec"):
            if spec_key in sig:
                _check_treespec(sig[spec_key])
        for arg in sig.get("forward_arg_names") or []:
            if not (isinstance(arg, str) and _IDENTIFIER.match(arg)):
                raise ModelArchiveError(f"the model's forward has an argument {arg!r}: bad name")


def _only_key(spec: Any) -> str:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ModelArchiveError(_NOT_EXPORT + "its signature is malformed")
    kind = next(iter(spec))
    if not isinstance(spec[kind], dict):
        raise ModelArchiveError(_NOT_EXPORT + "its signature is malformed")
    return str(kind)


def _check_treespec(text: Any) -> None:
    try:
        spec = json.loads(text)
    except (TypeError, json.JSONDecodeError) as e:
        raise ModelArchiveError(_NOT_EXPORT + "its input/output structure is malformed") from e
    for key, item in _walk(spec):
        if key == "type" and item not in _TREESPEC_TYPES:
            raise ModelArchiveError(
                f"the model's inputs or outputs use a {item!r}; Grid accepts tensors, tuples, "
                "lists and dicts"
            )


def _check_target_name(target: str) -> None:
    parts = target.split(".")
    if target.startswith("torch.ops.") and len(parts) == 5:
        namespace = parts[2]
        if namespace in ALLOWED_OP_NAMESPACES and f"{namespace}.{parts[3]}" not in DENIED_OPS:
            return
    elif target in ALLOWED_BUILTIN_TARGETS:
        return
    raise ModelArchiveError(
        f"the model uses {target!r}, which Grid does not run: only standard tensor operators "
        f"({', '.join(sorted(ALLOWED_OP_NAMESPACES))}) and shape arithmetic are allowed"
    )


def _check_sym_expr(expr: Any, symbols: dict[str, Any]) -> None:
    # torch's deserializer hands these strings to sympy.sympify, which evaluates Python, so only
    # what Grid's own grammar of shape arithmetic parses may pass.
    try:
        check_shape_expression(expr, symbols)
    except ShapeExpressionError as e:
        shown = repr(expr)[:200] if isinstance(expr, str) else type(expr).__name__
        raise ModelArchiveError(
            f"the model's graph has a shape expression {shown} that Grid refuses: {e}"
        ) from e


def _check_sample_inputs(data: bytes, rel: str) -> None:
    # Never loaded (the loader gets an empty member instead), but an archive whose example inputs
    # reach for anything but plain tensors was crafted, so say so at submission.
    if not data:
        return
    pickles: list[tuple[str, bytes]] = []
    if zipfile.is_zipfile(io.BytesIO(data)):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                for info in inner.infolist():
                    if info.filename.endswith(".pkl"):
                        if info.file_size > MAX_SAMPLE_INPUTS_BYTES:
                            raise ModelArchiveError(_PICKLED + f"{rel!r} is too large")
                        pickles.append((info.filename, inner.read(info)))
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
            raise ModelArchiveError(_NOT_EXPORT + f"{rel!r} is a broken zip: {e}") from e
    else:
        pickles.append((rel, data))
    for name, payload in pickles:
        for ref in _pickle_globals(payload, name):
            if ref not in _SAMPLE_GLOBALS and not _STORAGE_GLOBAL.match(ref):
                raise ModelArchiveError(
                    _PICKLED + f"{rel!r} refers to {ref!r}, not just to tensors; it was not "
                    "written by torch.export.save"
                )


def _pickle_globals(data: bytes, name: str) -> set[str]:
    """Every global a pickle would import, found by reading its opcodes (nothing is executed).

    torch.save (protocol 2) imports through GLOBAL only; the other import opcodes take their
    names from the stack, which a crafted pickle can arrange, so they are refused outright.
    """
    found: set[str] = set()
    try:
        for op, arg, _pos in pickletools.genops(data):
            if op.name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                found.add(f"{module}.{attr}")
            elif op.name in ("STACK_GLOBAL", "INST") or op.name.startswith("EXT"):
                raise ModelArchiveError(
                    _PICKLED + f"{name!r} imports code in a way torch.export.save never writes"
                )
    except ModelArchiveError:
        raise
    except Exception as e:  # truncated or malformed opcodes
        raise ModelArchiveError(_PICKLED + f"{name!r} is a malformed pickle: {e}") from e
    return found


def _write_sanitized(zf: zipfile.ZipFile, archive: _Archive, target: Path) -> None:
    program = json.loads(json.dumps(archive.graph))
    gm = program["graph_module"]
    # Debug metadata (stack traces, module paths) is free text that reaches generated code.
    gm["metadata"] = {}
    for node in gm["graph"]["nodes"]:
        node["metadata"] = {}
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as out:
        for rel, info in archive.members.items():
            if rel.startswith("data/sample_inputs/"):
                continue
            data = json.dumps(program).encode() if rel.startswith("models/") else zf.read(info)
            out.writestr(f"archive/{rel}", data)
        out.writestr(f"archive/data/sample_inputs/{MODEL_NAME}.pt", b"")


def _allowed_callables() -> set[Any]:
    import math
    import operator

    import torch

    allowed: set[Any] = set()
    for name in ALLOWED_BUILTIN_TARGETS:
        module, _, attr = name.partition(".")
        source = {"_operator": operator, "math": math, "torch": torch}[module]
        allowed.add(getattr(source, attr))
    return allowed


def _check_callable(target: Any, allowed: set[Any]) -> None:
    import torch

    if isinstance(target, torch._ops.OpOverload):
        namespace, _, op = target.name().partition("::")  # "aten::add.Tensor"
        packet = op.split(".")[0]
        if namespace in ALLOWED_OP_NAMESPACES and f"{namespace}.{packet}" not in DENIED_OPS:
            return
    elif not isinstance(target, torch._ops.HigherOrderOperator) and _hashable_in(target, allowed):
        return
    raise ModelArchiveError(f"the model calls {target!r}, which Grid does not run")


def _hashable_in(target: Any, allowed: set[Any]) -> bool:
    try:
        return target in allowed
    except TypeError:
        return False


def _shape(meta: dict[str, Any]) -> list[int | None]:
    shape: list[int | None] = []
    for size in meta.get("sizes") or []:
        value = size.get("as_int") if isinstance(size, dict) else None
        shape.append(value if isinstance(value, int) else None)
    return shape


def _dtype(meta: dict[str, Any]) -> str:
    return _DTYPES.get(meta.get("dtype", 0), ("unknown", 0))[0]


def _summarize(archive: _Archive, changed_buffers: list[str]) -> ArchiveInfo:
    program = archive.graph
    gm = program["graph_module"]
    graph = gm["graph"]
    values = graph.get("tensor_values") or {}

    def info(label: str, arg_name: str) -> TensorInfo:
        meta = values.get(arg_name) or {}
        return TensorInfo(name=label, shape=_shape(meta), dtype=_dtype(meta))

    operators = Counter(
        node["target"].removeprefix("torch.ops.").replace("_operator.", "operator.")
        for node in graph["nodes"]
    )
    parameters: list[TensorInfo] = []
    buffers: list[TensorInfo] = []
    constants: list[TensorInfo] = []
    inputs: list[TensorInfo] = []
    for spec in gm["signature"].get("input_specs") or []:
        kind = next(iter(spec))
        body = spec[kind]
        arg = body.get("arg") or {}
        arg_name = (arg.get("as_tensor") or arg).get("name", "")
        if kind == "parameter":
            parameters.append(info(body["parameter_name"], arg_name))
        elif kind == "buffer":
            buffers.append(info(body["buffer_name"], arg_name))
        elif kind == "tensor_constant":
            constants.append(info(body["tensor_constant_name"], arg_name))
        else:
            inputs.append(info(arg_name, arg_name))
    outputs = []
    for spec in gm["signature"].get("output_specs") or []:
        if "user_output" in spec:
            arg = spec["user_output"].get("arg") or {}
            name = (arg.get("as_tensor") or {}).get("name", "")
            outputs.append(info(name, name))
    count = 0
    for p in parameters:
        n = 1
        for d in p.shape:
            n *= d or 0
        count += n
    return ArchiveInfo(
        root=archive.root,
        operators=dict(sorted(operators.items())),
        parameters=parameters,
        buffers=buffers,
        constants=constants,
        inputs=inputs,
        outputs=outputs,
        parameter_count=count,
        dialect=[str(v) for v in program.get("verifiers") or []],
        torch_version=program.get("torch_version"),
        changed_buffers=changed_buffers,
    )
