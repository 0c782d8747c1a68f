"""Object storage (S3, MinIO, any S3-compatible server) behind one small class."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})


class ObjectNotFound(Exception):
    """The bucket or key does not exist."""


class ObjectTooLarge(Exception):
    """The object is larger than the caller accepts; its body was not read."""


def _is_missing(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in _MISSING_CODES


class ObjectStore:
    """Reads and writes whole objects. The boto3 client is thread-safe, so one is shared."""

    def __init__(self, endpoint_url: str | None) -> None:
        config = Config(
            connect_timeout=5,
            read_timeout=30,
            retries={"mode": "standard", "max_attempts": 3},
            # Path-style addressing: MinIO and most self-hosted servers have no
            # per-bucket DNS names.
            s3={"addressing_style": "path"} if endpoint_url else {},
            max_pool_connections=32,
        )
        self.endpoint_url = endpoint_url
        self.client: S3Client = boto3.client("s3", endpoint_url=endpoint_url, config=config)

    def get(self, bucket: str, key: str, max_bytes: int | None = None) -> bytes:
        try:
            response = self.client.get_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if _is_missing(error):
                raise ObjectNotFound(f"s3://{bucket}/{key} does not exist") from error
            raise
        size = response["ContentLength"]
        if max_bytes is not None and size > max_bytes:
            response["Body"].close()
            raise ObjectTooLarge(f"s3://{bucket}/{key} is {size} bytes; the limit is {max_bytes}")
        return response["Body"].read()

    def put(
        self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)

    def get_if_exists(self, bucket: str, key: str) -> bytes | None:
        try:
            return self.get(bucket, key)
        except ObjectNotFound:
            return None

    def list_keys(self, bucket: str, prefix: str, suffixes: frozenset[str], most: int) -> list[str]:
        """Keys under ``prefix`` ending in one of ``suffixes`` (any case), in key order, at
        most ``most`` of them."""
        found: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        try:
            for page in pages:
                for entry in page.get("Contents", []):
                    key = entry["Key"]
                    if key.lower().endswith(tuple(suffixes)):
                        found.append(key)
                        if len(found) >= most:
                            return found
        except ClientError as error:
            if _is_missing(error):
                raise ObjectNotFound(f"bucket {bucket!r} does not exist") from error
            raise
        return found

    def bucket_exists(self, bucket: str) -> bool:
        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError as error:
            if _is_missing(error):
                return False
            raise
        return True

    def ensure_bucket(self, bucket: str) -> None:
        if not self.bucket_exists(bucket):
            self.client.create_bucket(Bucket=bucket)
