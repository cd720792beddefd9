#!/usr/bin/env python3
"""Checks an S3 server with clients that are not ours (boto3/botocore, curl): the operations byoi-agent's uploads need.

    S3_ENDPOINT=… S3_ACCESS_KEY=… S3_SECRET_KEY=… [S3_REGION=us-east-1] python3 scripts/s3-check.py

(the KEY=value lines that scripts/s3-server.sh prints). Needs Debian's python3-boto3 and curl. Prints one line per step,
then 'N passed, N failed'; exits 1 if any step failed.
"""
import hashlib
import os
import secrets
import subprocess
import sys
import tempfile
import time

import boto3
from botocore.client import Config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["S3_ENDPOINT"]
ACCESS = os.environ["S3_ACCESS_KEY"]
SECRET = os.environ["S3_SECRET_KEY"]
REGION = os.environ.get("S3_REGION", "us-east-1")
MIB = 1024 * 1024


def client(secret=SECRET):
    return boto3.client(
        "s3", endpoint_url=ENDPOINT, aws_access_key_id=ACCESS, aws_secret_access_key=secret, region_name=REGION,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


s3 = client()
bucket = "check-" + secrets.token_hex(4)
results = []


def sha(b):
    return hashlib.sha256(b).hexdigest()


def error_code(fn):
    try:
        fn()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


def step(name):
    def run(fn):
        t = time.monotonic()
        try:
            detail = fn() or ""
            results.append(True)
            print(f"ok   {name} ({time.monotonic() - t:.2f}s) {detail}")
        except Exception as e:  # noqa: BLE001 - each step reports its own failure
            results.append(False)
            print(f"FAIL {name}: {type(e).__name__}: {e}")
        return fn
    return run


@step("create bucket")
def _():
    s3.create_bucket(Bucket=bucket)
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@step("PUT object, GET back, sha256 equal")
def _():
    body = os.urandom(3 * MIB + 17)
    s3.put_object(Bucket=bucket, Key="plain.bin", Body=body)
    got = s3.get_object(Bucket=bucket, Key="plain.bin")["Body"].read()
    assert sha(got) == sha(body), "sha256 differs"
    return f"sha256 {sha(body)[:16]}…"


@step("ranged GET")
def _():
    body = s3.get_object(Bucket=bucket, Key="plain.bin")["Body"].read()
    part = s3.get_object(Bucket=bucket, Key="plain.bin", Range="bytes=1000-1999")
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206 and part["Body"].read() == body[1000:2000]


@step("multipart upload of 3 parts (5 MiB, 5 MiB, 1 MiB+3), GET back, sha256 equal")
def _():
    parts_data = [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(MIB + 3)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="multi.img")
    parts = []
    for n, data in enumerate(parts_data, 1):
        r = s3.upload_part(Bucket=bucket, Key="multi.img", UploadId=up["UploadId"], PartNumber=n, Body=data)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    listed = s3.list_parts(Bucket=bucket, Key="multi.img", UploadId=up["UploadId"])["Parts"]
    assert [p["Size"] for p in listed] == [len(d) for d in parts_data], "list_parts sizes"
    done = s3.complete_multipart_upload(Bucket=bucket, Key="multi.img", UploadId=up["UploadId"],
                                        MultipartUpload={"Parts": parts})
    # radosgw 16.2 answers CompleteMultipartUpload with an empty <ETag></ETag> (a radosgw bug fixed in later releases);
    # HEAD has the object's multipart ETag. A client must not insist on the completion's ETag.
    etag = s3.head_object(Bucket=bucket, Key="multi.img")["ETag"]
    assert etag.strip('"').endswith("-3"), f"HEAD ETag {etag}"
    whole = b"".join(parts_data)
    got = s3.get_object(Bucket=bucket, Key="multi.img")["Body"].read()
    assert sha(got) == sha(whole), "sha256 differs"
    return f"HEAD ETag {etag}, completion ETag {done['ETag']!r}, {len(whole)} bytes"


@step("multipart: a non-last part under 5 MiB is refused at completion (EntityTooSmall)")
def _():
    up = s3.create_multipart_upload(Bucket=bucket, Key="small.img")
    parts = []
    for n in (1, 2):
        r = s3.upload_part(Bucket=bucket, Key="small.img", UploadId=up["UploadId"], PartNumber=n, Body=os.urandom(MIB))
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    code = error_code(lambda: s3.complete_multipart_upload(
        Bucket=bucket, Key="small.img", UploadId=up["UploadId"], MultipartUpload={"Parts": parts}))
    s3.abort_multipart_upload(Bucket=bucket, Key="small.img", UploadId=up["UploadId"])
    assert code == "EntityTooSmall", code
    return code


@step("abort multipart: upload gone, further parts refused (NoSuchUpload), no object")
def _():
    up = s3.create_multipart_upload(Bucket=bucket, Key="aborted.img")
    s3.upload_part(Bucket=bucket, Key="aborted.img", UploadId=up["UploadId"], PartNumber=1, Body=os.urandom(5 * MIB))
    s3.abort_multipart_upload(Bucket=bucket, Key="aborted.img", UploadId=up["UploadId"])
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert not [u for u in uploads if u["UploadId"] == up["UploadId"]], "upload still listed"
    code = error_code(lambda: s3.upload_part(Bucket=bucket, Key="aborted.img", UploadId=up["UploadId"],
                                             PartNumber=2, Body=b"x"))
    assert code == "NoSuchUpload", code
    assert error_code(lambda: s3.head_object(Bucket=bucket, Key="aborted.img")) == "404"
    return code


@step("presigned PUT URL (SigV4, query string), upload with curl, GET back, sha256 equal")
def _():
    body = os.urandom(2 * MIB + 5)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "presigned.bin"}, ExpiresIn=300)
    assert "X-Amz-Signature=" in url
    with tempfile.NamedTemporaryFile() as f:
        f.write(body)
        f.flush()
        code = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-T", f.name, url],
                              capture_output=True, text=True, check=True).stdout
        assert code == "200", f"curl HTTP {code}"
        bad = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
        badcode = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-T", f.name, bad],
                                 capture_output=True, text=True, check=True).stdout
    got = s3.get_object(Bucket=bucket, Key="presigned.bin")["Body"].read()
    assert sha(got) == sha(body), "sha256 differs"
    assert badcode == "403", f"tampered signature: HTTP {badcode}"
    return "tampered signature: HTTP 403"


