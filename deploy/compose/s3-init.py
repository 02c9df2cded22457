"""Create the bucket of BATCHQ_STORAGE_URL and its multipart-cleanup rule, then exit (compose service ``s3-init``).

Idempotent: an existing bucket is left as it is. Runs in the batchq image (boto3 is installed there) with the same
.env as the API and the workers, so it talks to the same endpoint with the same credentials.

The lifecycle rule aborts multipart uploads still incomplete after a day: batchq writes every object as a multipart
upload and aborts it on error, but a process killed mid-upload leaves its parts behind, billed and invisible.
MinIO may answer NotImplemented for this rule; it removes stale uploads on its own (``api stale_uploads_expiry``,
24 h by default), so that is only reported.
"""

from __future__ import annotations

import os
import sys
import time
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

LIFECYCLE = {
    "Rules": [
        {
            "ID": "batchq-abort-incomplete-multipart-uploads",
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
    ]
}


def say(message: str) -> None:
    sys.stdout.write(f"s3-init: {message}\n")
    sys.stdout.flush()


def main() -> int:
    url = urlparse(os.environ.get("BATCHQ_STORAGE_URL", ""))
    if url.scheme != "s3" or not url.netloc:
        say("BATCHQ_STORAGE_URL is not s3://bucket/prefix; nothing to do")
        return 0
    bucket = url.netloc
    endpoint = os.environ.get("BATCHQ_S3_ENDPOINT_URL") or None
    mode = os.environ.get("BATCHQ_S3_CHECKSUM_MODE", "when_required")
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            request_checksum_calculation=mode,
            response_checksum_validation=mode,
            s3={"addressing_style": "path"} if endpoint else {},
        ),
    )

    for _ in range(30):  # the store may still be starting
        try:
            s3.head_bucket(Bucket=bucket)
            say(f"bucket {bucket} exists")
            break
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
            region = s3.meta.region_name
            if endpoint or region in (None, "us-east-1"):
                s3.create_bucket(Bucket=bucket)
            else:  # AWS outside us-east-1 wants the region spelled out
                s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
            say(f"created bucket {bucket}")
            break
        except BotoCoreError as exc:  # connection refused, DNS not ready yet
            say(f"waiting for the object store ({type(exc).__name__})")
            time.sleep(2)
    else:
        say("the object store did not answer; giving up")
        return 1

    try:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=LIFECYCLE)
        say("lifecycle rule AbortIncompleteMultipartUpload (1 day) set")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        say(f"the store refused the lifecycle rule ({code}); clean up stale multipart uploads another way")
    return 0


if __name__ == "__main__":
    sys.exit(main())
