"""The network's input batches, cut straight from per-symbol arrays (no ``TimeSeriesDataSet``).

pytorch-forecasting builds a pandas-backed dataset (encoders refitted, an index frame, one
``__getitem__`` per sample) before the first forward pass: 40-60 ms for one ticker. This module
builds the same ``x`` dict that its dataloader gives the TFT, from the fitted encoders, scalers and
target normaliser stored in a bundle's ``dataset_parameters``:

1. :func:`encode` turns model rows into one :class:`Series` block: every row scaled once, the rows
   of each symbol contiguous and sorted by ``time_idx``;
2. :func:`prediction_windows` (one window per symbol, at its end) or :func:`all_windows` (every
   window of every symbol, the dataset's non-predict index) choose the samples;
3. :func:`collate` cuts the windows into padded tensors in one vectorised gather.

It reproduces pytorch-forecasting 1.8's choices exactly (``tests/model/test_windows.py`` compares
tensor by tensor), including its quirks: a missing time step repeats the previous row; the
``target_scale`` is looked up with the group-id code in a table keyed by the categorical code
(for our encoders that is another symbol's scale; the model was trained that way); a symbol the
model never saw is encoded as class 0 and takes the group-id code it would get in a dataset of its
own. Each symbol is its own series by construction, so two unseen symbols are never merged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tickercast import schema

if TYPE_CHECKING:
    import torch

RELATIVE_TIME = "relative_time_idx"
# Composite sort key symbol * _SPAN + time_idx: one searchsorted finds every window's rows.
_SPAN = np.int64(1) << np.int64(32)


@dataclass(frozen=True)
class Layout:
    """What the fitted dataset parameters say about the network's inputs.

    Attributes:
        reals: The continuous inputs in ``encoder_cont``'s column order.
        target: The target column (raw in ``encoder_target``, normalised among the reals).
        max_encoder_length: Time steps of history a window holds at most.
        min_encoder_length: Time steps of history a window holds at least.
        max_prediction_length: Decoder steps at most (the horizon).
        min_prediction_length: Decoder steps at least outside predict mode.
        min_prediction_idx: First ``time_idx`` a decoder may start on.
        symbol_codes: The categorical encoder's classes (unknown symbols -> 0).
        group_codes: The group-id encoder's classes (an unknown symbol gets ``len(group_codes)``).
        norms: Target (center, scale) by categorical code, for the normalised target column and the
            ``<target>_center`` / ``<target>_scale`` inputs.
        missing_norm: (center, scale) of codes absent from ``norms``.
        scalers: Per real, the fitted scaler (``None``: passed through).

    """

    reals: tuple[str, ...]
    target: str
    max_encoder_length: int
    min_encoder_length: int
    max_prediction_length: int
    min_prediction_length: int
    min_prediction_idx: int | None
    symbol_codes: dict[str, int]
    group_codes: dict[str, int]
    norms: dict[int, tuple[float, float]]
    missing_norm: tuple[float, float]
    scalers: dict[str, Any]

    @classmethod
    def from_parameters(cls, parameters: dict[str, Any]) -> Layout:
        """Read the layout from ``TimeSeriesDataSet.get_parameters()`` of the training set.

        Args:
            parameters: The bundle's ``dataset_parameters``.

        Returns:
            The layout.

        Raises:
            ValueError: The parameters use an option this path does not reproduce (several groups
                or targets, lags, categorical inputs other than the symbol, another normaliser).

        """
        from pytorch_forecasting.data import GroupNormalizer

        target = parameters["target"]
        normalizer = parameters["target_normalizer"]
        unsupported = [
            name
            for name, bad in (
                ("several targets", not isinstance(target, str)),
                ("several group ids", list(parameters["group_ids"]) != [schema.SYMBOL]),
                ("lags", bool(parameters.get("lags"))),
                ("variable groups", bool(parameters.get("variable_groups"))),
                ("constant fill strategy", bool(parameters.get("constant_fill_strategy"))),
                ("static reals", bool(parameters.get("static_reals"))),
                ("weights", parameters.get("weight") is not None),
                ("encoder length input", bool(parameters.get("add_encoder_length"))),
                ("relative time index off", not parameters.get("add_relative_time_idx")),
                ("target scales off", not parameters.get("add_target_scales")),
                (
                    "categoricals other than the symbol",
                    list(parameters.get("static_categoricals") or []) != [schema.SYMBOL]
                    or bool(parameters.get("time_varying_known_categoricals"))
                    or bool(parameters.get("time_varying_unknown_categoricals")),
                ),
                (
                    "a target normaliser other than GroupNormalizer(standard) by symbol",
                    not isinstance(normalizer, GroupNormalizer)
                    or list(normalizer.groups) != [schema.SYMBOL]
                    or normalizer.scale_by_group
                    or normalizer.transformation is not None,
                ),
            )
            if bad
        ]
        if unsupported:
            raise ValueError(f"the fast input path does not reproduce: {', '.join(unsupported)}")
        encoders = parameters["categorical_encoders"]
        known = list(parameters.get("time_varying_known_reals") or [])
        reals = (
            f"{target}_center",
            f"{target}_scale",
            *known,
            *([RELATIVE_TIME] if RELATIVE_TIME not in known else []),
            *(parameters.get("time_varying_unknown_reals") or []),
        )
        norm = normalizer.norm_
        norms = {
            int(code): (float(center), float(scale))
            for code, center, scale in zip(norm.index, norm["center"], norm["scale"], strict=True)
        }
        missing = (float(normalizer.missing_["center"]), float(normalizer.missing_["scale"]))
        first_idx = parameters.get("min_prediction_idx")
        group_encoder = encoders[f"__group_id__{schema.SYMBOL}"]
        return cls(
            reals=reals,
            target=target,
            max_encoder_length=int(parameters["max_encoder_length"]),
            min_encoder_length=int(parameters["min_encoder_length"]),
            max_prediction_length=int(parameters["max_prediction_length"]),
            min_prediction_length=int(parameters["min_prediction_length"]),
            min_prediction_idx=None if first_idx is None else int(first_idx),
            symbol_codes={str(k): int(v) for k, v in encoders[schema.SYMBOL].classes_.items()},
            group_codes={str(k): int(v) for k, v in group_encoder.classes_.items()},
            norms=norms,
            missing_norm=missing,
            scalers=dict(parameters.get("scalers") or {}),
        )

    def norm_of(self, code: int) -> tuple[float, float]:
        """(center, scale) of the target for a code, the median of the fitted ones if unknown."""
        return self.norms.get(code, self.missing_norm)


@dataclass(frozen=True)
class Series:
    """Model rows of many symbols, encoded once: each symbol's rows contiguous, by ``time_idx``.

    Attributes:
        symbols: The symbols, sorted; ``starts[i]:starts[i + 1]`` are the rows of ``symbols[i]``.
        starts: Row offsets, one more than the symbols.
        time: ``time_idx`` per row (int64).
        cont: Scaled reals per row in :attr:`Layout.reals` order (float32; relative time left 0).
        target: The raw target per row (float32).
        codes: The categorical code per symbol.
        groups: The group-id code per symbol.
        target_scales: The network's ``target_scale`` (center, scale) per symbol (float32).

    """

    symbols: tuple[str, ...]
    starts: np.ndarray
    time: np.ndarray
    cont: np.ndarray
    target: np.ndarray
    codes: np.ndarray
    groups: np.ndarray
    target_scales: np.ndarray

    def __len__(self) -> int:
        return len(self.symbols)


@dataclass(frozen=True)
class Windows:
    """Samples to cut: per window its symbol, first time step and lengths (time steps).

    Attributes:
        series: Position of each window's symbol in :attr:`Series.symbols`.
        first: ``time_idx`` of the window's first encoder step.
        encoder_lengths: Encoder steps.
        decoder_lengths: Decoder steps.

    """

    series: np.ndarray
    first: np.ndarray
    encoder_lengths: np.ndarray
    decoder_lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.series)

    def take(self, positions: np.ndarray | slice) -> Windows:
        """Select the windows at ``positions``, in that order."""
        return Windows(
            self.series[positions],
            self.first[positions],
            self.encoder_lengths[positions],
            self.decoder_lengths[positions],
        )


def encode(layout: Layout, rows: pd.DataFrame) -> Series:
    """Scale and encode model rows once, grouped by symbol (pandas only here, never per sample).

    Args:
        layout: The bundle's input layout.
        rows: Model rows (:func:`tickercast.model.inputs.model_frame`, or the history and decoder rows
            of :func:`tickercast.model.inputs.prediction_rows`), any order.

    Returns:
        The encoded block.

    """
    symbol = rows[schema.SYMBOL].astype(str).to_numpy()
    time = rows[schema.TIME_IDX].to_numpy(np.int64)
    order = np.lexsort((time, symbol))
    symbol, time = symbol[order], time[order]
    names, starts = np.unique(symbol, return_index=True)
    starts = np.append(starts, len(symbol)).astype(np.int64)
    counts = np.diff(starts)
    symbols = tuple(str(s) for s in names)
    codes = np.array([layout.symbol_codes.get(s, 0) for s in symbols], dtype=np.int64)
    unseen = len(layout.group_codes)
    groups = np.array([layout.group_codes.get(s, unseen) for s in symbols], dtype=np.int64)
    # The inputs' center/scale come from the categorical code; the network's target_scale from
    # the group-id code looked up in the same table (pytorch-forecasting's behaviour, kept as is).
    symbol_norm = np.array([layout.norm_of(int(c)) for c in codes], dtype=np.float64).reshape(-1, 2)
    row_norm = np.repeat(symbol_norm, counts, axis=0)
    target_scales = np.array([layout.norm_of(int(g)) for g in groups], dtype=np.float32).reshape(-1, 2)

    raw_target = rows[layout.target].to_numpy(np.float64)[order]
    columns: list[np.ndarray] = []
    for name in layout.reals:
        if name == RELATIVE_TIME:
            columns.append(np.zeros(len(order)))
            continue
        if name == f"{layout.target}_center":
            values = row_norm[:, 0].copy()
        elif name == f"{layout.target}_scale":
            values = row_norm[:, 1].copy()
        elif name == layout.target:
            columns.append((raw_target - row_norm[:, 0]) / row_norm[:, 1])
            continue
        else:
            values = rows[name].to_numpy(np.float64)[order]
        columns.append(_scale(layout.scalers.get(name), values))
    cont = np.stack(columns, axis=1).astype(np.float32) if columns else np.empty((len(order), 0), np.float32)
    return Series(
        symbols=symbols,
        starts=starts,
        time=time,
        cont=cont,
        target=raw_target.astype(np.float32),
        codes=codes,
        groups=groups,
        target_scales=target_scales,
    )


def _scale(scaler: Any, values: np.ndarray) -> np.ndarray:
    """Apply a fitted scaler as pytorch-forecasting does (StandardScaler arithmetic inlined)."""
    from sklearn.preprocessing import StandardScaler

    if scaler is None:
        return values
    if type(scaler) is StandardScaler:
        out = values.copy()
        if scaler.with_mean:
            out -= scaler.mean_[0]
        if scaler.with_std:
            out /= scaler.scale_[0]
        return out
    return np.asarray(scaler.transform(pd.DataFrame({"v": values}).to_numpy())).reshape(-1)


def _min_prediction_idx(layout: Layout, series: Series, override: int | None) -> int:
    if override is not None:
        return int(override)
    if layout.min_prediction_idx is not None:
        return layout.min_prediction_idx
    return int(series.time.min()) if len(series.time) else 0


def _decoder_lengths(
    layout: Layout, last_time: np.ndarray, lengths: np.ndarray, min_prediction_idx: int
) -> np.ndarray:
    """Compute decoder lengths as the dataset's ``calculate_decoder_length`` does."""
    return np.minimum(last_time - (min_prediction_idx - 1), lengths - layout.min_encoder_length).clip(
        max=layout.max_prediction_length
    )


