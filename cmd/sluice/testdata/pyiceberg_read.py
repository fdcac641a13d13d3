"""Reads every table of a Sluice lake with PyIceberg, through the lake's
SQL catalog, and prints what it read as JSON: for each table, its row
count, and for each column its Arrow type and its count of non-null values.

Usage: python pyiceberg_read.py LAKE_DIR
"""
import json
import os
import sys

import pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog

lake = os.path.abspath(sys.argv[1])
catalog = SqlCatalog("sluice", uri=f"sqlite:///{lake}/catalog.db", warehouse=f"file://{lake}")
out = {}
for ident in sorted(catalog.list_tables("sluice")):
    table = catalog.load_table(ident).scan().to_arrow()
    cols = {}
    for field in table.schema:
        col = table.column(field.name)
        cols[field.name] = {"type": str(field.type), "values": len(col) - col.null_count}
    out[ident[-1]] = {"rows": table.num_rows, "columns": cols}
json.dump(out, sys.stdout, sort_keys=True)
