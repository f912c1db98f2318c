"""Model updates as flat vectors, packed in chunks, encrypted with CKKS (or plain), and summed.

An update file is a small header and one frame per chunk of `slots` values:

    b"GRIDUPD1" | u8 mode | u32 value count | u32 chunk count | (u32 length | bytes) * chunks

In `ckks` mode each frame is a SEAL ciphertext (made with TenSEAL's SEAL binding, at a lower
modulus level than a fresh one); in `none` mode it is the float64 values themselves. Sums are
streamed frame by frame, so adding an update to an aggregate holds one frame of each in
memory, whatever the model's size.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

from grid_common.identity import b64decode

SecureAggregation = Literal["ckks", "none"]
MAGIC = b"GRIDUPD1"
_HEADER = struct.Struct("<8sBII")
_FRAME = struct.Struct("<I")
_MODES: dict[str, int] = {"none": 0, "ckks": 1}
# A CKKS frame of 8192-degree ciphertexts is ~330 KB; anything far larger is not an update.
MAX_FRAME_BYTES = 16 << 20


class UpdateError(ValueError):
    """An update or aggregate file that does not fit the job: wrong size, mode or bytes."""


@dataclass(frozen=True)
class CkksParams:
    """The CKKS parameters of a job's context (DESIGN.md's defaults)."""

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: list[int] = field(default_factory=lambda: [60, 40, 40, 60])
    global_scale_bits: int = 40

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2


@dataclass(frozen=True)
class UpdateLayout:
    """How a job's flat vector is cut into frames: how many values, how many per frame."""

    mode: SecureAggregation
    values: int
    slots: int

    @property
    def chunks(self) -> int:
        return max(1, math.ceil(self.values / self.slots))

    def chunk_length(self, index: int) -> int:
        return min(self.slots, self.values - index * self.slots)


# --- contexts and their keys -----------------------------------------------------------------


@dataclass(frozen=True)
class JobKeys:
    """A new CKKS context: the secret form for participants, the public one for the network."""

    secret_context: bytes
    public_context: bytes


def make_job_keys(params: CkksParams) -> JobKeys:
    """Make a CKKS context; the public form holds neither the secret key nor Galois/relin keys."""
    import tenseal as ts

    context = ts.context(
        ts.SCHEME_TYPE.CKKS,
        params.poly_modulus_degree,
        coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
    )
    context.global_scale = 2**params.global_scale_bits
    public = context.serialize(
        save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
    )
    secret = context.serialize(
        save_public_key=True, save_secret_key=True, save_galois_keys=False, save_relin_keys=False
    )
    return JobKeys(secret_context=secret, public_context=public)


def box_for(sender: PrivateKey, recipient_key: str, secret: bytes) -> bytes:
    """Encrypt `secret` from the sender's X25519 key to the recipient's (NaCl authenticated box).

    Unlike an anonymous sealed box, only the holder of the sender's private key can make a box
    that opens with the sender's public key, so a relay cannot put in a secret of its own.
    """
    return bytes(Box(sender, PublicKey(b64decode(recipient_key, length=32))).encrypt(secret))


def unbox(recipient: PrivateKey, sender_key: str, boxed: bytes) -> bytes:
    """Open a box made by `box_for`; UpdateError unless it came from that sender's key intact."""
    try:
        return Box(recipient, PublicKey(b64decode(sender_key, length=32))).decrypt(boxed)
    except (CryptoError, ValueError):
        raise UpdateError("the box was not made by that sender for this key") from None


def public_form(secret_context: bytes) -> bytes:
    """The public context a secret context belongs to: the same bytes its dealer made public.

    TenSEAL serializes deterministically, so a participant can check that the secret context
    it unsealed and the public context the network uses are one key.
    """
    context = load_context(secret_context)
    return context.serialize(  # type: ignore[attr-defined]
        save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
    )


def load_context(serialized: bytes) -> object:
    """A TenSEAL context from its serialized form (public or secret)."""
    import tenseal as ts

    try:
        return ts.context_from(serialized)
    except Exception as exc:  # TenSEAL raises bare exceptions for malformed bytes
        raise UpdateError(f"not a TenSEAL context: {exc}") from None


