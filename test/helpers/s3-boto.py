#!/usr/bin/env python3
"""What a bucket holds, as boto3 (Debian's python3-boto3) sees it: the referee for the agent's S3 uploads.

    S3_ENDPOINT=… S3_ACCESS_KEY=… S3_SECRET_KEY=… [S3_REGION=us-east-1] python3 test/helpers/s3-boto.py BUCKET get KEY FILE
    … BUCKET head KEY        prints {"ContentLength": …, "ETag": …} or {"missing": true}
    … BUCKET uploads         prints the multipart uploads in progress: [{"Key": …, "UploadId": …}]
"""
import json
import os
import sys

import boto3
from botocore.client import Config
from botocore.exceptions import ClientError

s3 = boto3.client(
    "s3", endpoint_url=os.environ["S3_ENDPOINT"], aws_access_key_id=os.environ["S3_ACCESS_KEY"],
    aws_secret_access_key=os.environ["S3_SECRET_KEY"], region_name=os.environ.get("S3_REGION", "us-east-1"),
    config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
bucket, op, *args = sys.argv[1:]
if op == "get":
    s3.download_file(bucket, args[0], args[1])
    print(json.dumps({"ok": True}))
elif op == "head":
    try:
        head = s3.head_object(Bucket=bucket, Key=args[0])
        print(json.dumps({"ContentLength": head["ContentLength"], "ETag": head["ETag"]}))
    except ClientError as e:
        print(json.dumps({"missing": True, "code": e.response["Error"]["Code"]}))
elif op == "uploads":
    answer = s3.list_multipart_uploads(Bucket=bucket)
    print(json.dumps([{"Key": u["Key"], "UploadId": u["UploadId"]} for u in answer.get("Uploads", [])]))
else:
    sys.exit(f"unknown operation {op}")
