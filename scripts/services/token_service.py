#!/usr/bin/env python3
"""Registry token service for tests: the Azure Container Registry auth flow on loopback.

docker-registry runs in token-auth mode with this service as its realm. It
implements what sgr's ACR push talks to:

  POST /oauth2/exchange  grant_type=access_token, service, access_token (an
                         Entra/AAD token) -> {"refresh_token": ...}
  GET  /oauth2/token     Basic auth as the null GUID with a refresh token (or
                         the admin user), ?service=&scope=... -> {"token", "access_token"}
  POST /oauth2/token     grant_type=refresh_token (or password) -> {"access_token", "refresh_token"}
  GET  /msi/token        a managed-identity endpoint (App Service protocol: IDENTITY_ENDPOINT
                         + X-IDENTITY-HEADER) handing out the AAD token
  POST /control/limit    tenant=T&uses=N: refresh tokens from exchanges for tenant T stop
                         working after N uses (tests: a token expiring mid-run, isolated
                         from other tests by the tenant)
  GET  /control/stats    {"exchanges": n, "msi": n, "by_tenant": {T: n}}: how often each was called

Tokens are RS256 JWTs signed by a self-signed certificate written to --cert,
which the registry trusts through auth.token.rootcertbundle. The AAD token
accepted, the managed-identity header and the admin password come from the
environment (TOKEN_SERVICE_AAD_TOKEN, TOKEN_SERVICE_IDENTITY_HEADER,
TOKEN_SERVICE_ADMIN_USER, TOKEN_SERVICE_ADMIN_PASSWORD),
never from argv. Stdlib plus `cryptography` (installed with moto).
"""

import argparse
import base64
import datetime
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

NULL_GUID = "00000000-0000-0000-0000-000000000000"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    def __init__(self, issuer: str, cert_path: str):
        self.issuer = issuer
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sgr-test-token-service")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        temporary = cert_path + ".tmp"
        with open(temporary, "wb") as handle:
            handle.write(self.cert.public_bytes(serialization.Encoding.PEM))
        os.replace(temporary, cert_path)
        self.x5c = base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()

    def token(self, service: str, subject: str, access: list) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": service,
            "exp": now + 600,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(signature)


def parse_scopes(scopes: list) -> list:
    access = []
    for scope in scopes:
        for item in scope.split(" "):
            parts = item.split(":")
            if len(parts) >= 3:
                access.append({"type": parts[0], "name": ":".join(parts[1:-1]), "actions": parts[-1].split(",")})
    return access


