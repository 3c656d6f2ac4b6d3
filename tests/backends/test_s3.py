"""S3-specific behaviour, checked against the SeaweedFS test server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.servers.seaweedfs import SeaweedFS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class TestServer:
    """The test server is a real S3 implementation, bound to loopback only."""

    def test_objects_and_multipart_uploads(self, s3_client: S3Client, s3_bucket: str) -> None:
        s3_client.put_object(Bucket=s3_bucket, Key="dir/a.txt", Body=b"hello")
        assert s3_client.get_object(Bucket=s3_bucket, Key="dir/a.txt")["Body"].read() == b"hello"
        upload = s3_client.create_multipart_upload(Bucket=s3_bucket, Key="big.bin")
        listed = s3_client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]
        assert [u["UploadId"] for u in listed] == [upload["UploadId"]]
        s3_client.abort_multipart_upload(
            Bucket=s3_bucket, Key="big.bin", UploadId=upload["UploadId"]
        )
        assert "Uploads" not in s3_client.list_multipart_uploads(Bucket=s3_bucket)

    def test_wrong_secret_is_refused(self, seaweedfs: SeaweedFS, s3_bucket: str) -> None:
        client = boto3.client(
            "s3",
            endpoint_url=seaweedfs.endpoint_url,
            aws_access_key_id=seaweedfs.access_key,
            aws_secret_access_key="not-the-secret",
            region_name=seaweedfs.region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )
        with pytest.raises(ClientError) as info:
            client.put_object(Bucket=s3_bucket, Key="a.txt", Body=b"x")
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
