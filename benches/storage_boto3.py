"""Baselines for benches/storage.rs: point-in-time restore through boto3.

usage: storage_boto3.py ENDPOINT BUCKET T_MS THREADS
THREADS=1: the sequential restore a runbook script would do (list every version,
pick the one current at T per key, copy it back); THREADS>1: the same copies in a
thread pool, as a ceiling of what the server can take. Prints the seconds taken.
"""
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.config

endpoint, bucket, t_ms, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                  region_name="us-east-1",
                  config=botocore.config.Config(max_pool_connections=max(threads, 10)))
start = time.monotonic()
entries = {}
for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
    for kind in ("Versions", "DeleteMarkers"):
        for v in page.get(kind, []):
            entries.setdefault(v["Key"], []).append((v, kind == "DeleteMarkers"))
jobs = []
for key, es in entries.items():
    es.sort(key=lambda e: (-e[0]["LastModified"].timestamp(), not e[0]["IsLatest"]))
    at = [e for e in es if e[0]["LastModified"].timestamp() * 1000 <= t_ms]
    cur = es[0]
    if at and not at[0][1] and (cur[1] or cur[0]["ETag"] != at[0][0]["ETag"]):
        jobs.append((key, at[0][0]["VersionId"]))


def copy(job):
    key, version = job
    s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key, "VersionId": version})


if threads == 1:
    for job in jobs:
        copy(job)
else:
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(copy, jobs))
print(f"{time.monotonic() - start:.3f} {len(jobs)}")
