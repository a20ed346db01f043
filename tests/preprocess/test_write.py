"""The Parquet writer the Spark job runs in its Python workers (no Spark here)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.factories import kernel_batches, kernel_rows
from tickercast import schema
from tickercast.features import indicators, rules
from tickercast.preprocess import write

COLUMNS = rules.curated_columns(["^GSPC"])


def test_a_partition_file_appears_complete_or_not_at_all(tmp_path: Path) -> None:
    table = kernel_rows({"AAA": 300, "BBB": 40})
    market = {"mkt_gspc_close": np.linspace(1, 2, 300), "mkt_gspc_ret": np.full(300, np.nan)}
    target = write.curated_schema(COLUMNS)
    path, temporary = tmp_path / "part-00000.parquet", tmp_path / ".part-00000.parquet.1.tmp"
    metrics = write.write_partition(
        kernel_batches(table, 64), str(path), str(temporary), target, market, True
    )
    written = pq.read_table(path)
    assert written.schema.names == COLUMNS and not temporary.exists()
    assert metrics.to_pydict()["rows"] == [340]
    assert metrics.to_pydict()["first"] == [dt.date(2020, 1, 1)]
    assert written.column("mkt_gspc_close").to_pylist()[:2] == [1.0, market["mkt_gspc_close"][1]]
    assert written.column("mkt_gspc_ret").null_count == 340

    broken = tmp_path / "part-00001.parquet"
    bad = table.set_column(
        table.schema.get_field_index(schema.CLOSE), schema.CLOSE, pa.array(np.full(340, 1e15))
    )
    with pytest.raises(indicators.ValueTooLarge):
        write.write_partition(
            kernel_batches(bad, 64), str(broken), str(tmp_path / ".b.tmp"), target, market, True
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.parquet"]

    empty = write.write_partition(
        [], str(tmp_path / "part-00002.parquet"), str(tmp_path / ".e.tmp"), target, {}, True
    )
    assert empty.to_pydict()["rows"] == [0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part-00000.parquet"]
