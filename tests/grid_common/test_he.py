"""Update files: flat vectors, frames under CKKS or in plain, streamed sums, sealed contexts."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from grid_common import he
from grid_common.identity import NodeIdentity

PARAMS = he.CkksParams()
SLOTS = PARAMS.slots


@pytest.fixture(scope="module")
def keys() -> he.JobKeys:
    return he.make_job_keys(PARAMS)


@pytest.fixture(scope="module")
def public_codec(keys: he.JobKeys) -> he.FrameCodec:
    return he.codec_for("ckks", keys.public_context)


@pytest.fixture(scope="module")
def secret_codec(keys: he.JobKeys) -> he.FrameCodec:
    return he.codec_for("ckks", keys.secret_context)


def layout_for(codec: he.FrameCodec, values: int) -> he.UpdateLayout:
    return he.UpdateLayout(codec.mode, values, SLOTS)


def test_flatten_and_unflatten_round_trip_with_an_integer_tensor() -> None:
    rng = np.random.default_rng(0)
    tensors: dict[str, np.ndarray] = {
        "layer.weight": rng.normal(size=(3, 2)).astype(np.float32),
        "layer.bias": rng.normal(size=3).astype(np.float64),
        "bn.num_batches_tracked": np.array(41, dtype=np.int64),
    }
    layout = he.weights_layout(tensors)
    assert layout.names == sorted(tensors)
    assert layout.size == 10
    vector = he.flatten(tensors)
    assert vector.dtype == np.float64 and vector.shape == (10,)
    # Noise of the order CKKS adds: the counter still rounds back to itself.
    back = he.unflatten(vector + 1e-7, layout)
    assert set(back) == set(tensors)
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype
        assert back[name].shape == tensor.shape
        np.testing.assert_allclose(back[name], tensor, atol=1e-6)
    assert back["bn.num_batches_tracked"] == 41
    with pytest.raises(he.UpdateError, match="expected 10 values"):
        he.unflatten(vector[:-1], layout)


def test_write_weights_gives_the_same_bytes_whatever_the_order(tmp_path: Path) -> None:
    a: dict[str, np.ndarray] = {
        "b": np.arange(4, dtype=np.float32),
        "a": np.ones((2, 2), dtype=np.float64),
    }
    b: dict[str, np.ndarray] = {
        "a": np.ones((2, 2), dtype=np.float64),
        "b": np.arange(4, dtype=np.float32),
    }
    he.write_weights(a, tmp_path / "a.safetensors")
    he.write_weights(b, tmp_path / "b.safetensors")
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    loaded = he.read_weights(tmp_path / "a.safetensors")
    np.testing.assert_array_equal(loaded["b"], a["b"])


@pytest.mark.parametrize(
    ("mode", "values", "atol"),
    [("none", 7, 0.0), ("ckks", 7, 1e-6), ("ckks", 10_000, 1e-6), ("none", 10_000, 0.0)],
)
def test_streamed_sum_equals_the_sum_of_the_vectors(
    mode: str, values: int, atol: float, keys: he.JobKeys, tmp_path: Path
) -> None:
    public = he.codec_for(mode, keys.public_context)  # type: ignore[arg-type]
    secret = he.codec_for(mode, keys.secret_context)  # type: ignore[arg-type]
    layout = layout_for(public, values)
    assert layout.chunks == (3 if values == 10_000 else 1)
    rng = np.random.default_rng(1)
    vectors = [rng.uniform(-1, 1, size=values) for _ in range(3)]
    aggregate: Path | None = None
    for index, vector in enumerate(vectors):
        update = tmp_path / f"update-{index}"
        size = he.write_update(vector, public, layout, update)
        assert size == update.stat().st_size
        out = tmp_path / f"sum-{index}"
        he.add_updates(aggregate, update, public, layout, out)
        aggregate = out
    assert aggregate is not None
    total = he.read_update(aggregate, secret, layout)
    assert total.shape == (values,)
    np.testing.assert_allclose(total, np.sum(vectors, axis=0), rtol=0, atol=atol)


def _update(codec: he.FrameCodec, layout: he.UpdateLayout, tmp_path: Path) -> bytes:
    path = tmp_path / "good"
    he.write_update(np.linspace(0, 1, layout.values), codec, layout, path)
    return path.read_bytes()


def _header(mode: int, values: int, chunks: int) -> bytes:
    return struct.pack("<8sBII", he.MAGIC, mode, values, chunks)


BAD_UPDATES: dict[str, Callable[[bytes, int], bytes]] = {
    "truncated": lambda good, _: good[:-10],
    "only a header": lambda good, _: good[:17],
    "empty": lambda good, _: b"",
    "wrong magic": lambda good, _: b"GRIDUPD9" + good[8:],
    "wrong mode": lambda good, mode: _header(1 - mode, 5, 1) + good[17:],
    "wrong value count": lambda good, mode: _header(mode, 6, 1) + good[17:],
    "wrong chunk count": lambda good, mode: _header(mode, 5, 2) + good[17:],
    "trailing bytes": lambda good, _: good + b"\0",
    "garbage frame": lambda good, mode: _header(mode, 5, 1) + struct.pack("<I", 41) + b"x" * 41,
    "empty frame": lambda good, mode: _header(mode, 5, 1) + struct.pack("<I", 0),
    "huge frame": lambda good, mode: _header(mode, 5, 1) + struct.pack("<I", 0xFFFFFFFF),
}


@pytest.mark.parametrize("mode", ["none", "ckks"])
@pytest.mark.parametrize("bad", sorted(BAD_UPDATES))
def test_a_bad_update_is_refused(
    mode: str, bad: str, keys: he.JobKeys, secret_codec: he.FrameCodec, tmp_path: Path
) -> None:
    codec = he.codec_for(mode, keys.public_context)  # type: ignore[arg-type]
    layout = layout_for(codec, 5)
    good = _update(codec, layout, tmp_path)
    path = tmp_path / "bad"
    path.write_bytes(BAD_UPDATES[bad](good, he._MODES[mode]))
    with pytest.raises(he.UpdateError):
        he.add_updates(None, path, codec, layout, tmp_path / "out")
    # Added to an existing aggregate, on either side of the sum.
    aggregate = tmp_path / "aggregate"
    aggregate.write_bytes(good)
    with pytest.raises(he.UpdateError):
        he.add_updates(aggregate, path, codec, layout, tmp_path / "out")
    with pytest.raises(he.UpdateError):
        he.add_updates(path, aggregate, codec, layout, tmp_path / "out")
    reader = secret_codec if mode == "ckks" else codec
    with pytest.raises(he.UpdateError):
        he.read_update(path, reader, layout)


def test_a_plain_frame_of_another_length_is_refused(tmp_path: Path) -> None:
    """A header that tells the truth about the job while a frame holds fewer values.

    (A CKKS frame always fills every slot, so there the header's counts are the check.)
    """
    codec = he.PlainCodec()
    layout = he.UpdateLayout("none", 5, 4096)
    frame = codec.encode(np.zeros(4))
    path = tmp_path / "short"
    path.write_bytes(_header(0, 5, 1) + struct.pack("<I", len(frame)) + frame)
    with pytest.raises(he.UpdateError, match="holds 4 values, expected 5"):
        he.add_updates(None, path, codec, layout, tmp_path / "out")


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(he.CkksParams(global_scale_bits=30), id="another scale"),
        pytest.param(he.CkksParams(16384, [60, 40, 40, 40, 60], 40), id="another degree"),
    ],
)
def test_a_ciphertext_under_other_parameters_is_refused(
    other: he.CkksParams, public_codec: he.FrameCodec, tmp_path: Path
) -> None:
    foreign = he.codec_for("ckks", he.make_job_keys(other).public_context)
    layout = layout_for(public_codec, 5)
    first = tmp_path / "first"
    path = tmp_path / "foreign"
    he.write_update(np.ones(5), public_codec, layout, first)
    path.write_bytes(_update(foreign, layout, tmp_path))
    for aggregate, update in ((None, path), (first, path), (path, first)):
        with pytest.raises(he.UpdateError):
            he.add_updates(aggregate, update, public_codec, layout, tmp_path / "out")


def test_the_public_context_cannot_decrypt(
    keys: he.JobKeys, public_codec: he.FrameCodec, secret_codec: he.FrameCodec, tmp_path: Path
) -> None:
    public = he.load_context(keys.public_context)
    assert not public.is_private()  # type: ignore[attr-defined]
    assert not public.has_galois_keys()  # type: ignore[attr-defined]
    assert not public.has_relin_keys()  # type: ignore[attr-defined]
    assert he.load_context(keys.secret_context).is_private()  # type: ignore[attr-defined]
    layout = layout_for(public_codec, 5)
    path = tmp_path / "update"
    he.write_update(np.arange(5.0), public_codec, layout, path)
    with pytest.raises(he.UpdateError, match="cannot decrypt"):
        he.read_update(path, public_codec, layout)
    np.testing.assert_allclose(
        he.read_update(path, secret_codec, layout), np.arange(5.0), atol=1e-6
    )


def test_a_context_that_is_no_context_is_refused() -> None:
    with pytest.raises(he.UpdateError):
        he.load_context(b"not a context")
    with pytest.raises(he.UpdateError):
        he.codec_for("ckks", None)


@pytest.mark.parametrize(
    "params", [PARAMS, he.CkksParams(4096, [40, 20, 40], 21), he.CkksParams(global_scale_bits=35)]
)
def test_context_params_reads_back_what_the_context_was_made_with(
    params: he.CkksParams,
) -> None:
    made = he.make_job_keys(params)
    assert he.context_params(he.load_context(made.public_context)) == params
    assert he.context_params(he.load_context(made.secret_context)) == params


def test_a_boxed_secret_context_opens_only_from_its_sender_with_its_key(
    keys: he.JobKeys,
) -> None:
    dealer, holder, other = (NodeIdentity.generate() for _ in range(3))
    boxed = he.box_for(dealer.encryption_key, holder.encryption_public_key, keys.secret_context)
    assert keys.secret_context not in boxed
    sender = dealer.encryption_public_key
    assert he.unbox(holder.encryption_key, sender, boxed) == keys.secret_context
    with pytest.raises(he.UpdateError, match="not made by that sender"):
        he.unbox(other.encryption_key, sender, boxed)
    with pytest.raises(he.UpdateError, match="not made by that sender"):
        he.unbox(holder.encryption_key, sender, boxed[:-1] + bytes([boxed[-1] ^ 1]))
    # A box anyone else made for the holder (the relay's own key inside) does not pass as
    # the dealer's: the authenticated box is what a sealed box was not.
    forged = he.box_for(other.encryption_key, holder.encryption_public_key, b"the relay's key")
    with pytest.raises(he.UpdateError, match="not made by that sender"):
        he.unbox(holder.encryption_key, sender, forged)
    with pytest.raises(ValueError):
        he.box_for(dealer.encryption_key, "not-a-key", keys.secret_context)


def test_a_secret_context_gives_back_its_public_context_byte_for_byte(keys: he.JobKeys) -> None:
    assert he.public_form(keys.secret_context) == keys.public_context
    other = he.make_job_keys(PARAMS)
    assert he.public_form(other.secret_context) != keys.public_context
