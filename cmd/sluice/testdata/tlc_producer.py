"""Posts every row of a TLC Parquet file to Sluice's collector the way the
seed's producer did, unchanged: pandas reads the file, each row becomes a
dict with row.to_dict(), the times are formatted "%Y-%m-%d %H:%M:%S",
json.dumps writes the event (NaN for a missing float, as Python does) and
requests posts it, one request per row.

Usage: python tlc_producer.py COLLECTOR_URL FILE

Prints, as JSON, how many rows were sent and the answers by HTTP status,
with the non_finite counts the collector reported.
"""
import collections
import json
import sys

import pandas as pd
import requests

url, path = sys.argv[1].rstrip("/"), sys.argv[2]
df = pd.read_parquet(path)
for col in df.columns:
    if pd.api.types.is_datetime64_any_dtype(df[col]):
        df[col] = df[col].dt.strftime("%Y-%m-%d %H:%M:%S")

status = collections.Counter()
non_finite = 0
errors = []
with requests.Session() as session:
    for i, row in df.iterrows():
        event = {
            "event_type": "YellowTaxiTripRecords",
            "schema_version": "1-0-0",
            "event_id": f"{path.rsplit('/', 1)[-1]}:{i}",
            "payload": row.to_dict(),
        }
        resp = session.post(f"{url}/api/v1/collect", data=json.dumps(event),
                            headers={"Content-Type": "application/json"}, timeout=30)
        status[resp.status_code] += 1
        if resp.status_code == 200:
            non_finite += resp.json().get("non_finite", 0)
        elif len(errors) < 5:
            errors.append(resp.text)

json.dump({"sent": len(df), "status": {str(k): v for k, v in status.items()},
           "non_finite": non_finite, "errors": errors}, sys.stdout)
