#!/usr/bin/env python3
"""Signs requests with botocore's own S3 SigV4 signer (Debian's python3-botocore), the referee for agent/upload/s3-sigv4.

    echo '[{"method": "PUT", "url": "http://127.0.0.1:9000/bucket/key", "params": [["partNumber", "1"]],
            "headers": {"Content-Length": "3"}, "body": "abc", "accessKey": "…", "secretKey": "…", "token": null,
            "region": "us-east-1", "timestamp": "20261204T112233Z"}]' | python3 test/helpers/botocore-sign.py

Prints a JSON list: for each request, the headers botocore added (Authorization, X-Amz-Date, X-Amz-Content-SHA256,
X-Amz-Security-Token). The clock is botocore's utcnow, fixed to the request's timestamp.
"""
import datetime
import json
import sys

import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

out = []
for case in json.load(sys.stdin):
    fixed = datetime.datetime.strptime(case["timestamp"], "%Y%m%dT%H%M%SZ")

    class FixedClock(datetime.datetime):
        @classmethod
        def utcnow(cls):
            return fixed

    botocore.auth.datetime.datetime = FixedClock
    request = AWSRequest(method=case["method"], url=case["url"], params=[tuple(p) for p in case.get("params") or []],
                         headers=case.get("headers") or {}, data=case.get("body", "").encode())
    credentials = Credentials(case["accessKey"], case["secretKey"], case.get("token"))
    botocore.auth.S3SigV4Auth(credentials, "s3", case["region"]).add_auth(request)
    out.append({name: request.headers[name] for name in ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256",
                                                          "X-Amz-Security-Token") if name in request.headers})
print(json.dumps(out))
