"""Data sets that need no download: scikit-learn's bundled digits, generated text, and random
batches of the right shapes for a spec (for measurements)."""

from __future__ import annotations

import numpy as np

from ..errors import NotAvailableError, SdkError
from .spec import ModelSpec

Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def digits(image_size: int | None = 32, test_fraction: float = 0.2, seed: int = 0, channels: int = 1) -> Split:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes) as ``x_train, y_train, x_test, y_test``.

    Pixels are scaled to [0, 1]. ``image_size`` a multiple of 8 gives ``(channels, size, size)``
    images (nearest-neighbour upsampling, 32 for LeNet-5; ``channels=3`` repeats the gray level,
    for models made for colour images); ``None`` gives flat 64-vectors (MLP).
    The split is stratified-free but deterministic for ``seed``.
    """
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size % 8 or not 8 <= image_size <= 256
    ):
        raise SdkError(f"'image_size' must be a multiple of 8 from 8 to 256 (got {image_size!r})")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SdkError(f"'seed' must be an int >= 0 (got {seed!r})")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise SdkError(f"'channels' must be 1 or 3 (got {channels!r})")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise NotAvailableError("the digits data set needs scikit-learn: pip install scikit-learn") from None
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    if image_size is None:
        x = x.reshape(len(x), 64)
    else:
        r = image_size // 8
        x = x.repeat(r, axis=1).repeat(r, axis=2).reshape(len(x), 1, image_size, image_size)
        x = np.ascontiguousarray(np.repeat(x, channels, axis=1)) if channels > 1 else x
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = round(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def counting_text(n: int = 512, length: int = 32, vocab_size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Next-token data for language models: sequences that count up modulo ``vocab_size``
    from a random start. Returns ``(tokens, targets)``, targets shifted by one."""
    start = np.random.default_rng(seed).integers(0, vocab_size, size=(n, 1))
    seq = (start + np.arange(length + 1)) % vocab_size
    return seq[:, :-1].astype(np.int64), seq[:, 1:].astype(np.int64)


def counting_or_not(
    n: int = 512, length: int = 32, vocab_size: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Sequence classification for encoders: half the sequences count up modulo
    ``vocab_size`` (label 1), half hold the same tokens shuffled (label 0), so only the order
    tells them apart. Returns ``(tokens, labels)``."""
    rng = np.random.default_rng(seed)
    tokens, _ = counting_text(n, length, vocab_size, seed)
    labels = (rng.random(n) < 0.5).astype(np.int64)
    for i in np.flatnonzero(labels == 0):
        tokens[i] = rng.permutation(tokens[i])
    return tokens, labels


def make_batch(
    spec: ModelSpec, loss: str, batch_size: int, dtype: str = "float32", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs and targets of the right shapes and dtypes for ``spec`` and ``loss``."""
    rng = np.random.default_rng(seed)
    shape = (batch_size,) + spec.input_shape
    if spec.input_dtype == "int64":
        vocab = spec.layers[0].vocab_size  # type: ignore[attr-defined]  # int64 specs start with an embedding
        x = rng.integers(0, vocab, shape, dtype=np.int64)
    else:
        x = rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
    out = spec.output_shape
    if loss == "cross_entropy":
        y = rng.integers(0, out[-1], (batch_size,) + out[:-1], dtype=np.int64)
    else:
        y = rng.standard_normal((batch_size,) + out, dtype=np.float32).astype(dtype, copy=False)
    return x, y


SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_split(path: str) -> Split:
    """A data set from files: an ``.npz`` holding ``x_train``, ``y_train``, ``x_test`` and
    ``y_test``, or a folder of those four ``.npy`` files, memory-mapped (read from disk as
    batches need them, so the set may be larger than RAM). Every malformed file is one
    :class:`~sdk_core.model.files.FileError` naming it and what is wrong."""
    import os
    import zipfile

    from .files import FileError, check_input, read_npy

    if os.path.isdir(path):
        missing = [k for k in SPLIT_KEYS if not os.path.exists(os.path.join(path, f"{k}.npy"))]
        if missing:
            needs = ", ".join(SPLIT_KEYS)
            raise FileError(f"data folder '{path}' has no {missing[0]}.npy (it needs {needs} as .npy files)")
        arrays = [read_npy(os.path.join(path, f"{k}.npy"), what="data", mmap=True) for k in SPLIT_KEYS]
    else:
        source = check_input(path, "data")
        try:
            with np.load(source, allow_pickle=False) as npz:
                missing = [k for k in SPLIT_KEYS if k not in npz.files]
                if missing:
                    needs = ", ".join(SPLIT_KEYS)
                    raise FileError(f"data file '{path}' has no array '{missing[0]}' (it needs {needs})")
                arrays = [npz[k] for k in SPLIT_KEYS]
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            if isinstance(exc, FileError):
                raise
            raise FileError(f"data file '{path}' is not an .npz of numeric arrays: {exc}") from None
    for key, array in zip(SPLIT_KEYS, arrays, strict=True):
        if array.dtype.kind not in "biuf" or array.ndim == 0:
            raise FileError(f"data '{key}' in '{path}' must be numbers with a sample axis (got {array.dtype})")
    for part in ("train", "test"):
        x, y = arrays[SPLIT_KEYS.index(f"x_{part}")], arrays[SPLIT_KEYS.index(f"y_{part}")]
        if len(x) != len(y):
            raise FileError(f"data in '{path}': x_{part} has {len(x)} samples, y_{part} {len(y)}")
    return arrays[0], arrays[1], arrays[2], arrays[3]
