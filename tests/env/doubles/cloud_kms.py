"""TEST DOUBLE of Azure Key Vault, Google Cloud KMS and Firestore, with their token services.

No real implementation of either service can run on this machine (Key Vault's emulator,
lowkey-vault, ships only as a container image; Google publishes no KMS emulator), so this
speaks their REST wire formats for the calls Signet makes, with real ECDSA P-256 keys:

  azure: POST /<tenant>/oauth2/v2.0/token (client credentials + JWT client assertion),
         GET /metadata/identity/oauth2/token (managed identity, as the instance metadata
         endpoint: `Metadata: true`, api-version 2018-02-01, resource, client_id),
         GET /keys/<name>[/<version>], POST /keys/<name>/<version>/sign        (api-version 7.x
         required; the managed identity `uami-no-access` gets a token the vault answers 403 for)
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
it issued. POST /_double/rotate adds a key version (the tests' stand-in for a rotation),
POST /_double/token-lifetime/<seconds> sets the lifetime of the access tokens issued from then on
(expired ones are refused as the clouds refuse them), GET /_double/publicKey/<n> gives a version's public key to the tests (what an admin exports),
POST /_double/disable/<n> disables version n (Google Cloud: listed as DISABLED, refuses to sign).
Google Cloud KMS answers carry what the API reference has them carry (`pemCrc32c`,
`verifiedDigestCrc32c`, `signatureCrc32c`, the `name` of the version used) and version lists
honour `filter`, `orderBy` and pagination (cloud.google.com/kms/docs/reference/rest/v1/
projects.locations.keyRings.cryptoKeys.cryptoKeyVersions/list).
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

    def bearer(self):
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.startswith("Bearer ") else ""

    def bearer_ok(self):
        """A token this double issued and that has not expired (clouds honour `expires_in`)."""
        expires = self.server.tokens.get(self.bearer())
        return expires is not None and expires > time.time()

    def issue(self, denied=False):
        token = secrets.token_urlsafe(32)
        self.server.tokens[token] = time.time() + self.server.token_lifetime
        if denied:
            self.server.denied.add(token)
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
        if method == "POST" and path.startswith("/_double/token-lifetime/"):
            self.server.token_lifetime = int(path.rsplit("/", 1)[1])
            return self.reply(200, {"seconds": self.server.token_lifetime})
        if method == "GET" and path.startswith("/_double/publicKey/"):
            key = self.server.keys.get(int(path.rsplit("/", 1)[1]))
            pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
            return self.reply(200, {"pem": pem})
        if method == "POST" and path.startswith("/_double/disable/"):
            self.server.disabled.add(int(path.rsplit("/", 1)[1]))
            return self.reply(200, {"disabled": sorted(self.server.disabled)})
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
            return self.reply(200, {"token_type": "Bearer", "expires_in": self.server.token_lifetime,
                                    "access_token": self.issue()})
        if method == "GET" and path == "/metadata/identity/oauth2/token":
            # Managed identity, as the instance metadata endpoint answers it (expires_in is a
            # string there). Only the identities assigned to this "node" get a token.
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query))
            if self.headers.get("metadata") != "true":
                return self.reply(400, {"error": "invalid_request", "error_description": "Required metadata header not specified"})
            if query.get("api-version") != "2018-02-01" or query.get("resource") != "https://vault.azure.net":
                return self.reply(400, {"error": "invalid_request", "error_description": "bad api-version or resource %s" % query.get("resource")})
            client = query.get("client_id", "")
            if client not in a.managed_identity and client != NO_ACCESS_IDENTITY:
                return self.reply(400, {"error": "invalid_request", "error_description": "Identity not found"})
            self.server.managed_requests += 1
            return self.reply(200, {"token_type": "Bearer", "expires_in": str(self.server.token_lifetime),
                                    "resource": query["resource"],
                                    "access_token": self.issue(denied=client == NO_ACCESS_IDENTITY)})
        if method == "GET" and path == "/_double/managed":
            return self.reply(200, {"requests": self.server.managed_requests})
        parts = path.strip("/").split("/")
        if not self.bearer_ok():
            return self.reply(401, {"error": {"code": "Unauthorized", "message": "no valid bearer token (missing, unknown or expired)"}})
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query))
        if not query.get("api-version", "").startswith("7."):
            return self.reply(400, {"error": {"code": "BadParameter", "message": "The 'api-version' query parameter is required (7.x)."}})
        if self.bearer() in self.server.denied:
            return self.reply(403, {"error": {"code": "Forbidden", "message": "Caller is not authorized to perform action on resource.", "innererror": {"code": "ForbiddenByRbac"}}})
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
        # Firestore's limits (cloud.google.com/firestore/quotas): a document of at most 1 MiB,
        # field names of at most 1,500 bytes, maps nested at most 20 deep.
        if len(body) > 1048576:
            return error(400, "INVALID_ARGUMENT", "Document exceeds the maximum size of 1048576 bytes")
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
    def list_versions(self):
        """cryptoKeyVersions.list as the API answers it: `filter` (only `state=ENABLED` and
        `state=DISABLED` are understood here; anything else is refused), `orderBy` (`name`,
        `name desc`: names compare as strings, so version 10 sorts before 9), pages of
        `pageSize` — at most 3 here (the API may return fewer than asked), so that a client must
        follow `nextPageToken`."""
        a = self.server.args
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query))

        def invalid(message):
            return self.reply(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": message}})
        versions = [{"name": a.key_name + "/cryptoKeyVersions/%d" % v,
                     "state": "DISABLED" if v in self.server.disabled else "ENABLED",
                     "algorithm": "EC_SIGN_P256_SHA256", "protectionLevel": "SOFTWARE"}
                    for v in range(1, len(self.server.keys.pems) + 1)]
        wanted = query.get("filter", "").replace(" ", "")
        if wanted:
            if wanted not in ("state=ENABLED", "state=DISABLED"):
                return invalid("Invalid filter: %s" % query["filter"])
            versions = [v for v in versions if v["state"] == wanted.split("=")[1]]
        order = query.get("orderBy", "name")
        if order not in ("name", "name desc", "name asc"):
            return invalid("Invalid order_by: %s" % order)
        versions.sort(key=lambda v: v["name"], reverse=order == "name desc")
        try:
            size = int(query.get("pageSize", "2"))
        except ValueError:
            return invalid("Invalid page_size")
        # The API may return fewer than pageSize: this one at most 3, so clients must page.
        size = max(1, min(size, 3))
        offset = page_offset(query["pageToken"]) if "pageToken" in query else 0
        if offset is None:
            return invalid("Invalid page_token")
        page = {"cryptoKeyVersions": versions[offset:offset + size], "totalSize": len(versions)}
        if offset + size < len(versions):
            page["nextPageToken"] = page_token(offset + size)
        return self.reply(200, page)

    def gcp(self, method, path, body):
        a = self.server.args
        if method == "POST" and path == "/v1/token":
            form = dict(urllib.parse.parse_qsl(body.decode()))
            # Field by field, as sts.googleapis.com/v1/token (RFC 8693) checks them.
            if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange":
                return self.reply(400, {"error": "unsupported_grant_type", "error_description": "grant_type %r" % form.get("grant_type")})
            if form.get("subject_token_type") not in ("urn:ietf:params:oauth:token-type:jwt",
                                                      "urn:ietf:params:oauth:token-type:id_token"):
                return self.reply(400, {"error": "invalid_request", "error_description": "subject_token_type %r" % form.get("subject_token_type")})
            if form.get("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token":
                return self.reply(400, {"error": "invalid_request", "error_description": "requested_token_type %r" % form.get("requested_token_type")})
            if "https://www.googleapis.com/auth/cloud-platform" not in form.get("scope", "").split():
                return self.reply(400, {"error": "invalid_scope", "error_description": "scope %r" % form.get("scope")})
            if form.get("audience") != a.audience:
                return self.reply(400, {"error": "invalid_target", "error_description": "unknown provider " + str(form.get("audience"))})
            # The provider's default allowed audience: https://iam.googleapis.com/<provider>.
            jwt_audience = "https:" + a.audience
            problem = self.server.issuer.verify(form.get("subject_token", ""), jwt_audience, a.subject)
            if problem:
                return self.reply(400, {"error": "invalid_grant", "error_description": problem})
            self.server.federated.add(token := self.issue())
            return self.reply(200, {"access_token": token, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                                    "token_type": "Bearer", "expires_in": self.server.token_lifetime})
        if method == "POST" and path == "/v1/projects/-/serviceAccounts/%s:generateAccessToken" % a.service_account:
            auth = self.headers.get("authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in self.server.federated or not self.bearer_ok():
                return self.reply(403, {"error": {"code": 403, "status": "PERMISSION_DENIED",
                                                  "message": "Permission 'iam.serviceAccounts.getAccessToken' denied"}})
            # generateAccessToken: `scope` required, `lifetime` a duration of at most 3600s.
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                request = None
            lifetime = (request or {}).get("lifetime", "3600s")
            if not isinstance(request, dict) or not request.get("scope") or \
                    not (isinstance(lifetime, str) and lifetime.endswith("s") and lifetime[:-1].isdigit()
                         and 0 < int(lifetime[:-1]) <= 3600):
                return self.reply(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                                  "message": "scope is required; lifetime must be at most 3600s: %r" % request}})
            return self.reply(200, {"accessToken": self.issue(), "expireTime": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + self.server.token_lifetime))})
        if method == "GET" and path == "/v1/tokeninfo":
            token = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query)).get("access_token", "")
            if self.server.tokens.get(token, 0) > time.time() and token not in self.server.federated:
                return self.reply(200, {"azp": a.service_account, "email": a.service_account,
                                        "scope": "https://www.googleapis.com/auth/cloud-platform", "expires_in": "3599"})
            return self.reply(400, {"error": "invalid_token", "error_description": "Invalid Value"})
        if not self.bearer_ok() or self.bearer() in self.server.federated:
            return self.reply(401, {"error": {"code": 401, "status": "UNAUTHENTICATED", "message": "Request had invalid authentication credentials."}})
        if path.startswith("/v1/projects/") and "/databases/" in path and "/documents/" in path:
            return self.firestore(method, path[len("/v1/"):], body)
        if method == "GET" and path == "/v1/" + a.key_name + "/cryptoKeyVersions":
            return self.list_versions()
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
            return self.reply(200, {"pem": pem, "algorithm": "EC_SIGN_P256_SHA256", "name": name,
                                    "pemCrc32c": str(crc32c(pem.encode())), "protectionLevel": "SOFTWARE"})
        if method == "POST" and action == "asymmetricSign":
            if int(version) in self.server.disabled:
                return self.reply(400, {"error": {"code": 400, "status": "FAILED_PRECONDITION",
                                                  "message": "%s is not enabled, current state is: DISABLED." % name}})
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


def page_token(offset):
    return base64.urlsafe_b64encode(("offset:%d" % offset).encode()).decode()


def page_offset(token):
    try:
        kind, _, offset = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        return int(offset) if kind == "offset" else None
    except Exception:
        return None


# An Azure managed identity the metadata endpoint serves whose tokens the vault refuses (403):
# an identity without an access policy or role assignment on the vault.
NO_ACCESS_IDENTITY = "uami-no-access"

VALUE_TYPES = {"nullValue", "booleanValue", "integerValue", "doubleValue", "timestampValue",
               "stringValue", "bytesValue", "referenceValue", "geoPointValue", "arrayValue", "mapValue"}


def firestore_value_problem(value, where, depth=0):
    """Why `value` is not a Firestore Value (or breaks a limit), or None."""
    if len(where.rsplit(".", 1)[-1].encode()) > 1500:
        return "%s: a field name is longer than 1500 bytes" % where[:80]
    if depth > 20:
        return "%s: maps and arrays nested deeper than 20" % where[:80]
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
            problem = firestore_value_problem(item, "%s.%s" % (where, key), depth + 1)
            if problem:
                return problem
    if kind == "arrayValue":
        for i, item in enumerate(inner.get("values") or []):
            problem = firestore_value_problem(item, "%s[%d]" % (where, i), depth + 1)
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
    server.tokens = {}
    server.denied = set()
    server.token_lifetime = 3600
    server.federated = set()
    server.documents = {}
    server.disabled = set()
    server.managed_requests = 0
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