class Handler(BaseHTTPRequestHandler):
    server_version = "sgr-test-token-service"
    issuer: Issuer = None
    refresh_tokens: set = set()
    counters: dict = {"exchanges": 0, "msi": 0}
    exchanges_by_tenant: dict = {}
    limits: dict = {}  # tenant -> uses allowed per refresh token
    uses_left: dict = {}  # refresh token -> uses left (limited tokens only)
    lock = threading.Lock()

    def count(self, name: str) -> None:
        with self.lock:
            self.counters[name] += 1

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        sys.stderr.write("token-service: " + (format % args) + "\n")

    def reply(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def form(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return {key: values[-1] for key, values in urllib.parse.parse_qs(self.rfile.read(length).decode()).items()}

    def new_refresh_token(self, tenant: str = "") -> str:
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.refresh_tokens.add(token)
            if tenant in self.limits:
                self.uses_left[token] = self.limits[tenant]
        return token

    def known_refresh_token(self, token: str) -> bool:
        with self.lock:
            if token not in self.refresh_tokens:
                return False
            if token in self.uses_left:
                if self.uses_left[token] <= 0:
                    return False
                self.uses_left[token] -= 1
            return True

    def password_ok(self, user: str, password: str) -> bool:
        if user == NULL_GUID:
            return self.known_refresh_token(password)
        admin_user = os.environ.get("TOKEN_SERVICE_ADMIN_USER")
        admin_password = os.environ.get("TOKEN_SERVICE_ADMIN_PASSWORD")
        return bool(admin_user) and user == admin_user and secrets.compare_digest(password, admin_password or "")

    def do_GET(self):  # noqa: N802 - http.server's naming
        url = urllib.parse.urlparse(self.path)
        if url.path == "/healthz":
            return self.reply(200, {"ok": True})
        if url.path == "/control/stats":
            with self.lock:
                return self.reply(200, dict(self.counters, by_tenant=dict(self.exchanges_by_tenant)))
        if url.path == "/msi/token":
            query = urllib.parse.parse_qs(url.query)
            expected = os.environ.get("TOKEN_SERVICE_IDENTITY_HEADER", "")
            if not expected or not secrets.compare_digest(self.headers.get("X-IDENTITY-HEADER", ""), expected):
                return self.reply(401, {"error": "bad or missing X-IDENTITY-HEADER"})
            resource = (query.get("resource") or [""])[-1]
            if resource != "https://containerregistry.azure.net":
                return self.reply(400, {"error": "unexpected resource " + resource})
            self.count("msi")
            return self.reply(200, {
                "access_token": os.environ.get("TOKEN_SERVICE_AAD_TOKEN", ""),
                "expires_on": str(int(time.time()) + 3600),
                "token_type": "Bearer",
                "resource": resource,
            })
        if url.path != "/oauth2/token":
            return self.reply(404, {"error": "not found"})
        query = urllib.parse.parse_qs(url.query)
        authorization = self.headers.get("Authorization", "")
        if not authorization.startswith("Basic "):
            return self.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "basic auth required"}]})
        try:
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
        except ValueError:
            return self.reply(400, {"error": "bad authorization header"})
        if not self.password_ok(user, password):
            return self.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]})
        service = (query.get("service") or [""])[-1]
        token = self.issuer.token(service, user, parse_scopes(query.get("scope", [])))
        return self.reply(200, {"token": token, "access_token": token, "expires_in": 600})

    def do_POST(self):  # noqa: N802
        url = urllib.parse.urlparse(self.path)
        form = self.form()
        if url.path == "/control/limit":
            with self.lock:
                self.limits[form.get("tenant", "")] = int(form.get("uses", "0"))
            return self.reply(200, {"limited": True})
        if url.path == "/oauth2/exchange":
            expected = os.environ.get("TOKEN_SERVICE_AAD_TOKEN", "")
            if form.get("grant_type") != "access_token":
                return self.reply(400, {"error": "unsupported grant_type"})
            if not expected or not secrets.compare_digest(form.get("access_token", ""), expected):
                return self.reply(401, {"error": "invalid AAD access token"})
            self.count("exchanges")
            with self.lock:
                tenant = form.get("tenant", "")
                self.exchanges_by_tenant[tenant] = self.exchanges_by_tenant.get(tenant, 0) + 1
            return self.reply(200, {"refresh_token": self.new_refresh_token(form.get("tenant", ""))})
        if url.path == "/oauth2/token":
            grant = form.get("grant_type")
            if grant == "refresh_token":
                if not self.known_refresh_token(form.get("refresh_token", "")):
                    return self.reply(401, {"error": "invalid refresh token"})
                subject = NULL_GUID
            elif grant == "password":
                if not self.password_ok(form.get("username", ""), form.get("password", "")):
                    return self.reply(401, {"error": "invalid credentials"})
                subject = form.get("username", "")
            else:
                return self.reply(400, {"error": "unsupported grant_type"})
            token = self.issuer.token(form.get("service", ""), subject, parse_scopes(form.get("scope", "").split(" ")))
            return self.reply(200, {"access_token": token, "refresh_token": self.new_refresh_token(), "expires_in": 600})
        return self.reply(404, {"error": "not found"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, help="where to write the signing certificate (PEM)")
    parser.add_argument("--issuer", default="sgr-test-token-service")
    arguments = parser.parse_args()
    Handler.issuer = Issuer(arguments.issuer, arguments.cert)
    server = ThreadingHTTPServer(("127.0.0.1", arguments.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
