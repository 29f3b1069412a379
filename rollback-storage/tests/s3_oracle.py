"""Independent oracle for S3 point-in-time restore tests (boto3).

usage: s3_oracle.py ENDPOINT BUCKET PREFIX T_MS
prints JSON: {"state_at_t": {key: etag}, "current": {key: etag},
              "versions": {key: [version ids...]}, "total_versions": N}
State at T = for each key, the newest entry (version or delete marker) with
LastModified <= T; ties within a second: IsLatest first, then the listing order.
"""
import json
import sys

import boto3

endpoint, bucket, prefix, t_ms = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                  region_name="us-east-1")
entries = {}
for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
    for kind in ("Versions", "DeleteMarkers"):
        for i, v in enumerate(page.get(kind, [])):
            entries.setdefault(v["Key"], []).append({
                "id": v["VersionId"], "deleted": kind == "DeleteMarkers",
                "ms": int(v["LastModified"].timestamp() * 1000), "latest": v["IsLatest"],
                "etag": v.get("ETag", "").strip('"'), "order": len(entries.get(v["Key"], [])),
            })
state, current, versions, total = {}, {}, {}, 0
for key, es in entries.items():
    es.sort(key=lambda e: (-e["ms"], not e["latest"]))
    versions[key] = [e["id"] for e in es]
    total += len(es)
    if not es[0]["deleted"]:
        current[key] = es[0]["etag"]
    at = [e for e in es if e["ms"] <= t_ms]
    if at and not at[0]["deleted"]:
        state[key] = at[0]["etag"]
print(json.dumps({"state_at_t": state, "current": current, "versions": versions, "total_versions": total}))