def context_params(context: object) -> CkksParams:
    """The parameters a context was made with, to check a dealer's context against the job."""
    # Registers SEAL's Modulus type with pybind11; without it coeff_modulus() cannot convert.
    import tenseal.sealapi  # noqa: F401

    sealed = context.seal_context()  # type: ignore[attr-defined]
    parms = sealed.data.key_context_data().parms()
    degree = int(parms.poly_modulus_degree())
    bits = [int(m.bit_count()) for m in parms.coeff_modulus()]
    scale = context.global_scale  # type: ignore[attr-defined]
    return CkksParams(degree, bits, round(math.log2(scale)))


# --- flat vectors of weights -------------------------------------------------------------------


@dataclass(frozen=True)
class WeightsLayout:
    """Names, shapes and dtypes of a model's tensors, in the order they are flattened."""

    names: list[str]
    shapes: list[tuple[int, ...]]
    dtypes: list[str]

    @property
    def size(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes)


def read_weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def weights_layout(tensors: dict[str, np.ndarray]) -> WeightsLayout:
    names = sorted(tensors)
    return WeightsLayout(
        names, [tuple(tensors[n].shape) for n in names], [str(tensors[n].dtype) for n in names]
    )


def flatten(tensors: dict[str, np.ndarray]) -> np.ndarray:
    """Every tensor as float64, in name order, end to end."""
    names = sorted(tensors)
    if not names:
        return np.zeros(0)
    return np.concatenate([tensors[n].astype(np.float64).ravel() for n in names])


def unflatten(vector: np.ndarray, layout: WeightsLayout) -> dict[str, np.ndarray]:
    """The inverse of `flatten`; integer tensors (counters) are rounded back."""
    if len(vector) != layout.size:
        raise UpdateError(f"expected {layout.size} values, got {len(vector)}")
    tensors: dict[str, np.ndarray] = {}
    offset = 0
    for name, shape, dtype in zip(layout.names, layout.shapes, layout.dtypes, strict=True):
        count = math.prod(shape)
        part = vector[offset : offset + count].reshape(shape)
        kind = np.dtype(dtype).kind
        tensors[name] = (np.rint(part) if kind in "iub" else part).astype(dtype)
        offset += count
    return tensors


def write_weights(tensors: dict[str, np.ndarray], path: Path) -> None:
    """Save as safetensors; the same tensors always give the same bytes (and so the same hash)."""
    from safetensors.numpy import save_file

    save_file({name: np.ascontiguousarray(tensors[name]) for name in sorted(tensors)}, str(path))


# --- codecs: how a frame of values is written, read and added --------------------------------


class FrameCodec(ABC):
    """Turns frames of float64 values into bytes and back, and adds two encoded frames."""

    mode: SecureAggregation

    @abstractmethod
    def encode(self, values: np.ndarray) -> bytes: ...

    @abstractmethod
    def check(self, frame: bytes, length: int) -> bytes:
        """The frame itself, once it reads as `length` values of this codec."""

    @abstractmethod
    def add(self, left: bytes, right: bytes, length: int) -> bytes:
        """The encoded sum of two encoded frames of `length` values; checks both first."""

    @abstractmethod
    def decode(self, frame: bytes, length: int) -> np.ndarray: ...


class PlainCodec(FrameCodec):
    """No encryption: frames are little-endian float64 (for comparison and benchmarks only)."""

    mode: SecureAggregation = "none"

    def encode(self, values: np.ndarray) -> bytes:
        return np.asarray(values, dtype="<f8").tobytes()

    def _values(self, frame: bytes, length: int) -> np.ndarray:
        if len(frame) != 8 * length:
            raise UpdateError(f"a frame holds {len(frame) // 8} values, expected {length}")
        return np.frombuffer(frame, dtype="<f8")

    def check(self, frame: bytes, length: int) -> bytes:
        self._values(frame, length)
        return frame

    def add(self, left: bytes, right: bytes, length: int) -> bytes:
        return self.encode(self._values(left, length) + self._values(right, length))

    def decode(self, frame: bytes, length: int) -> np.ndarray:
        return self._values(frame, length).copy()


# Modulus bits left above the scale in what is sent: sums stay below 2^(headroom - 1). Updates
# are weights times each domain's share of the rows, so their sums stay near the weights.
SEND_HEADROOM_BITS = 20
# Sufficient statistics are raw sums (of squares and cross products too), so they travel at the
# highest level there is: at the default parameters 100 bits above the scale, sums below 2^99.
STATISTICS_HEADROOM_BITS = 90


