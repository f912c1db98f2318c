"""Model archives: real exports pass; pickles, crafted archives and junk are refused unrun."""

from __future__ import annotations

import contextlib
import io
import json
import operator
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from grid_common.model_archive import (
    ModelArchiveError,
    check_program,
    inspect_archive,
    load_exported_program,
    save_for_training,
)

Members = dict[str, bytes]


class Payload:
    """Unpickling this creates a directory: proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.marker,))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(8, 16)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(torch.relu(self.hidden(x))))


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("archive") / "good.pt2"
    save_for_training(Net(), torch.randn(4, 8), path)
    return path


def read_members(path: Path) -> Members:
    with zipfile.ZipFile(path) as zf:
        return {name.split("/", 1)[1]: zf.read(name) for name in zf.namelist()}


def write_members(path: Path, members: Members, **options: Any) -> Path:
    with zipfile.ZipFile(path, "w", **options) as zf:
        for name, data in members.items():
            zf.writestr(f"model/{name}", data)
    return path


def torch_pickle(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def refused(path: Path, message: str, workdir: Path) -> None:
    """Both entry points refuse `path` with `message`; neither ever unpickles it."""
    with pytest.raises(ModelArchiveError, match=message):
        inspect_archive(path)
    with pytest.raises(ModelArchiveError, match=message):
        load_exported_program(path, workdir)


def test_a_real_export_is_summarized_loaded_and_trains(good: Path, tmp_path: Path) -> None:
    info = inspect_archive(good)
    summary = info.summary()
    assert summary["operators"] == {
        "aten.dropout.default": 1,
        "aten.linear.default": 2,
        "aten.relu.default": 1,
    }
    assert info.parameter_count == 8 * 16 + 16 + 16 * 3 + 3
    assert [(p.name, p.shape) for p in info.parameters] == [
        ("hidden.weight", [16, 8]),
        ("hidden.bias", [16]),
        ("out.weight", [3, 16]),
        ("out.bias", [3]),
    ]
    assert [(t.shape, t.dtype) for t in info.inputs] == [([None, 8], "float32")]
    assert [t.shape for t in info.outputs] == [[None, 3]]
    assert summary["dialect"] == ["TRAINING"]
    json.dumps(summary)

    module = load_exported_program(good, tmp_path).module()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    losses = []
    for _ in range(20):
        loss = nn.functional.cross_entropy(module(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert module(torch.randn(1, 8)).shape == (1, 3)
    assert list(tmp_path.iterdir()) == []  # the sanitized copy is not left behind


@pytest.mark.parametrize("kind", ["torch.save", "pickle"])
def test_a_pickle_renamed_to_pt2_is_refused_unrun(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "model.pt2"
    payload = Payload(marker)
    path.write_bytes(torch_pickle(payload) if kind == "torch.save" else pickle.dumps(payload))
    refused(path, "holds pickled data, which Grid never loads", tmp_path)
    assert not marker.exists()


def crafted_sample_inputs(members: Members, marker: Path) -> Members:
    return members | {"data/sample_inputs/model.pt": torch_pickle(Payload(marker))}


def crafted_pickled_weight(members: Members, marker: Path) -> Members:
    config = json.loads(members["data/weights/model_weights_config.json"])
    entry = config["config"]["hidden.weight"]
    entry["use_pickle"] = True
    return members | {
        "data/weights/model_weights_config.json": json.dumps(config).encode(),
        f"data/weights/{entry['path_name']}": torch_pickle(Payload(marker)),
    }


def edit_graph(members: Members, change: Callable[[dict[str, Any]], None]) -> Members:
    program = json.loads(members["models/model.json"])
    change(program)
    return members | {"models/model.json": json.dumps(program).encode()}


def crafted_shape_expression(members: Members, marker: Path) -> Members:
    # torch hands shape expressions to sympy.sympify, which evaluates them as Python.
    def change(program: dict[str, Any]) -> None:
        for value in program["graph_module"]["graph"]["tensor_values"].values():
            for size in value["sizes"]:
                if "as_expr" in size:
                    expr = size["as_expr"]
                    expr["expr_str"] = (
                        f"__import__('os').mkdir({str(marker)!r}) or {expr['expr_str']}"
                    )

    return edit_graph(members, change)


def crafted_guard_code(members: Members, marker: Path) -> Members:
    # Guard code becomes Python source that ExportedProgram.module() compiles and runs.
    def change(program: dict[str, Any]) -> None:
        program["guards_code"] = [f"__import__('os').mkdir({str(marker)!r}) is None"]

    return edit_graph(members, change)


CRAFTED = {
    "sample inputs": (crafted_sample_inputs, "refers to 'posix.mkdir'"),
    "pickled weight": (crafted_pickled_weight, "weight 'hidden.weight' is stored as a pickle"),
    "shape expression": (crafted_shape_expression, "shape expression"),
    "guard code": (crafted_guard_code, "guard code"),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_archives_are_refused_and_never_run(good: Path, tmp_path: Path, case: str) -> None:
    craft, message = CRAFTED[case]
    marker = tmp_path / "ran"
    path = write_members(tmp_path / "crafted.pt2", craft(read_members(good), marker))
    refused(path, message, tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("case", CRAFTED)
def test_torch_export_load_alone_would_run_them(good: Path, tmp_path: Path, case: str) -> None:
    # The threat the checks above stop is real: torch's own loader runs every one of these.
    craft, _ = CRAFTED[case]
    marker = tmp_path / "ran"
    path = write_members(tmp_path / "crafted.pt2", craft(read_members(good), marker))
    with contextlib.suppress(Exception):  # the payload runs before whatever breaks afterwards
        torch.export.load(path).module()(torch.randn(3, 8))
    assert marker.exists()


def set_target(target: str) -> Callable[[dict[str, Any]], None]:
    def change(program: dict[str, Any]) -> None:
        program["graph_module"]["graph"]["nodes"][0]["target"] = target

    return change


def rename_parameter(program: dict[str, Any]) -> None:
    spec = program["graph_module"]["signature"]["input_specs"][0]["parameter"]
    spec["parameter_name"] = 'hidden") or print("x") or ("'


def custom_object_argument(program: dict[str, Any]) -> None:
    node = program["graph_module"]["graph"]["nodes"][0]
    node["inputs"][0]["arg"] = {"as_custom_obj": {"name": "obj", "class_fqn": "x.Y"}}


def second_input(program: dict[str, Any]) -> None:
    specs = program["graph_module"]["signature"]["input_specs"]
    specs.append({"user_input": {"arg": {"as_tensor": {"name": "other"}}}})


def odd_structure(program: dict[str, Any]) -> None:
    entry = program["graph_module"]["module_call_graph"][0]["signature"]
    entry["in_spec"] = json.dumps([1, {"type": "collections.defaultdict", "children_spec": []}])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (set_target("torch.ops.aten.from_file.default"), "uses 'torch.ops.aten.from_file"),
        (set_target("torch.ops.mylib.custom.default"), "uses 'torch.ops.mylib.custom.default'"),
        (set_target("_operator.attrgetter"), "uses '_operator.attrgetter'"),
        (set_target("torch.load"), "uses 'torch.load'"),
        (set_target("builtins.exec"), "uses 'builtins.exec'"),
        (rename_parameter, "names a weight .*: bad name"),
        (custom_object_argument, "passes a custom obj to an operator"),
        (second_input, "takes 2 tensors and returns 1"),
        (odd_structure, "use a 'collections.defaultdict'"),
    ],
)
def test_graphs_beyond_tensor_operators_are_refused(
    good: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    path = write_members(tmp_path / "edited.pt2", edit_graph(read_members(good), change))
    refused(path, message, tmp_path)


def with_member(name: str, data: bytes) -> Callable[[Members], Members]:
    return lambda members: members | {name: data}


def without_member(name: str) -> Callable[[Members], Members]:
    return lambda members: {k: v for k, v in members.items() if k != name}


def custom_object_constant(members: Members) -> Members:
    config = {"config": {"obj": {"path_name": "custom_obj_0", "is_param": False}}}
    config["config"]["obj"] |= {"use_pickle": False, "tensor_meta": None}
    return members | {
        "data/constants/model_constants_config.json": json.dumps(config).encode(),
        "data/constants/custom_obj_0": b"\x80\x02.",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (with_member("extra/notes.txt", b"hi"), "holds 'extra/notes.txt', which Grid does not"),
        (with_member("models/other.json", b"{}"), "a program named 'other'"),
        (with_member("data/aotinductor/model/x.so", b"\x7fELF"), "data/aotinductor"),
        (with_member("data/weights/model.pt", b"\x80\x02."), "pickled data"),
        (custom_object_constant, "pickled data"),
        (without_member("archive_format"), "has no archive_format entry"),
        (with_member("archive_format", b"zip"), "its archive_format is not pt2"),
        (without_member("models/model.json"), "has no 'models/model.json'"),
        (with_member("models/model.json", b"{not json"), "is not valid JSON"),
    ],
)
def test_archive_layout_is_checked(
    good: Path, tmp_path: Path, change: Callable[[Members], Members], message: str
) -> None:
    path = write_members(tmp_path / "edited.pt2", change(read_members(good)))
    refused(path, message, tmp_path)


def test_zips_that_are_not_exports(good: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain.pt2"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("readme.txt", "hello")
    refused(plain, "not a torch.export archive .*one top-level folder", tmp_path)

    compressed = write_members(
        tmp_path / "deflated.pt2", read_members(good), compression=zipfile.ZIP_DEFLATED
    )
    refused(compressed, "is compressed", tmp_path)

    twice = tmp_path / "twice.pt2"
    with zipfile.ZipFile(twice, "w") as zf, pytest.warns(UserWarning, match="Duplicate"):
        for name, data in read_members(good).items():
            zf.writestr(f"model/{name}", data)
        zf.writestr("model/models/model.json", b"{}")
    refused(twice, "lists 'model/models/model.json' twice", tmp_path)


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not a zip", os.urandom(4096)])
def test_garbage_is_not_an_archive(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.pt2"
    path.write_bytes(content)
    with pytest.raises(ModelArchiveError, match=r"not a torch.export archive|pickled data"):
        inspect_archive(path)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelArchiveError, match="cannot read the model archive"):
        inspect_archive(tmp_path / "absent.pt2")


def test_loaded_programs_are_checked_operator_by_operator(good: Path, tmp_path: Path) -> None:
    program = load_exported_program(good, tmp_path)
    check_program(program)
    node = next(n for n in program.graph.nodes if n.op == "call_function")
    node.target = operator.attrgetter
    with pytest.raises(ModelArchiveError, match=r"calls <class 'operator\.attrgetter'>"):
        check_program(program)


def test_inspection_needs_no_torch(good: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from grid_common.model_archive import inspect_archive; "
        f"inspect_archive({str(good)!r}); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


class _Writer(nn.Module):
    """A linear model whose forward writes a row of its input somewhere (`how`)."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.linear = nn.Linear(8, 3)
        self.register_buffer("stash", torch.zeros(2, 8))
        self.register_buffer("running_mean", torch.zeros(8))
        self.register_buffer("running_var", torch.ones(8))
        self.register_buffer("num_batches_tracked", torch.tensor(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.how == "copy":
            self.stash.copy_(x[:2])
        elif self.how == "view":  # through a view of the buffer
            self.stash.view(-1)[:8].copy_(x[0])
        elif self.how == "out":  # an out= argument
            torch.mean(x, 0, out=self.running_mean)
        elif self.how == "batch_norm_of_a_view":  # a real batch norm, fed a view
            stats = self.stash.view(-1)[:8]
            x = nn.functional.batch_norm(x, stats, self.running_var, training=True)
        elif self.how == "counter_alone":  # named like BatchNorm's, beside no batch norm
            self.num_batches_tracked.add_(1)
        elif self.how == "parameter":
            self.linear.bias.detach().copy_(x[0, :3])
        return self.linear(x)


WRITES = {
    "copy": "buffer 'stash'",
    "view": "buffer 'stash'",
    "out": "buffer 'running_mean'",
    "batch_norm_of_a_view": "buffer 'stash'",
    "counter_alone": "buffer 'num_batches_tracked'",
    "parameter": "parameter 'linear.bias'",
}


@pytest.mark.parametrize("how", list(WRITES))
def test_graphs_that_write_to_weights_are_refused(how: str, tmp_path: Path) -> None:
    from grid_common.model_archive import check_loaded_buffer_updates, export_for_training

    path = tmp_path / "writer.pt2"
    torch.export.save(export_for_training(_Writer(how), torch.randn(4, 8)), str(path))
    with pytest.raises(ModelArchiveError, match=WRITES[how]):
        inspect_archive(path)
    # Functionalized on the worker, every write is explicit: refused there too.
    with pytest.raises(ModelArchiveError, match=WRITES[how]):
        check_loaded_buffer_updates(torch.export.load(path))


class _BatchNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(8)
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(self.out(self.norm(x)))


def test_batch_norm_statistics_may_change_except_under_dp(tmp_path: Path) -> None:
    from grid_common.model_archive import check_loaded_buffer_updates

    path = tmp_path / "bn.pt2"
    info = save_for_training(_BatchNormNet(), torch.randn(4, 8), path)
    stats = ["norm.num_batches_tracked", "norm.running_mean", "norm.running_var"]
    assert info.changed_buffers == stats
    assert check_loaded_buffer_updates(load_exported_program(path, tmp_path)) == stats
    with pytest.raises(ModelArchiveError, match=r"differential privacy.*'norm\.running_mean'"):
        inspect_archive(path, dp=True)
    with pytest.raises(ModelArchiveError, match="under differential privacy"):
        check_loaded_buffer_updates(load_exported_program(path, tmp_path), dp=True)
    assert save_for_training(Net(), torch.randn(4, 8), tmp_path / "net.pt2", dp=True)
