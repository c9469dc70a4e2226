#!/usr/bin/env python3
"""Drives a real `tessera dev` cluster with the aws CLI and boto3, unchanged.

Covers SigV4 in headers, presigned query URLs (and a presigned URL over 7 days refused),
the SDK's default checksums, s3transfer multipart uploads and the CLI's cp/ls/rm.
Usage: client_smoke.py PATH_TO_TESSERA_BINARY
Prints "N passed, N failed" and exits non-zero on any failure. Every process it starts is
stopped by PID, and its folder is removed.
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

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


def tls_context(env):
    """Trusts exactly the dev cluster's CA (dev.env's AWS_CA_BUNDLE), as the aws CLI does."""
    ca = env.get("AWS_CA_BUNDLE")
    return ssl.create_default_context(cafile=ca) if ca else None


def run_checks(env, root):
    endpoint = env["AWS_ENDPOINT_URL"]
    assert endpoint.startswith("https://"), f"tessera dev must serve HTTPS by default: {endpoint}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        verify=env["AWS_CA_BUNDLE"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
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
        assert urllib.request.urlopen(url, timeout=30, context=tls_context(env)).read() == data
        put_url = s3.generate_presigned_url("put_object", Params={"Bucket": "smoke", "Key": "presigned.txt"}, ExpiresIn=300)
        req = urllib.request.Request(put_url, data=b"via presigned put", method="PUT")
        urllib.request.urlopen(req, timeout=30, context=tls_context(env)).read()
        assert s3.get_object(Bucket="smoke", Key="presigned.txt")["Body"].read() == b"via presigned put"
    check("presigned GET and PUT URLs", presigned)

    def presigned_too_long():
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "smoke", "Key": "a/b.bin"}, ExpiresIn=604801)
        try:
            urllib.request.urlopen(url, timeout=30, context=tls_context(env))
            raise AssertionError("a presigned URL valid for over 7 days was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 400, e.code
            assert b"AuthorizationQueryParametersError" in e.read()
    check("presigned URL over 7 days is refused", presigned_too_long)

    def anonymous():
        try:
            urllib.request.urlopen(f"{endpoint}/smoke/a/b.bin", timeout=30, context=tls_context(env))
            raise AssertionError("anonymous GET was allowed")
        except urllib.error.HTTPError as e:
            assert e.code == 403, e.code
            assert b"AccessDenied" in e.read()
    check("anonymous request is AccessDenied", anonymous)

    def https_only():
        u = urllib.parse.urlparse(endpoint)
        try:
            urllib.request.urlopen(f"http://{u.netloc}/smoke/a/b.bin", timeout=10)
            raise AssertionError("plain HTTP was answered on the HTTPS endpoint")
        except urllib.error.HTTPError as e:
            raise AssertionError(f"plain HTTP got an HTTP answer: {e.code}")
        except (urllib.error.URLError, ConnectionError, http.client.HTTPException):
            pass
        try:
            urllib.request.urlopen(f"{endpoint}/", timeout=10, context=ssl.create_default_context())
            raise AssertionError("the endpoint was trusted without the dev CA")
        except urllib.error.URLError as e:
            assert isinstance(e.reason, ssl.SSLCertVerificationError), e
    check("HTTPS only, with a certificate from the dev CA", https_only)

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

    raw_checks(env, s3)


def sign(env, method, path, headers, payload_hash):
    """Signs a request with SigV4 and returns (headers, seed signature)."""
    url = env["AWS_ENDPOINT_URL"] + path
    req = AWSRequest(method=method, url=url, headers=dict(headers))
    req.headers["x-amz-content-sha256"] = payload_hash
    creds = Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"])
    SigV4Auth(creds, "s3", env["AWS_REGION"]).add_auth(req)
    auth = req.headers["Authorization"]
    return dict(req.headers.items()), auth.rsplit("Signature=", 1)[1]


def send(env, method, path, headers, body):
    u = urllib.parse.urlparse(env["AWS_ENDPOINT_URL"])
    if u.scheme == "https":
        conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=60, context=tls_context(env))
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    conn.send(body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def signing_key(secret, date, region):
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def chunked_signed_body(env, headers, seed, data, chunk=64 * 1024, tamper=False):
    amz_date = headers["X-Amz-Date"]
    date = amz_date[:8]
    scope = f"{date}/{env['AWS_REGION']}/s3/aws4_request"
    key = signing_key(env["AWS_SECRET_ACCESS_KEY"], date, env["AWS_REGION"])
    empty = hashlib.sha256(b"").hexdigest()
    prev, out = seed, b""
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for i, piece in enumerate(pieces):
        sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, empty,
                         hashlib.sha256(piece).hexdigest()])
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        if tamper and i == 1:
            piece = b"X" + piece[1:]
        out += f"{len(piece):x};chunk-signature={sig}\r\n".encode() + piece + b"\r\n"
        prev = sig
    return out


def chunked_encoded_len(data, chunk):
    n = 0
    for size in [len(data[i:i + chunk]) for i in range(0, len(data), chunk)] + [0]:
        n += len(f"{size:x};chunk-signature=".encode()) + 64 + 2 + size + 2
    return n


def exists(s3, key):
    try:
        s3.head_object(Bucket="smoke", Key=key)
        return True
    except s3.exceptions.ClientError:
        return False


def raw_checks(env, s3):
    data = os.urandom(300 * 1024 + 11)
    chunk = 64 * 1024

    def signed_chunked(tamper):
        def run():
            key = "chunked-tampered" if tamper else "chunked-signed"
            h = {"Host": urllib.parse.urlparse(env["AWS_ENDPOINT_URL"]).netloc,
                 "Content-Encoding": "aws-chunked",
                 "x-amz-decoded-content-length": str(len(data)),
                 "Content-Length": str(chunked_encoded_len(data, chunk))}
            headers, seed = sign(env, "PUT", f"/smoke/{key}", h, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
            body = chunked_signed_body(env, headers, seed, data, chunk, tamper)
            status, resp = send(env, "PUT", f"/smoke/{key}", headers, body)
            if tamper:
                assert status == 403 and b"SignatureDoesNotMatch" in resp, (status, resp[:300])
                assert not exists(s3, key), "a tampered chunked upload was stored"
            else:
                assert status == 200, (status, resp[:300])
                assert s3.get_object(Bucket="smoke", Key=key)["Body"].read() == data
        return run
    check("aws-chunked signed streaming upload", signed_chunked(False))
    check("aws-chunked with a tampered chunk is refused, nothing stored", signed_chunked(True))

    def unsigned_trailer(correct):
        def run():
            key = "trailer-ok" if correct else "trailer-bad"
            crc = zlib.crc32(data if correct else data + b"x").to_bytes(4, "big")
            trailer = b"x-amz-checksum-crc32:" + base64.b64encode(crc) + b"\r\n\r\n"
            body = b""
            for i in range(0, len(data), chunk):
                piece = data[i:i + chunk]
                body += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            body += b"0\r\n" + trailer
            h = {"Host": urllib.parse.urlparse(env["AWS_ENDPOINT_URL"]).netloc,
                 "Content-Encoding": "aws-chunked",
                 "x-amz-trailer": "x-amz-checksum-crc32",
                 "x-amz-decoded-content-length": str(len(data)),
                 "Content-Length": str(len(body))}
            headers, _ = sign(env, "PUT", f"/smoke/{key}", h, "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
            status, resp = send(env, "PUT", f"/smoke/{key}", headers, body)
            if correct:
                assert status == 200, (status, resp[:300])
                got = s3.get_object(Bucket="smoke", Key=key, ChecksumMode="ENABLED")
                assert got["Body"].read() == data
                assert got.get("ChecksumCRC32") == base64.b64encode(crc).decode(), got.get("ChecksumCRC32")
            else:
                assert status == 400 and b"BadDigest" in resp, (status, resp[:300])
                assert not exists(s3, key), "an upload with a wrong trailing checksum was stored"
        return run
    check("unsigned aws-chunked with a trailing CRC32", unsigned_trailer(True))
    check("wrong trailing checksum is BadDigest, nothing stored", unsigned_trailer(False))

    def malformed_xml():
        up = s3.create_multipart_upload(Bucket="smoke", Key="xml")["UploadId"]
        body = b"<CompleteMultipartUpload><Part><PartNumber>1</Part>"
        path = f"/smoke/xml?uploadId={up}"
        h = {"Host": urllib.parse.urlparse(env["AWS_ENDPOINT_URL"]).netloc, "Content-Length": str(len(body))}
        headers, _ = sign(env, "POST", path, h, hashlib.sha256(body).hexdigest())
        status, resp = send(env, "POST", path, headers, body)
        assert status == 400 and b"MalformedXML" in resp, (status, resp[:300])
        assert not exists(s3, "xml")
    check("malformed XML is MalformedXML", malformed_xml)

    def oversized_xml():
        body = b"<Delete>" + b"<Object><Key>k</Key></Object>" * 200_000 + b"</Delete>"
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        h = {"Host": urllib.parse.urlparse(env["AWS_ENDPOINT_URL"]).netloc,
             "Content-Length": str(len(body)), "Content-MD5": md5}
        headers, _ = sign(env, "POST", "/smoke?delete", h, hashlib.sha256(body).hexdigest())
        try:
            status, resp = send(env, "POST", "/smoke?delete", headers, body)
        # The gateway answers 400 and closes before the body ends; the client may see the close
        # first (over TLS as an EOF in the TLS layer).
        except (ConnectionError, ssl.SSLError, http.client.HTTPException):
            status, resp = 400, b"connection closed"
        assert 400 <= status < 500, (status, resp[:300])
        assert exists(s3, "a/b.bin"), "an oversized request deleted something"
    check("oversized XML is refused and deletes nothing", oversized_xml)

    def short_body():
        h = {"Host": urllib.parse.urlparse(env["AWS_ENDPOINT_URL"]).netloc, "Content-Length": "100000"}
        headers, _ = sign(env, "PUT", "/smoke/short", h, "UNSIGNED-PAYLOAD")
        u = urllib.parse.urlparse(env["AWS_ENDPOINT_URL"])
        sock = socket.create_connection((u.hostname, u.port), timeout=30)
        if u.scheme == "https":
            sock = tls_context(env).wrap_socket(sock, server_hostname=u.hostname)
        head = "PUT /smoke/short HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode() + b"x" * 50_000)
        sock.shutdown(socket.SHUT_WR)
        try:
            sock.recv(4096)
        except OSError:
            pass
        sock.close()
        time.sleep(0.5)
        assert not exists(s3, "short"), "a body shorter than its Content-Length was stored"
    check("a body shorter than Content-Length stores nothing", short_body)


if __name__ == "__main__":
    main()
