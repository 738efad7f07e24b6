"""TEST DOUBLE of Azure Key Vault, Google Cloud KMS and Firestore, with their token services.

No real implementation of either service can run on this machine (Key Vault's emulator,
lowkey-vault, ships only as a container image; Google publishes no KMS emulator), so this
speaks their REST wire formats for the calls Signet makes, with real ECDSA P-256 keys:

  azure: POST /<tenant>/oauth2/v2.0/token (client credentials + JWT client assertion),
         GET /metadata/identity/oauth2/token (managed identity, as the instance metadata
         endpoint: `Metadata: true`, api-version 2018-02-01, resource, client_id),
         GET /keys/<name>[/<version>], POST /keys/<name>/<version>/sign        (api-version 7.4)
  gcp:   POST /v1/token (STS token exchange), POST /v1/projects/-/serviceAccounts/<sa>:generateAccessToken,
         GET /v1/<key version>/publicKey, POST /v1/<key version>:asymmetricSign,
         Firestore's REST API (v1): PATCH / GET /v1/projects/P/databases/D/documents/<collection>/<id>
         (create or replace, read) and GET …/documents/<collection> (list), and GET /v1/tokeninfo
         (as oauth2.googleapis.com/tokeninfo: is this access token one it issued; the Grafeas
         double asks it); Firestore has no
         emulator here (Google's ships as a Java/gcloud component), and values are checked to
         be Firestore Values (one type each).

What it checks is what the clouds check: the federated token is a JWT signed by a key the
cluster's OIDC issuer publishes (discovery + JWKS, fetched with the test CA), not expired, with
the issuer, audience and subject of the federated credential; every KMS call carries a token
it issued. POST /_double/rotate adds a key version (the tests' stand-in for a rotation).
Keys persist in --state so a restart keeps them. Listens on 127.0.0.1 with TLS only.
"""

import argparse
import base64
import hashlib
import json
import os
import secrets
import ssl
import sys
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Keys:
    """Key versions 1..n of one signing key, persisted as PEM."""

    def __init__(self, state):
        self.path = os.path.join(state, "keys.json")
        self.pems = json.load(open(self.path)) if os.path.exists(self.path) else []
        if not self.pems:
            self.rotate()

    def rotate(self):
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.pems.append(pem)
        with open(self.path, "w") as f:
            json.dump(self.pems, f)
        return len(self.pems)

    def get(self, version):
        if not 1 <= version <= len(self.pems):
            return None
        return serialization.load_pem_private_key(self.pems[version - 1].encode(), None)