def prediction_windows(layout: Layout, series: Series, min_prediction_idx: int | None = None) -> Windows:
    """One window per symbol, ending on its last row: the dataset's ``predict=True`` index.

    A symbol whose last ``encoder + horizon`` time steps do not start on one of its rows, or that
    ends before ``min_prediction_idx + horizon``, gets no window (as in pytorch-forecasting).

    Args:
        layout: The bundle's input layout.
        series: The encoded rows (history and decoder rows of each symbol).
        min_prediction_idx: Overrides the training set's first decoder ``time_idx``.

    Returns:
        The windows, in the order of ``series.symbols``.

    """
    mpi = _min_prediction_idx(layout, series, min_prediction_idx)
    longest = layout.max_encoder_length + layout.max_prediction_length
    shortest = layout.min_encoder_length + layout.max_prediction_length
    if not len(series):
        return Windows(*(np.empty(0, np.int64) for _ in range(4)))
    time = series.time
    # Rows before the first encoder step any decoder may use are dropped first, as the dataset does.
    kept = time >= mpi - layout.max_encoder_length
    first_row = np.array(
        [
            lo + int(np.searchsorted(time[lo:hi], time[hi - 1] - longest + 1)) if hi > lo else hi
            for lo, hi in zip(series.starts[:-1], series.starts[1:], strict=True)
        ],
        dtype=np.int64,
    )
    last = series.starts[1:] - 1
    valid = (series.starts[1:] > series.starts[:-1]) & kept[np.minimum(first_row, len(time) - 1)]
    first = time[np.minimum(first_row, len(time) - 1)]
    last_time = time[last]
    lengths = last_time - first + 1
    valid &= (lengths >= shortest) & (last_time + 1 >= mpi + layout.max_prediction_length)
    decoder = _decoder_lengths(layout, last_time, lengths, mpi)
    picked = np.flatnonzero(valid)
    return Windows(picked, first[picked], (lengths - decoder)[picked], decoder[picked])


