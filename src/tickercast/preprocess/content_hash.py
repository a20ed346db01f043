"""The curated data's fingerprint: order-free folds of 64-bit row hashes, from which ``data_version`` is made.

Each Python worker hashes the rows it writes (:func:`content_folds`); the driver adds the folds up
(:func:`combine_folds`), so the fingerprint is the same whatever the partitioning or row order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _splitmix(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a well-mixed 64-bit hash of each uint64 (in place)."""
    values ^= values >> np.uint64(30)
    values *= np.uint64(0xBF58476D1CE4E5B9)
    values ^= values >> np.uint64(27)
    values *= np.uint64(0x94D049BB133111EB)
    values ^= values >> np.uint64(31)
    return values


_NULL_BITS = np.uint64(0x6E756C6C6E756C6C)  # "nullnull": what a null contributes


def _column_bits(column: pa.ChunkedArray) -> np.ndarray:
    """Each value of a column as 64 bits (strings hashed, nulls a constant), for :func:`row_hashes`."""
    array = column.combine_chunks()
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        encoded = pc.dictionary_encode(array)
        digests = np.array(
            [
                int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
                for text in encoded.dictionary.to_pylist()
            ],
            dtype=np.uint64,
        )
        codes = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
        values = digests[codes] if len(digests) else np.zeros(len(array), dtype=np.uint64)
    else:
        if pa.types.is_date32(kind):
            array = pc.cast(array, pa.int32())
        numbers = array.fill_null(0).to_numpy(zero_copy_only=False)
        wide = np.float64 if pa.types.is_floating(kind) else np.int64
        values = numbers.astype(wide).view(np.uint64)  # astype copies: safe to change below
    if array.null_count:
        values[~array.is_valid().to_numpy(zero_copy_only=False)] = _NULL_BITS
    return values


def row_hashes(table: pa.Table) -> np.ndarray:
    """Hash each row's values, column by column in order, to 64 bits (uint64)."""
    hashes = np.full(table.num_rows, np.uint64(0x7469636B65726361), dtype=np.uint64)  # "tickerca"
    for position, column in enumerate(table.columns):
        hashes ^= _column_bits(column) + np.uint64(position)
        hashes = _splitmix(hashes)
    return hashes


def content_folds(table: pa.Table) -> dict[str, int]:
    """Order-free folds of the row hashes: the same numbers whatever the rows' order or batches.

    Returns:
        ``rows``, ``xor`` (of the row hashes) and ``sum_hi``, ``sum_lo`` (sums of their upper and
        lower 32 bits: no overflow below 2^32 rows), as Python ints, to be added up across tables.

    """
    hashes = row_hashes(table)
    return {
        "rows": table.num_rows,
        "xor": int(np.bitwise_xor.reduce(hashes)) if len(hashes) else 0,
        "sum_hi": int((hashes >> np.uint64(32)).sum(dtype=np.uint64)),
        "sum_lo": int((hashes & np.uint64(0xFFFFFFFF)).sum(dtype=np.uint64)),
    }


def combine_folds(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Add up :func:`content_folds` of several tables (the xor folds by xor)."""
    total = {"rows": 0, "xor": 0, "sum_hi": 0, "sum_lo": 0}
    for part in parts:
        total["rows"] += part["rows"]
        total["xor"] ^= part["xor"]
        total["sum_hi"] += part["sum_hi"]
        total["sum_lo"] += part["sum_lo"]
    return total