class Issuer:
    """The cluster's OIDC issuer: JWKS fetched through discovery, as a cloud does."""

    def __init__(self, url, ca):
        self.url = url
        self.context = ssl.create_default_context(cafile=ca)

    def _get(self, url):
        with urllib.request.urlopen(url, context=self.context, timeout=10) as r:
            return json.load(r)

    def verify(self, token, audience, subject):
        try:
            header_b64, payload_b64, sig_b64 = token.split(".")
            header = json.loads(unb64url(header_b64))
            claims = json.loads(unb64url(payload_b64))
        except Exception:
            return "the federated token is not a JWT"
        if claims.get("iss") != self.url:
            return "issuer %r is not the federated issuer" % claims.get("iss")
        aud = claims.get("aud")
        if audience not in (aud if isinstance(aud, list) else [aud]):
            return "audience %r is not %r" % (aud, audience)
        if claims.get("sub") != subject:
            return "subject %r has no federated credential" % claims.get("sub")
        if claims.get("exp", 0) < time.time():
            return "the federated token has expired"
        jwks_uri = self._get(self.url + "/.well-known/openid-configuration")["jwks_uri"]
        for jwk in self._get(jwks_uri)["keys"]:
            if jwk.get("kid") != header.get("kid") or jwk.get("kty") != "EC":
                continue
            public = ec.EllipticCurvePublicNumbers(
                int.from_bytes(unb64url(jwk["x"]), "big"),
                int.from_bytes(unb64url(jwk["y"]), "big"),
                ec.SECP256R1(),
            ).public_key()
            raw = unb64url(sig_b64)
            der = encode_dss_signature(
                int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            )
            try:
                public.verify(
                    der, (header_b64 + "." + payload_b64).encode(), ec.ECDSA(hashes.SHA256())
                )
                return None
            except Exception:
                return "the federated token's signature does not verify"
        return "no key %r in the issuer's JWKS" % header.get("kid")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.command, self.path))

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("content-length", "0"))
        return self.rfile.read(length) if length else b""

    def bearer_ok(self):
        auth = self.headers.get("authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.server.tokens

    def issue(self):
        token = secrets.token_urlsafe(32)
        self.server.tokens.add(token)
        return token

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PATCH(self):
        self.route("PATCH")

    def route(self, method):
        path = urllib.parse.urlparse(self.path).path
        body = self.body() if method in ("POST", "PATCH") else b""
        if method == "POST" and path == "/_double/rotate":
            return self.reply(200, {"version": self.server.keys.rotate()})
        if self.server.args.mode == "azure":
            return self.azure(method, path, body)
        return self.gcp(method, path, body)

    # --- Azure -----------------------------------------------------------------------------
    def azure(self, method, path, body):
        a = self.server.args
        if method == "POST" and path == "/%s/oauth2/v2.0/token" % a.tenant:
            form = dict(urllib.parse.parse_qsl(body.decode()))
            if form.get("client_id") != a.client_id:
                return self.reply(400, {"error": "unauthorized_client",
                                        "error_description": "AADSTS700016: application %s not found" % form.get("client_id")})
            if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != \
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
                return self.reply(400, {"error": "invalid_request", "error_description": "bad grant"})
            if form.get("scope") != "https://vault.azure.net/.default":
                return self.reply(400, {"error": "invalid_scope", "error_description": form.get("scope")})
            problem = self.server.issuer.verify(form.get("client_assertion", ""), a.audience, a.subject)
            if problem:
                return self.reply(401, {"error": "invalid_client",
                                        "error_description": "AADSTS70021: No matching federated identity record found: " + problem})
            return self.reply(200, {"token_type": "Bearer", "expires_in": 3600, "access_token": self.issue()})
        if method == "GET" and path == "/metadata/identity/oauth2/token":
            # Managed identity, as the instance metadata endpoint answers it (expires_in is a
            # string there). Only the identities assigned to this "node" get a token.
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query))
            if self.headers.get("metadata") != "true":
                return self.reply(400, {"error": "invalid_request", "error_description": "Required metadata header not specified"})
            if query.get("api-version") != "2018-02-01" or query.get("resource") != "https://vault.azure.net":
                return self.reply(400, {"error": "invalid_request", "error_description": "bad api-version or resource %s" % query.get("resource")})
            if query.get("client_id", "") not in a.managed_identity:
                return self.reply(400, {"error": "invalid_request", "error_description": "Identity not found"})
            self.server.managed_requests += 1
            return self.reply(200, {"token_type": "Bearer", "expires_in": "86399", "resource": query["resource"],
                                    "access_token": self.issue()})
        if method == "GET" and path == "/_double/managed":
            return self.reply(200, {"requests": self.server.managed_requests})
        parts = path.strip("/").split("/")
        if not self.bearer_ok():
            return self.reply(401, {"error": {"code": "Unauthorized", "message": "no valid bearer token"}})
        if len(parts) < 2 or parts[0] != "keys" or parts[1] != a.key_name:
            return self.reply(404, {"error": {"code": "KeyNotFound", "message": "A key with (name/id) %s was not found in this key vault." % "/".join(parts[1:2])}})
        keys = self.server.keys
        version = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else len(keys.pems)
        key = keys.get(version)
        if key is None:
            return self.reply(404, {"error": {"code": "KeyNotFound", "message": "no such version"}})
        kid = "https://%s/keys/%s/%d" % (self.headers.get("host"), a.key_name, version)
        if method == "GET" and len(parts) <= 3:
            numbers = key.public_key().public_numbers()
            return self.reply(200, {"key": {"kid": kid, "kty": "EC", "crv": "P-256", "key_ops": ["sign", "verify"],
                                            "x": b64url(numbers.x.to_bytes(32, "big")),
                                            "y": b64url(numbers.y.to_bytes(32, "big"))},
                                    "attributes": {"enabled": True}})
        if method == "POST" and len(parts) == 4 and parts[3] == "sign":
            request = json.loads(body or b"{}")
            digest = unb64url(request.get("value", ""))
            if request.get("alg") != "ES256" or len(digest) != 32:
                return self.reply(400, {"error": {"code": "BadParameter", "message": "ES256 needs a 32-byte digest"}})
            r, s = decode_dss_signature(key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))))
            return self.reply(200, {"kid": kid, "value": b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))})
        return self.reply(405, {"error": {"code": "BadRequest", "message": method + " " + path}})

    # --- Firestore -------------------------------------------------------------------------
    def firestore(self, method, name, body):
        def error(status, code, message):
            return self.reply(status, {"error": {"code": status, "status": code, "message": message}})
        _, _, rest = name.partition("/documents/")
        segments = rest.split("/")
        docs = self.server.documents
        if method == "GET" and len(segments) % 2 == 1:
            prefix = name + "/"
            listed = [d for n, d in sorted(docs.items()) if n.startswith(prefix) and "/" not in n[len(prefix):]]
            return self.reply(200, {"documents": listed})
        if len(segments) % 2 == 1 or not all(segments):
            return error(400, "INVALID_ARGUMENT", "%s is not a document name" % name)
        if method == "GET":
            if name not in docs:
                return error(404, "NOT_FOUND", "Document \"%s\" not found." % name)
            return self.reply(200, docs[name])
        if method != "PATCH":
            return error(400, "INVALID_ARGUMENT", method + " " + name)
        try:
            document = json.loads(body or b"{}")
        except ValueError:
            return error(400, "INVALID_ARGUMENT", "the body is not JSON")
        for key, value in (document.get("fields") or {}).items():
            problem = firestore_value_problem(value, key)
            if problem:
                return error(400, "INVALID_ARGUMENT", problem)
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        stored = {"name": name, "fields": document.get("fields") or {},
                  "createTime": docs.get(name, {}).get("createTime", now), "updateTime": now}
        docs[name] = stored
        return self.reply(200, stored)

    # --- Google Cloud ----------------------------------------------------------------------
    def gcp(self, method, path, body):
        a = self.server.args
        if method == "POST" and path == "/v1/token":
            form = dict(urllib.parse.parse_qsl(body.decode()))
            if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" or \
                    form.get("subject_token_type") != "urn:ietf:params:oauth:token-type:jwt":
                return self.reply(400, {"error": "invalid_request", "error_description": "bad grant"})
            if form.get("audience") != a.audience:
                return self.reply(400, {"error": "invalid_target", "error_description": "unknown provider " + str(form.get("audience"))})
            # The provider's default allowed audience: https://iam.googleapis.com/<provider>.
            jwt_audience = "https:" + a.audience
            problem = self.server.issuer.verify(form.get("subject_token", ""), jwt_audience, a.subject)
            if problem:
                return self.reply(400, {"error": "invalid_grant", "error_description": problem})
            self.server.federated.add(token := self.issue())
            return self.reply(200, {"access_token": token, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                                    "token_type": "Bearer", "expires_in": 3600})
        if method == "POST" and path == "/v1/projects/-/serviceAccounts/%s:generateAccessToken" % a.service_account:
            auth = self.headers.get("authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in self.server.federated:
                return self.reply(403, {"error": {"code": 403, "status": "PERMISSION_DENIED",
                                                  "message": "Permission 'iam.serviceAccounts.getAccessToken' denied"}})
            return self.reply(200, {"accessToken": self.issue(), "expireTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))})
        if method == "GET" and path == "/v1/tokeninfo":
            token = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query)).get("access_token", "")
            if token in self.server.tokens and token not in self.server.federated:
                return self.reply(200, {"azp": a.service_account, "email": a.service_account,
                                        "scope": "https://www.googleapis.com/auth/cloud-platform", "expires_in": "3599"})
            return self.reply(400, {"error": "invalid_token", "error_description": "Invalid Value"})
        if not self.bearer_ok() or self.headers.get("authorization", "")[7:] in self.server.federated:
            return self.reply(401, {"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "Request had invalid authentication credentials."}})
        if path.startswith("/v1/projects/") and "/databases/" in path and "/documents/" in path:
            return self.firestore(method, path[len("/v1/"):], body)
        if method == "GET" and path == "/v1/" + a.key_name + "/cryptoKeyVersions":
            versions = [{"name": a.key_name + "/cryptoKeyVersions/%d" % v, "state": "ENABLED",
                         "algorithm": "EC_SIGN_P256_SHA256"} for v in range(1, len(self.server.keys.pems) + 1)]
            versions.sort(key=lambda v: v["name"], reverse=True)
            return self.reply(200, {"cryptoKeyVersions": versions, "totalSize": len(versions)})
        prefix = "/v1/" + a.key_name + "/cryptoKeyVersions/"
        if not path.startswith(prefix):
            return self.reply(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "CryptoKey %s not found." % path}})
        rest = path[len(prefix):]
        version, _, action = rest.partition(":") if ":" in rest else rest.partition("/")
        key = self.server.keys.get(int(version)) if version.isdigit() else None
        if key is None:
            return self.reply(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "CryptoKeyVersion %s not found." % version}})
        name = a.key_name + "/cryptoKeyVersions/" + version
        if method == "GET" and action == "publicKey":
            pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
            return self.reply(200, {"pem": pem, "algorithm": "EC_SIGN_P256_SHA256", "name": name})
        if method == "POST" and action == "asymmetricSign":
            request = json.loads(body or b"{}")
            digest = base64.b64decode(request.get("digest", {}).get("sha256", ""))
            if len(digest) != 32:
                return self.reply(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "digest.sha256 must be 32 bytes"}})
            if "digestCrc32c" in request and int(request["digestCrc32c"]) != crc32c(digest):
                return self.reply(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "digest_crc32c does not match"}})
            signature = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
            return self.reply(200, {"signature": base64.b64encode(signature).decode(), "name": name,
                                    "verifiedDigestCrc32c": "digestCrc32c" in request,
                                    "signatureCrc32c": str(crc32c(signature))})
        return self.reply(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": method + " " + path}})


VALUE_TYPES = {"nullValue", "booleanValue", "integerValue", "doubleValue", "timestampValue",
               "stringValue", "bytesValue", "referenceValue", "geoPointValue", "arrayValue", "mapValue"}


def firestore_value_problem(value, where):
    """Why `value` is not a Firestore Value, or None."""
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in VALUE_TYPES:
        return "%s is not a Value (exactly one of %s)" % (where, ", ".join(sorted(VALUE_TYPES)))
    kind, inner = next(iter(value.items()))
    if kind == "bytesValue":
        try:
            base64.b64decode(inner, validate=True)
        except Exception:
            return "%s.bytesValue is not base64" % where
    if kind == "mapValue":
        for key, item in (inner.get("fields") or {}).items():
            problem = firestore_value_problem(item, "%s.%s" % (where, key))
            if problem:
                return problem
    if kind == "arrayValue":
        for i, item in enumerate(inner.get("values") or []):
            problem = firestore_value_problem(item, "%s[%d]" % (where, i))
            if problem:
                return problem
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["azure", "gcp"], required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--state", required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--audience", required=True, help="azure: the assertion's aud; gcp: the STS audience (provider)")
    p.add_argument("--subject", required=True)
    p.add_argument("--key-name", required=True, help="azure: key name; gcp: projects/…/cryptoKeys/<key>")
    p.add_argument("--tenant", default="")
    p.add_argument("--client-id", default="")
    p.add_argument("--service-account", default="")
    p.add_argument("--managed-identity", action="append", default=[],
                   help="azure: a managed identity's client id the metadata endpoint serves ('' for the node's own)")
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.args = args
    server.keys = Keys(args.state)
    server.issuer = Issuer(args.issuer, args.ca)
    server.tokens = set()
    server.federated = set()
    server.documents = {}
    server.managed_requests = 0
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
