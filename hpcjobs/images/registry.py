"""Ask a registry which manifest a tag points at, and what a manifest holds — without pulling.

Two ways, one answer:

* the registry HTTP API (``/v2/<repo>/manifests/<ref>``, stdlib urllib; anonymous bearer tokens
  are fetched as registries ask for them). Fast: one round trip for a warm lookup.
* ``skopeo inspect`` through the :class:`~hpcjobs.runner.Runner`, used when the registry wants
  credentials (skopeo reads the usual auth files) or answers in a way the HTTP path does not know.

Insecure registries (plain HTTP or unverified TLS) are only those :class:`InsecureRegistries`
names: loopback addresses (as Docker does), ``$HPCJOBS_INSECURE_REGISTRIES`` and the site config.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpcjobs.errors import ImageError, RunnerError
from hpcjobs.images.refs import DIGEST_RE, ImageRef
from hpcjobs.runner import Runner

if TYPE_CHECKING:
    import ssl

ENV_INSECURE = "HPCJOBS_INSECURE_REGISTRIES"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = ", ".join([MT_OCI_INDEX, MT_OCI_MANIFEST, MT_DOCKER_LIST, MT_DOCKER_MANIFEST])
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_API_HOSTS = {"docker.io": "registry-1.docker.io"}
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class InsecureRegistries:
    """Which registries may be reached over plain HTTP or without TLS verification."""

    def __init__(
        self, names: Iterable[str] = (), *, env: Mapping[str, str] | None = None, loopback: bool = True
    ) -> None:
        environ = os.environ if env is None else env
        found = [n for n in names if n]
        found += [n for n in re.split(r"[\s,]+", environ.get(ENV_INSECURE, "")) if n]
        self.names = frozenset(n.strip().lower() for n in found)
        self.loopback = loopback

    def __call__(self, registry: str) -> bool:
        reg = registry.lower()
        if reg in self.names:
            return True
        host = reg.rsplit(":", 1)[0] if reg.count(":") == 1 or reg.startswith("[") else reg
        if host in self.names:
            return True
        if self.loopback:
            import ipaddress

            if host == "localhost":
                return True
            try:
                return ipaddress.ip_address(host.strip("[]")).is_loopback
            except ValueError:
                return False
        return False


class NeedsCredentials(Exception):
    """The HTTP path cannot answer (credentials or an unexpected reply): ask skopeo."""


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: dict[str, Any]

    @property
    def is_index(self) -> bool:
        return is_index(self.body, self.media_type)


def is_index(body: Mapping[str, Any], media_type: str | None = None) -> bool:
    mt = media_type or body.get("mediaType") or ""
    return mt in (MT_OCI_INDEX, MT_DOCKER_LIST) or ("manifests" in body and "config" not in body)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def digest_of(data: bytes, algo: str) -> str:
    if algo == "sha512":
        return "sha512:" + hashlib.sha512(data).hexdigest()
    return sha256_digest(data)


class RegistryHttp:
    """Minimal read-only registry v2 client: HEAD/GET manifests, anonymous bearer tokens."""

    def __init__(self, insecure: InsecureRegistries, *, timeout_s: float = 20.0) -> None:
        self.insecure = insecure
        self.timeout_s = timeout_s
        self._scheme: dict[str, str] = {}
        self._tokens: dict[tuple[str, str], str] = {}
        self._contexts: dict[bool, ssl.SSLContext] = {}

    def tag_digest(self, ref: ImageRef) -> str:
        """Digest of the manifest (or index) the tag points at."""
        assert ref.tag is not None
        status, headers, body = self._request(ref, "HEAD", ref.tag)
        digest = headers.get("docker-content-digest", "")
        if status == 200 and DIGEST_RE.match(digest):
            return digest
        # some registries omit the header on HEAD: fetch and hash
        status, headers, body = self._request(ref, "GET", ref.tag)
        if status != 200:
            raise NeedsCredentials(f"GET manifest {ref.tag}: HTTP {status}")
        return sha256_digest(body)

    def manifest(self, ref: ImageRef, digest: str) -> Manifest:
        status, headers, body = self._request(ref, "GET", digest)
        if status != 200:
            raise NeedsCredentials(f"GET manifest {digest}: HTTP {status}")
        algo = digest.split(":", 1)[0]
        if digest_of(body, algo) != digest:
            raise ImageError(f"{ref.name}: registry sent a manifest that does not match {digest}")
        media_type = headers.get("content-type", "").split(";")[0].strip()
        return Manifest(digest, media_type, json_object(body, ref.name, "registry answer"))

    # -- plumbing ---------------------------------------------------------------------------
    def _request(self, ref: ImageRef, method: str, reference: str) -> tuple[int, dict[str, str], bytes]:
        assert ref.registry is not None and ref.repository is not None
        host = _API_HOSTS.get(ref.registry, ref.registry)
        from urllib.parse import quote

        path = f"/v2/{ref.repository}/manifests/{quote(reference, safe=':')}"
        headers = {"Accept": ACCEPT, "User-Agent": "hpcjobs-images"}
        key = (ref.registry, ref.repository)
        if key in self._tokens:
            headers["Authorization"] = f"Bearer {self._tokens[key]}"
        status, resp_headers, body = self._send(ref.registry, host, method, path, headers)
        if status == 401:
            challenge = resp_headers.get("www-authenticate", "")
            if not challenge.lower().startswith("bearer ") or key in self._tokens:
                raise NeedsCredentials(f"{ref.name}: registry wants credentials")
            self._tokens[key] = self._anonymous_token(ref, challenge)
            headers["Authorization"] = f"Bearer {self._tokens[key]}"
            status, resp_headers, body = self._send(ref.registry, host, method, path, headers)
            if status in (401, 403):
                raise NeedsCredentials(f"{ref.name}: registry wants credentials")
        if status == 404:
            raise ImageError(f"docker://{ref.name}: {reference} not found in the registry")
        return status, resp_headers, body

    def _send(
        self, registry: str, host: str, method: str, path: str, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        schemes = (
            [self._scheme[registry]]
            if registry in self._scheme
            else (["https", "http"] if self.insecure(registry) else ["https"])
        )
        last: Exception | None = None
        for scheme in schemes:
            try:
                result = self._open(f"{scheme}://{host}{path}", method, headers, verify=not self.insecure(registry))
            except OSError as exc:  # URLError and SSLError are OSErrors
                last = exc
                continue
            self._scheme[registry] = scheme
            return result
        reason = getattr(last, "reason", last)
        raise ImageError(f"registry {registry} is not reachable: {reason}")

    def _open(
        self,
        url: str,
        method: str,
        headers: Mapping[str, str],
        *,
        verify: bool,
    ) -> tuple[int, dict[str, str], bytes]:
        import urllib.error
        import urllib.request  # lazily: only registry lookups pay for urllib and ssl

        req = urllib.request.Request(url, method=method, headers=dict(headers))  # noqa: S310 (http(s) only)
        ctx = self._context(verify) if url.startswith("https:") else None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s, context=ctx) as resp:  # noqa: S310
                body = resp.read(MAX_MANIFEST_BYTES + 1) if method == "GET" else b""
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, body[:MAX_MANIFEST_BYTES]
        except urllib.error.HTTPError as err:
            hdrs = {k.lower(): v for k, v in err.headers.items()} if err.headers else {}
            return err.code, hdrs, b""

    def _context(self, verify: bool) -> ssl.SSLContext:
        import ssl

        # building a context loads the CA bundle (tens of ms): once per client
        if verify not in self._contexts:
            if verify:
                ctx = ssl.create_default_context()
            else:  # no CA bundle to load when nothing is verified
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            self._contexts[verify] = ctx
        return self._contexts[verify]

    def _anonymous_token(self, ref: ImageRef, challenge: str) -> str:
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.pop("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise NeedsCredentials(f"{ref.name}: unusable auth challenge")
        params.setdefault("scope", f"repository:{ref.repository}:pull")
        from urllib.parse import urlencode

        url = realm + ("&" if "?" in realm else "?") + urlencode(params)
        try:
            status, _h, body = self._open(
                url, "GET", {"User-Agent": "hpcjobs-images"}, verify=not self.insecure(ref.registry or "")
            )
        except OSError as exc:
            raise NeedsCredentials(f"{ref.name}: token service: {exc}") from exc
        if status != 200:
            raise NeedsCredentials(f"{ref.name}: token service answered HTTP {status}")
        data = json_object(body, ref.name, "registry answer")
        token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token:
            raise NeedsCredentials(f"{ref.name}: token service sent no token")
        return token


class Skopeo:
    """``skopeo inspect`` through the Runner (reads registry credentials the usual way)."""

    def __init__(
        self,
        runner: Runner,
        insecure: InsecureRegistries,
        *,
        binary: str = "skopeo",
        timeout_s: float = 120.0,
    ) -> None:
        self.runner = runner
        self.insecure = insecure
        self.binary = binary
        self.timeout_s = timeout_s

    def tag_digest(self, ref: ImageRef) -> str:
        out = self._inspect(ref, f"docker://{ref.name}:{ref.tag}", ["--no-tags", "--format", "{{.Digest}}"])
        digest = out.strip()
        if not DIGEST_RE.match(digest):
            raise ImageError(f"skopeo inspect docker://{ref.name}:{ref.tag}: no digest in its answer")
        return digest

    def manifest(self, ref: ImageRef, digest: str) -> Manifest:
        out = self._inspect(ref, f"docker://{ref.name}@{digest}", ["--raw"])
        body = json_object(out.encode(), ref.name, "registry answer")
        return Manifest(digest, str(body.get("mediaType", "")), body)

    def _inspect(self, ref: ImageRef, target: str, extra: list[str]) -> str:
        argv = [self.binary, "inspect", *extra]
        if ref.registry and self.insecure(ref.registry):
            argv.append("--tls-verify=false")
        argv.append(target)
        try:
            res = self.runner(argv, timeout_s=self.timeout_s)
        except RunnerError as exc:
            raise ImageError(f"cannot resolve {target}: {exc} (install skopeo, or pin the image by digest)") from exc
        if not res.ok:
            msg = (res.stderr.strip().splitlines() or ["no message"])[-1]
            raise ImageError(f"skopeo inspect {target} failed: {msg}")
        return res.stdout


def json_object(data: bytes, what: str, subject: str) -> dict[str, Any]:
    """``data`` as a JSON object, else ImageError ``{what}: {subject} is not JSON`` (or not an object)."""
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise ImageError(f"{what}: {subject} is not JSON") from exc
    if not isinstance(obj, dict):
        raise ImageError(f"{what}: {subject} is not a JSON object")
    return obj
