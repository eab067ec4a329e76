"""The credential table: every kind of secret promptcache refuses to cache, as RE2 patterns.

:mod:`promptcache.detect` joins this table with its PII patterns into one scanner. Each row
is ``(kind, pattern)``; a kind in :data:`CREDENTIAL_VERIFY` has a check of the hit that a
regex cannot express (is the value a placeholder, does the JWT header decode to JSON).

Patterns are written for the text a model sees, not for its JSON encoding: quoted values
(``secret_key = "..."``, ``"SecretAccessKey": "..."``) are matched with their quotes, which
is why callers scan rendered text (:func:`promptcache.scan.visible_text`), never JSON with
escaped quotes. Base64-wrapped credentials (a Kubernetes Secret's data, an encoded
credentials file) are found by the scanner's unwrapping pass (see
:class:`promptcache.scan.Scanner`), not by a row here.

Order matters: the combined scan is leftmost-first, so the specific rows (a vendor's key
format) come before the generic ones (``password = ...``), which come last.
"""

from __future__ import annotations

import base64
import binascii
import re

import orjson

#: Words that name a credential in an assignment (``DB_PASSWORD=``, ``"client_secret":``,
#: ``api-key:``, ``secret_key = "..."``). A prefix of words is allowed (``aws.secret_key``).
_KEYWORD = (
    r"(?:[A-Za-z0-9]+[_./-])*"
    r"(?:password|passwd|passphrase|pwd|secret|secret[_-]?key|client[_-]?secret|api[_-]?key|apikey"
    r"|access[_-]?key|private[_-]?key|access[_-]?token|auth[_-]?token|refresh[_-]?token"
    r"|session[_-]?token|token|credentials?|subscription[_-]?key|signing[_-]?key)"
)
# A value: quoted (anything but the quote, a backslash and a newline) or bare (no separator of
# the syntax around it: spaces, quotes, commas, semicolons, ampersands, brackets, backslashes).
_VALUE = r"(?:\\?\"[^\"\n\\]{6,}\\?\"|\\?'[^'\n\\]{6,}\\?'|[^\s\"',;&<>{}()\[\]\\]{6,})"
# An optional quote, escaped or not: JSON inside a JSON string (a tool result that is itself
# JSON text) reaches the model as \"password\": \"...\", and that is what it reads.
_Q = r"(?:\\?[\"'])?"
_B64 = r"[A-Za-z0-9+/]"