class CkksCodec(FrameCodec):
    """CKKS ciphertexts under one job's context; with only the public context it cannot decode.

    Values are encoded and encrypted straight at a lower modulus level than a fresh
    ciphertext's: only additions follow, which need no level to spare, so each frame is a
    third smaller and several times cheaper to make, load and add. The level is the lowest
    that leaves `headroom_bits` of modulus above the scale (`SEND_HEADROOM_BITS` for model
    updates, `STATISTICS_HEADROOM_BITS` for sufficient statistics), so sums never overflow.
    """

    mode: SecureAggregation = "ckks"

    def __init__(self, context: object, headroom_bits: int = SEND_HEADROOM_BITS) -> None:
        import tenseal.sealapi as sealapi

        self.context = context
        self._sealapi = sealapi
        self._seal = context.seal_context().data  # type: ignore[attr-defined]
        self._evaluator = sealapi.Evaluator(self._seal)  # additions need no keys
        self._scale = float(context.global_scale)  # type: ignore[attr-defined]
        self._level = _sending_level(self._seal, math.log2(self._scale), headroom_bits)
        public_key = context.public_key().data  # type: ignore[attr-defined]
        self._encryptor = sealapi.Encryptor(self._seal, public_key)
        self._decryptor = None
        if context.is_private():  # type: ignore[attr-defined]
            secret = context.secret_key().data  # type: ignore[attr-defined]
            self._decryptor = sealapi.Decryptor(self._seal, secret)
        self._encoder = sealapi.CKKSEncoder(self._seal)
        # SEAL's Python binding saves and loads ciphertexts by file name only.
        self._scratch = tempfile.TemporaryDirectory(prefix="grid-he-", dir=_fast_tmp())

    def _path(self) -> str:
        fd, name = tempfile.mkstemp(dir=self._scratch.name)
        os.close(fd)
        return name

    def _save(self, ciphertext: Any) -> bytes:
        path = self._path()
        try:
            ciphertext.save(path)
            return Path(path).read_bytes()
        finally:
            os.unlink(path)

    def _load(self, frame: bytes) -> Any:
        path = self._path()
        try:
            Path(path).write_bytes(frame)
            ciphertext = self._sealapi.Ciphertext(self._seal)
            ciphertext.load(self._seal, path)
        except Exception as exc:  # SEAL raises ValueError or bare exceptions for bad bytes
            raise UpdateError(f"a frame is not a CKKS ciphertext of this job: {exc}") from None
        finally:
            os.unlink(path)
        # What this codec sends: one level down, this job's scale, two polynomials. Anything
        # else (another level, rescaled, multiplied) would make every later sum fail.
        if (
            ciphertext.parms_id() != self._level
            or ciphertext.size() != 2
            or not math.isclose(ciphertext.scale, self._scale, rel_tol=1e-9)
        ):
            raise UpdateError("a ciphertext is not an update encrypted under this job's context")
        return ciphertext

    def encode(self, values: np.ndarray) -> bytes:
        plaintext = self._sealapi.Plaintext()
        flat = np.asarray(values, np.float64).tolist()
        try:
            self._encoder.encode(flat, self._level, self._scale, plaintext)
        except ValueError as exc:
            raise UpdateError(
                f"values up to {np.abs(values).max():.3g} are too large for this job's CKKS "
                f"parameters ({exc}); choose a larger coeff_mod_bit_sizes or a smaller scale"
            ) from None
        ciphertext = self._sealapi.Ciphertext(self._seal)
        self._encryptor.encrypt(plaintext, ciphertext)
        return self._save(ciphertext)

    def check(self, frame: bytes, length: int) -> bytes:
        self._load(frame)
        return frame

    def add(self, left: bytes, right: bytes, length: int) -> bytes:
        total = self._load(left)
        self._evaluator.add_inplace(total, self._load(right))
        return self._save(total)

    def decode(self, frame: bytes, length: int) -> np.ndarray:
        ciphertext = self._load(frame)
        if self._decryptor is None:
            raise UpdateError("cannot decrypt: this context holds no secret key")
        plaintext = self._sealapi.Plaintext()
        self._decryptor.decrypt(ciphertext, plaintext)
        return np.asarray(self._encoder.decode_double(plaintext)[:length], dtype=np.float64)


