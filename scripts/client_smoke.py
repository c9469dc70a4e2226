#!/usr/bin/env python3
"""Drives a real `tessera dev` cluster with the aws CLI and boto3, unchanged.

Covers SigV4 in headers, presigned query URLs (and a presigned URL over 7 days refused),
the SDK's default checksums, s3transfer multipart uploads and the CLI's cp/ls/rm.
Usage: client_smoke.py PATH_TO_TESSERA_BINARY
Prints "N passed, N failed" and exits non-zero on any failure. Every process it starts is
stopped by PID, and its folder is removed.
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import boto3
from botocore.config import Config

BINARY = sys.argv[1]
passed, failed = 0, 0


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"ok    {name}", flush=True)
    except Exception as e:  # noqa: BLE001 - report every failure and go on
        failed += 1
        print(f"FAIL  {name}: {e!r}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            env[k] = v
    return env


def main():
    root = tempfile.mkdtemp(prefix="tessera-smoke-")
    port = free_port()
    log = open(os.path.join(root, "dev.log"), "w")
    dev = subprocess.Popen(
        [BINARY, "dev", "--data-dir", os.path.join(root, "cluster"), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    try:
        env_path = os.path.join(root, "cluster", "dev.env")
        deadline = time.time() + 90
        while not os.path.exists(env_path):
            if dev.poll() is not None or time.time() > deadline:
                raise SystemExit("tessera dev did not become ready; log:\n" + open(log.name).read()[-4000:])
            time.sleep(0.3)
        env = read_env(env_path)
        run_checks(env, root)
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dev.kill()
        cluster_json = os.path.join(root, "cluster", "cluster.json")
        if os.path.exists(cluster_json):
            for p in json.load(open(cluster_json)):
                if p.get("pid"):
                    try:
                        os.kill(p["pid"], signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        if failed:
            print(open(log.name).read()[-3000:])
        shutil.rmtree(root, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


def run_checks(env, root):
    endpoint = env["AWS_ENDPOINT_URL"]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )
    data = os.urandom(3 * 1024 * 1024 + 17)

    check("boto3 create bucket", lambda: s3.create_bucket(Bucket="smoke"))

    def put_get():
        r = s3.put_object(Bucket="smoke", Key="a/b.bin", Body=data, Metadata={"k": "v"})
        assert r["ETag"] == '"%s"' % hashlib.md5(data).hexdigest(), r["ETag"]
        got = s3.get_object(Bucket="smoke", Key="a/b.bin")
        assert got["Body"].read() == data
        assert got["Metadata"] == {"k": "v"}
    check("boto3 put/get with default checksums", put_get)

    def ranged():
        got = s3.get_object(Bucket="smoke", Key="a/b.bin", Range="bytes=1000-2000")
        assert got["Body"].read() == data[1000:2001]
    check("boto3 ranged get", ranged)

    def presigned():
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "smoke", "Key": "a/b.bin"}, ExpiresIn=300)
        assert urllib.request.urlopen(url, timeout=30).read() == data
        put_url = s3.generate_presigned_url("put_object", Params={"Bucket": "smoke", "Key": "presigned.txt"}, ExpiresIn=300)
        req = urllib.request.Request(put_url, data=b"via presigned put", method="PUT")
        urllib.request.urlopen(req, timeout=30).read()
        assert s3.get_object(Bucket="smoke", Key="presigned.txt")["Body"].read() == b"via presigned put"
    check("presigned GET and PUT URLs", presigned)

    def presigned_too_long():
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "smoke", "Key": "a/b.bin"}, ExpiresIn=604801)
        try:
            urllib.request.urlopen(url, timeout=30)
            raise AssertionError("a presigned URL valid for over 7 days was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 400, e.code
            assert b"AuthorizationQueryParametersError" in e.read()
    check("presigned URL over 7 days is refused", presigned_too_long)

    def anonymous():
        try:
            urllib.request.urlopen(f"{endpoint}/smoke/a/b.bin", timeout=30)
            raise AssertionError("anonymous GET was allowed")
        except urllib.error.HTTPError as e:
            assert e.code == 403, e.code
            assert b"AccessDenied" in e.read()
    check("anonymous request is AccessDenied", anonymous)

    def multipart():
        path = os.path.join(root, "upload.bin")
        big = os.urandom(12 * 1024 * 1024 + 5)
        with open(path, "wb") as f:
            f.write(big)
        from boto3.s3.transfer import TransferConfig
        cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
        s3.upload_file(path, "smoke", "multi.bin", Config=cfg)
        head = s3.head_object(Bucket="smoke", Key="multi.bin")
        assert head["ETag"].endswith('-3"'), head["ETag"]
        out = os.path.join(root, "download.bin")
        s3.download_file("smoke", "multi.bin", out, Config=cfg)
        assert open(out, "rb").read() == big
    check("boto3 multipart upload_file / download_file", multipart)

    def cli():
        cli_env = dict(os.environ, **env)
        path = os.path.join(root, "cli.txt")
        with open(path, "wb") as f:
            f.write(b"hello from the aws cli\n" * 1000)
        subprocess.run(["aws", "s3", "cp", path, "s3://smoke/cli/cli.txt", "--endpoint-url", endpoint],
                       env=cli_env, check=True, capture_output=True, timeout=120)
        ls = subprocess.run(["aws", "s3", "ls", "s3://smoke/cli/", "--endpoint-url", endpoint],
                            env=cli_env, check=True, capture_output=True, text=True, timeout=120)
        assert "cli.txt" in ls.stdout, ls.stdout
        subprocess.run(["aws", "s3", "rm", "s3://smoke/cli/cli.txt", "--endpoint-url", endpoint],
                       env=cli_env, check=True, capture_output=True, timeout=120)
    check("aws CLI cp / ls / rm", cli)

    def listing():
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="smoke")["Contents"]]
        assert keys == ["a/b.bin", "multi.bin", "presigned.txt"], keys
    check("boto3 list_objects_v2 after writes", listing)


if __name__ == "__main__":
    main()
