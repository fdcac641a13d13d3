"""Reads every table of a Sluice lake with PyIceberg, through the lake's
SQL catalog, and prints what it read as JSON: for each table, its row
count, and for each column its Arrow type and its count of non-null values.

It also scans each table filtered on each column's least and greatest
value: PyIceberg skips files by the bounds in the manifests, so a bound
that is wrong loses rows. "pruning" lists each filter whose rows differ
from the full table's.

Usage: python pyiceberg_read.py LAKE_DIR
"""
import json
import os
import sys

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.expressions import EqualTo

lake = os.path.abspath(sys.argv[1])
catalog = SqlCatalog("sluice", uri=f"sqlite:///{lake}/catalog.db", warehouse=f"file://{lake}")
out = {}
for ident in sorted(catalog.list_tables("sluice")):
    tbl = catalog.load_table(ident)
    table = tbl.scan().to_arrow()
    cols = {}
    pruning = []
    for field in table.schema:
        col = table.column(field.name)
        cols[field.name] = {"type": str(field.type), "values": len(col) - col.null_count}
        if col.null_count == len(col) or not (pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
                                               or pa.types.is_string(field.type) or pa.types.is_timestamp(field.type)
                                               or pa.types.is_date(field.type)):
            continue
        bounds = pc.min_max(col)
        for v in (bounds["min"], bounds["max"]):
            want = pc.sum(pc.equal(col, v)).as_py()
            value = v.as_py()
            if pa.types.is_timestamp(field.type) or pa.types.is_date(field.type):
                value = value.isoformat()
            got = tbl.scan(row_filter=EqualTo(field.name, value)).to_arrow().num_rows
            if got != want:
                pruning.append(f"{field.name} = {value!r}: {got} rows, want {want}")
    out[ident[-1]] = {"rows": table.num_rows, "columns": cols, "pruning": pruning}
json.dump(out, sys.stdout, sort_keys=True)
