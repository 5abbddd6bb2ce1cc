"""One batch of rows across several contexts: chunks of the compiled batch sizes, stitched."""

from __future__ import annotations

from concurrent.futures import Future, wait
from typing import Any, Callable, Optional

import numpy as np

from .errors import ShapeError
from .session import Session

Submit = Callable[..., Future]


def plan_batches(n_rows: int, batch_sizes: tuple[int, ...]) -> list[tuple[int, int]]:
    """(first row, compiled batch size) of each run covering `n_rows` rows.

    Full chunks of the largest size, then one run at the smallest size holding the
    rest (the caller zero-pads it).
    """
    largest = max(batch_sizes)
    n_full = n_rows // largest
    plan = [(i * largest, largest) for i in range(n_full)]
    tail = n_rows - n_full * largest
    if tail:
        plan.append((n_full * largest, min(b for b in batch_sizes if b >= tail)))
    return plan


def compiled_batch_sizes(session: Session) -> tuple[int, ...]:
    """The row counts the model runs at, largest first: the first dimension of every input
    in each accepted shape combination, the other dimensions fixed.

    ValueError for a model whose shapes vary otherwise (e.g. image sizes).
    """
    sizes = set()
    for shapes in session.input_shapes:
        firsts = {s[0] if s else None for s in shapes}
        rests = tuple(s[1:] for s in shapes)
        if (
            len(firsts) != 1
            or None in firsts
            or rests != tuple(s[1:] for s in session.input_shapes[0])
        ):
            raise ValueError(
                "run_batch splits rows along the first dimension, but this model's accepted "
                f"input shapes {session.input_shapes} do not differ only in a batch size shared "
                "by every input; run it with run() or submit() instead"
            )
        sizes.add(int(firsts.pop()))
    return tuple(sorted(sizes, reverse=True))


def plan_spread(n_rows: int, sizes: tuple[int, ...], n_contexts: int) -> list[tuple[int, int]]:
    """(first row, batch size) of each run: the largest size that still gives every context a
    chunk (else the smallest), then plan_batches with the sizes up to it."""
    fitting = [b for b in sizes if n_rows // b >= n_contexts]
    top = max(fitting) if fitting else min(sizes)
    return plan_batches(n_rows, tuple(b for b in sizes if b <= top) or (min(sizes),))


def _inputs(session: Session, arrays: tuple[Any, ...]) -> list[np.ndarray]:
    names = [s.name for s in session.inputs]
    if len(arrays) == 1 and isinstance(arrays[0], dict):
        given = arrays[0]
        if set(given) != set(names):
            raise ValueError(
                f"input names do not match the model: got {sorted(given)}, the model's inputs "
                f"are {names}"
            )
        arrays = tuple(given[n] for n in names)
    if len(arrays) != len(names):
        raise TypeError(
            f"this model takes {len(names)} input(s) {names}, got {len(arrays)}; pass them "
            "positionally in model order or as one dict by name"
        )
    items = [np.asarray(a) for a in arrays]
    rows = {a.shape[0] if a.ndim else None for a in items}
    if len(rows) != 1 or None in rows:
        shapes = ", ".join(f"{n!r} {a.shape}" for n, a in zip(names, items))
        raise ShapeError(
            f"run_batch needs every input with the same number of rows (first dimension); "
            f"got {shapes}"
        )
    return items


def _run_chunk(
    session: Session, chunk: list[np.ndarray], outs: list[np.ndarray], rows: Optional[int]
) -> None:
    if rows is None:  # a full chunk: results straight into the stitched arrays
        session.run(*chunk, out=outs)
    else:  # a zero-padded tail
        for y, out in zip(session.run(*chunk), outs):
            out[...] = y[:rows]


def run_batch(
    session: Session, arrays: tuple[Any, ...], n_contexts: int, submit: Submit
) -> list[np.ndarray]:
    """Every row of ``arrays`` through the model, chunks run by ``submit(fn, *args)``.

    ``session`` describes the model (names, shapes); the chunks run on whatever sessions the
    submitted calls get. Returns one float32 array of N rows per output.
    """
    items = _inputs(session, arrays)
    sizes = compiled_batch_sizes(session)
    n_rows = items[0].shape[0]
    outs = [np.empty((n_rows, *spec.shape[1:]), np.float32) for spec in session.outputs]
    futures: list[Future] = []
    try:
        for start, size in plan_spread(n_rows, sizes, n_contexts):
            rows = min(size, n_rows - start)
            part = [out[start : start + rows] for out in outs]
            if rows == size:
                chunk = [a[start : start + size] for a in items]
                futures.append(submit(_run_chunk, chunk, part, None))
            else:
                chunk = []
                for a in items:
                    padded = np.zeros((size, *a.shape[1:]), a.dtype)
                    padded[:rows] = a[start:]
                    chunk.append(padded)
                futures.append(submit(_run_chunk, chunk, part, rows))
        wait(futures)
        for f in futures:
            f.result()  # the first failure, in row order
    finally:
        for f in futures:
            f.cancel()
    return outs
