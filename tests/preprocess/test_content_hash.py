"""The curated data's fingerprint: order-free folds of row hashes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tests.factories import kernel_rows
from tickercast import schema
from tickercast.features import indicators
from tickercast.preprocess import content_hash


def test_content_folds_ignore_order_and_batches_but_see_every_value() -> None:
    curated = indicators.curated_table(
        kernel_rows({"AAA": 80, "BBB": 90}), {}, list(schema.BASE_CURATED_COLUMNS)
    )
    folds = content_hash.content_folds(curated)
    reordered = curated.take(np.random.default_rng(1).permutation(curated.num_rows))
    parts = [content_hash.content_folds(t) for t in (reordered.slice(0, 50), reordered.slice(50))]
    assert content_hash.combine_folds(parts) == folds
    changed = curated.set_column(
        curated.schema.get_field_index(schema.VOLUME),
        schema.VOLUME,
        pa.array(np.concatenate([[1001.0], np.full(curated.num_rows - 1, 1000.0)])),
    )
    assert content_hash.content_folds(changed) != folds
    nulled = curated.set_column(
        curated.schema.get_field_index("ma_20"),
        "ma_20",
        pa.array(np.zeros(curated.num_rows)),
    )
    assert content_hash.content_folds(nulled) != folds  # a null is not a 0