@step("signatures are checked: a wrong secret is refused (SignatureDoesNotMatch)")
def _():
    code = error_code(lambda: client("wrong" + SECRET[5:]).put_object(Bucket=bucket, Key="nope", Body=b"x"))
    assert code == "SignatureDoesNotMatch", code
    return code


@step("payload hash is checked: a body not matching x-amz-content-sha256 is refused")
def _():
    signed_for = hashlib.sha256(b"the body that was signed").hexdigest()
    r = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-X", "PUT", "--aws-sigv4", f"aws:amz:{REGION}:s3",
                        "--user", f"{ACCESS}:{SECRET}", "-H", f"x-amz-content-sha256: {signed_for}",
                        "--data-binary", "another body", f"{ENDPOINT}/{bucket}/tampered"],
                       capture_output=True, text=True, check=True).stdout
    code = r.rsplit("\n", 1)[-1]
    assert code in ("400", "403"), f"HTTP {code}: {r}"
    assert error_code(lambda: s3.head_object(Bucket=bucket, Key="tampered")) == "404", "object was stored"
    return f"HTTP {code} " + (r.split("<Code>")[1].split("</Code>")[0] if "<Code>" in r else "")


@step("delete objects and bucket")
def _():
    for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=o["Key"])
    s3.delete_bucket(Bucket=bucket)


passed = sum(results)
print(f"{passed} passed, {len(results) - passed} failed")
sys.exit(0 if passed == len(results) else 1)
