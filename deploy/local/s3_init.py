"""Stand-in for minio-init (docker-compose.yml) on an S3 server without `mc`: the same
buckets, and the weights in /models uploaded to YOLOQ_MODEL's key unless already there.

Runs in the API image, which has boto3, with the compose file's yoloq environment.
"""

import os
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

s3 = boto3.client("s3", endpoint_url=os.environ["YOLOQ_S3_ENDPOINT_URL"])
buckets = [
    *os.environ["YOLOQ_INPUT_BUCKETS"].split(","),
    os.environ["YOLOQ_RESULTS_BUCKET"],
    os.environ["YOLOQ_UPLOADS_BUCKET"],
    os.environ["YOLOQ_MODELS_BUCKET"],
]
model = os.environ["YOLOQ_MODEL"]
if model.startswith("s3://") and "/" in model.removeprefix("s3://"):
    model_bucket, _, model_key = model.removeprefix("s3://").partition("/")
    buckets.append(model_bucket)
else:
    model_bucket = model_key = ""

existing = {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
for bucket in dict.fromkeys(buckets):
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)
        print(f"bucket {bucket} created")

weights = Path("/models") / Path(model_key).name
if model_key and weights.is_file():
    try:
        s3.head_object(Bucket=model_bucket, Key=model_key)
    except ClientError:
        s3.upload_file(str(weights), model_bucket, model_key)
        print(f"{weights} uploaded to {model}")