def all_windows(layout: Layout, series: Series, min_prediction_idx: int | None = None) -> Windows:
    """Every window of every symbol: the dataset's index outside predict mode, in its order.

    Args:
        layout: The bundle's input layout.
        series: The encoded rows.
        min_prediction_idx: First ``time_idx`` a decoder may start on (default: the training set's).

    Returns:
        The windows (decoders shortened to start on ``min_prediction_idx`` and to end on a
        symbol's last row, as pytorch-forecasting's dataset does).

    """
    from pytorch_forecasting.data.timeseries._timeseries import _find_end_indices

    mpi = _min_prediction_idx(layout, series, min_prediction_idx)
    keep = series.time >= mpi - layout.max_encoder_length
    owner = np.repeat(np.arange(len(series)), np.diff(series.starts))[keep]
    time = series.time[keep]
    if not len(time):
        return Windows(*(np.empty(0, np.int64) for _ in range(4)))
    boundary = np.append(owner[1:] != owner[:-1], True)
    diffs = np.where(boundary, 1, np.append(np.diff(time), 1)).astype(np.int64)
    group_last = time[np.searchsorted(owner, owner, side="right") - 1]
    longest = layout.max_encoder_length + layout.max_prediction_length
    shortest = layout.min_encoder_length + layout.min_prediction_length
    max_time = np.minimum(time + longest - 1, group_last)
    ends, missing = _find_end_indices(diffs=diffs, max_lengths=max_time - time + 1, min_length=shortest)
    starts = np.concatenate([np.arange(len(time)), missing[:, 0]]).astype(np.int64)
    ends = np.concatenate([np.asarray(ends, dtype=np.int64), missing[:, 1]]).astype(np.int64)
    lengths = time[ends] - time[starts] + 1
    ok = (lengths >= shortest) & (lengths + time[starts] >= mpi + layout.min_prediction_length)
    starts, ends, lengths = starts[ok], ends[ok], lengths[ok]
    decoder = _decoder_lengths(layout, time[ends], lengths, mpi)
    return Windows(owner[starts], time[starts], lengths - decoder, decoder)