def _sending_level(seal: Any, scale_bits: float, headroom_bits: int) -> Any:
    """The parms_id of the lowest level whose modulus still leaves the headroom (or the top)."""
    level = seal.first_context_data()
    while True:
        following = level.next_context_data()
        if following is None:
            return level.parms_id()
        bits = sum(m.bit_count() for m in following.parms().coeff_modulus())
        if bits < scale_bits + headroom_bits:
            return level.parms_id()
        level = following


def _fast_tmp() -> str | None:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def codec_for(
    mode: SecureAggregation,
    context: bytes | None = None,
    headroom_bits: int = SEND_HEADROOM_BITS,
) -> FrameCodec:
    if mode == "none":
        return PlainCodec()
    if context is None:
        raise UpdateError("a CKKS job needs its context to read or add updates")
    return CkksCodec(load_context(context), headroom_bits)


# --- update files ----------------------------------------------------------------------------


def _read_exact(stream: IO[bytes], size: int, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise UpdateError(f"the update ends early, inside {what}")
    return data


def _header(layout: UpdateLayout) -> bytes:
    return _HEADER.pack(MAGIC, _MODES[layout.mode], layout.values, layout.chunks)


def check_header(stream: IO[bytes], layout: UpdateLayout) -> None:
    magic, mode, values, chunks = _HEADER.unpack(_read_exact(stream, _HEADER.size, "its header"))
    if magic != MAGIC:
        raise UpdateError("not a Grid update (bad magic bytes)")
    if mode != _MODES[layout.mode]:
        raise UpdateError(f"the update is not in this job's {layout.mode!r} mode")
    if values != layout.values or chunks != layout.chunks:
        raise UpdateError(
            f"the update holds {values} values in {chunks} frames; this job's model has "
            f"{layout.values} values in {layout.chunks} frames"
        )


def frames(stream: IO[bytes], layout: UpdateLayout) -> Iterator[bytes]:
    """The frames of an update file, after checking its header against the layout."""
    check_header(stream, layout)
    for index in range(layout.chunks):
        (length,) = _FRAME.unpack(_read_exact(stream, _FRAME.size, f"frame {index}"))
        if length > MAX_FRAME_BYTES:
            raise UpdateError(f"frame {index} claims {length} bytes, more than any update frame")
        yield _read_exact(stream, length, f"frame {index}")
    if stream.read(1):
        raise UpdateError("the update has bytes after its last frame")


def _write_frames(out: IO[bytes], layout: UpdateLayout, encoded: Iterator[bytes]) -> int:
    written = out.write(_header(layout))
    for frame in encoded:
        written += out.write(_FRAME.pack(len(frame)) + frame)
    return written


def write_update(vector: np.ndarray, codec: FrameCodec, layout: UpdateLayout, path: Path) -> int:
    """Encode `vector` frame by frame into `path`; returns the file's size in bytes."""
    if len(vector) != layout.values:
        raise UpdateError(f"expected {layout.values} values, got {len(vector)}")
    slots = layout.slots
    with path.open("wb") as out:
        return _write_frames(
            out,
            layout,
            (codec.encode(vector[i * slots : (i + 1) * slots]) for i in range(layout.chunks)),
        )


def add_updates(
    aggregate: Path | None, update: Path, codec: FrameCodec, layout: UpdateLayout, out: Path
) -> None:
    """Write `aggregate + update` to `out` (the update's checked frames when there is none yet).

    Raises UpdateError on the first bad frame; the caller discards `out`, so a bad update
    never leaves a partial sum behind.
    """
    with update.open("rb") as right, out.open("wb") as target:
        incoming = frames(right, layout)
        if aggregate is None:
            _write_frames(
                target,
                layout,
                (codec.check(f, layout.chunk_length(i)) for i, f in enumerate(incoming)),
            )
            return
        with aggregate.open("rb") as left:
            pairs = zip(frames(left, layout), incoming, strict=True)
            _write_frames(
                target,
                layout,
                (codec.add(a, b, layout.chunk_length(i)) for i, (a, b) in enumerate(pairs)),
            )


def read_update(path: Path, codec: FrameCodec, layout: UpdateLayout) -> np.ndarray:
    """Decode every frame of `path` into one vector (needs the secret context under CKKS)."""
    parts = []
    with path.open("rb") as stream:
        for index, frame in enumerate(frames(stream, layout)):
            parts.append(codec.decode(frame, layout.chunk_length(index)))
    return np.concatenate(parts) if parts else np.zeros(0)