CREDENTIAL_PATTERNS: list[tuple[str, str]] = [
    # private keys: armoured (PEM, OpenSSH, PGP), PuTTY files, and PEM bodies without their header
    ("pem_private_key", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    ("putty_private_key", r"PuTTY-User-Key-File-[1-9]:\s*[A-Za-z0-9@.-]+"),
    (
        "private_key_body",
        # DER of PKCS#1 RSA / PKCS#8 (version 0), encrypted PKCS#8 (PBES2), SEC1 EC keys,
        # PKCS#8 EC and Ed25519, and OpenSSH's "openssh-key-v1" magic, base64-encoded.
        # A certificate (public) starts MII...CCA and matches none of them.
        r"\b(?:MII" + _B64 + r"{3}IBA[AD]|MII" + _B64 + r"{5}BgkqhkiG9w0BBQ0w|MIG" + _B64 + r"AgEAM"
        r"|MHcCAQEE|MIGkAgEBBD|MIHcAgEBBE|MC4CAQAwBQYDK2Vw|b3BlbnNzaC1rZXktdjE)" + _B64 + r"{40,}",
    ),
    # vendor key formats
    ("anthropic_api_key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    ("openai_api_key", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    ("aws_access_key_id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    (
        "aws_secret_access_key",
        r"(?i:aws_secret_access_key|aws_secret_key|secretaccesskey)"
        + _Q
        + r"\s*[:=]\s*"
        + _Q
        + r"[A-Za-z0-9/+=]{40}",
    ),
    ("gcp_private_key_id", r"private_key_id" + _Q + r"\s*:\s*" + _Q + r"[0-9a-f]{40}\b"),
    ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}"),
    ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    ("slack_token", r"\b(?:xox[abposre]-[A-Za-z0-9-]{10,}|xapp-[0-9]+-[A-Za-z0-9-]{10,})"),
    ("slack_webhook", r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{16,}"),
    ("huggingface_token", r"\bhf_[A-Za-z0-9]{30,}"),
    ("azure_storage_key", r"(?i:AccountKey|SharedAccessKey)=[A-Za-z0-9+/]{30,}={0,2}"),
    ("azure_sas_signature", r"[?&;]sig=[A-Za-z0-9%+/]{20,}={0,2}"),
    ("bearer_token", r"\b(?i:bearer)\s+[A-Za-z0-9._~+/-]{20,}=*"),
    ("stripe_key", r"\b(?:[rs]k_(?:live|test)|whsec)_[A-Za-z0-9]{20,}"),
    ("sendgrid_api_key", r"\bSG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}"),
    # A JWT's header is base64url JSON: "eyJ" when written {"alg"...}, "eyA"/"ew" when spaced.
    ("jwt", r"\be[wy][A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{8,}"),
    # connection strings
    (
        "url_password",
        # The user name may be empty: redis://:password@host is redis-py's documented form. The
        # password may hold '/' and '+'; a port followed by a path is told apart by the check.
        r"\b[a-zA-Z][a-zA-Z0-9+.-]+://[^\s/:@\"']*:[^\s@\"']+@",
    ),
    ("go_mysql_dsn", r"\b[A-Za-z0-9_.-]+:[^\s\"']+@(?:tcp|udp|unix)\("),
    # a Kubernetes Secret manifest carries its secrets in data/stringData
    ("kubernetes_secret", r"(?i:\bkind)" + _Q + r"\s*:\s*" + _Q + r"Secret\b"),
    # generic: a credential named in one field and given in the next ({"name": "DB_PASSWORD",
    # "value": "..."}, an env entry, an SSM parameter), then any assignment to a credential word
    (
        "split_credential",
        r"(?i:\b(?:name|key|id)"
        + _Q
        + r"\s*[:=]\s*"
        + _Q
        + "/?"
        + _KEYWORD
        + _Q
        + r"\s*[,;]?\s*"
        + _Q
        + r"value"
        + _Q
        + r"\s*[:=]\s*)"
        + _VALUE,
    ),
    ("credential_assignment", r"(?i:\b" + _KEYWORD + ")" + _Q + r"\s*(?:=>|:=|[:=])\s*" + _VALUE),
]

_PLACEHOLDER = re.compile(
    r"your|example|placeholder|dummy|sample|redacted|changeme|xxxx|\*\*\*|\.\.\.|[<>$`{}]|%s|%\(",
    re.IGNORECASE,
)
_CODE = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+"  # an attribute path: settings.DB_PASSWORD
    r"|[A-Z][A-Z0-9_]*"  # an environment variable's name
    r"|[a-z]+(?:[-_][a-z]+)*"  # a word or snake/kebab words: a placeholder or an identifier
    r"|[A-Za-z]+"  # one word, any case (CamelCase types: SecretStr)
    r"|[0-9]+"  # a number (a token count, a port)
    r"|(?:/|\./|~/|[A-Za-z]:\\)\S*"  # a path
    r"|[a-z][a-z0-9+.-]*://\S*"  # a URL (one with a password is found by url_password)
)


def _value_of(text: str, start: int, end: int) -> str:
    """The assigned value of a hit ``text[start:end]``: after the last separator, unquoted."""
    hit = text[start:end]
    m = re.search(r"(?:=>|:=|[:=])\s*(\\?\"[^\"\n]*\"|\\?'[^'\n]*'|[^\s\"']+)$", hit)
    value = m.group(1) if m else hit
    return value.strip("\\\"'")


def plausible_secret(value: str) -> bool:
    """Whether an assigned ``value`` looks like a real credential rather than code or a placeholder.

    >>> plausible_secret("Xq7!vR2p#Lm9"), plausible_secret("os.environ"), plausible_secret("<api key>")
    (True, False, False)
    """
    if len(value) < 8 or " " in value or _PLACEHOLDER.search(value) or _CODE.fullmatch(value):
        return False
    has_letter = any(c.isalpha() for c in value)
    has_other = any(not c.isalpha() for c in value)
    return has_letter and has_other


def _assignment(text: str, start: int, end: int) -> bool:
    return plausible_secret(_value_of(text, start, end))


def _url_password(text: str, start: int, end: int) -> bool:
    # "host:8080/path@x" is a port and a path, not a user and a password.
    password = text[start:end].rsplit("@", 1)[0].split("//", 1)[1].split(":", 1)[1]
    return re.match(r"[0-9]{1,5}(?:/|$)", password) is None


def _jwt(text: str, start: int, end: int) -> bool:
    # The header must decode to a JSON object naming an algorithm or a type: a dotted run of
    # base64url that merely starts with "ey" (a file name, a version string) does not.
    header = text[start:end].split(".", 1)[0]
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(decoded, dict) and ("alg" in decoded or "typ" in decoded)


_K8S_DATA = re.compile(
    r"(?:data|stringData)[\"']?\s*:\s*\{?\s*[\"']?[A-Za-z0-9_.-]+[\"']?\s*:\s*[\"']?[^\s\"'{}]{4,}"
)


def _kubernetes_secret(text: str, start: int, end: int) -> bool:
    # Only a manifest that carries data is a secret; prose about Kubernetes Secrets is not.
    return _K8S_DATA.search(text, max(0, start - 4000), end + 4000) is not None


CREDENTIAL_VERIFY = {
    "credential_assignment": _assignment,
    "split_credential": _assignment,
    "url_password": _url_password,
    "jwt": _jwt,
    "kubernetes_secret": _kubernetes_secret,
}