def collate(layout: Layout, series: Series, windows: Windows) -> dict[str, torch.Tensor]:
    """Cut ``windows`` into the dict the TFT's ``forward`` takes, padded as the dataloader pads.

    A time step without a row repeats the symbol's previous row (``allow_missing_timesteps``).

    Args:
        layout: The bundle's input layout.
        series: The encoded rows.
        windows: The samples, in batch order.

    Returns:
        ``encoder_cat, encoder_cont, encoder_target, encoder_lengths, decoder_cat, decoder_cont,
        decoder_target, decoder_lengths, decoder_time_idx, groups, target_scale``.

    """
    import torch

    n = len(windows)
    enc, dec = windows.encoder_lengths, windows.decoder_lengths
    max_enc = int(enc.max()) if n else 0
    max_dec = int(dec.max()) if n else 0
    owner = np.repeat(np.arange(len(series), dtype=np.int64), np.diff(series.starts))
    keys = owner * _SPAN + series.time

    def gather(offsets: np.ndarray, steps: int, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        grid = np.arange(steps, dtype=np.int64)
        time = offsets[:, None] + grid[None, :]
        rows = np.searchsorted(keys, windows.series[:, None] * _SPAN + time, side="right") - 1
        valid = grid[None, :] < lengths[:, None]
        return np.where(valid, rows, 0), valid

    enc_rows, enc_valid = gather(windows.first, max_enc, enc)
    dec_rows, dec_valid = gather(windows.first + enc, max_dec, dec)
    relative = RELATIVE_TIME in layout.reals
    position = layout.reals.index(RELATIVE_TIME) if relative else -1
    scale = np.float32(layout.max_encoder_length)

    def cut(rows: np.ndarray, valid: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cont = series.cont[rows]
        if relative:
            grid = np.arange(rows.shape[1], dtype=np.float32)[None, :] + offset[:, None].astype(np.float32)
            cont[:, :, position] = grid / scale
        cont[~valid] = 0.0
        target = np.where(valid, series.target[rows], np.float32(0.0))
        return cont, target

    enc_cont, enc_target = cut(enc_rows, enc_valid, -enc)
    dec_cont, dec_target = cut(dec_rows, dec_valid, np.zeros(n, dtype=np.int64))
    codes = series.codes[windows.series]
    return {
        "encoder_cat": torch.from_numpy(np.where(enc_valid, codes[:, None], 0)[:, :, None].astype(np.int64)),
        "encoder_cont": torch.from_numpy(enc_cont),
        "encoder_target": torch.from_numpy(enc_target),
        "encoder_lengths": torch.from_numpy(enc.astype(np.int64)),
        "decoder_cat": torch.from_numpy(np.where(dec_valid, codes[:, None], 0)[:, :, None].astype(np.int64)),
        "decoder_cont": torch.from_numpy(dec_cont),
        "decoder_target": torch.from_numpy(dec_target),
        "decoder_lengths": torch.from_numpy(dec.astype(np.int64)),
        "decoder_time_idx": torch.from_numpy(
            (windows.first + enc)[:, None] + np.arange(max_dec, dtype=np.int64)[None, :]
        ),
        "groups": torch.from_numpy(series.groups[windows.series][:, None].copy()),
        "target_scale": torch.from_numpy(series.target_scales[windows.series].copy()),
    }


def batches(
    layout: Layout, series: Series, windows: Windows, size: int
) -> Iterator[tuple[dict[str, torch.Tensor], Windows]]:
    """Collate ``windows`` in consecutive batches of at most ``size`` samples.

    Yields:
        The network's input and the windows it holds.

    """
    for lo in range(0, len(windows), size):
        part = windows.take(slice(lo, lo + size))
        yield collate(layout, series, part), part
