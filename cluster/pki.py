"""Certificates, keys and kubeconfigs for the local control plane: one CA, a cert per client, an SA key pair.

Everything is made once per cluster state folder and reused by later starts. Keys are ECDSA
P-256 (fast to make) except the service-account signing key (RSA 2048, what every
Kubernetes client and KFP expects for RS256 tokens). Files are written owner-only.
"""

import datetime as dt
import ipaddress
import os

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 365
SERVICE_IP = "10.96.0.1"  # the first address of the service CIDR (the `kubernetes` Service)
NODE_IP = "10.250.0.2"  # network.NODE_IP: the node's address inside the cluster's network namespace
APISERVER_NAMES = ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                   "kubernetes.default.svc.cluster.local")


def _write(path: str, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _load_key(path: str):
    with open(path, "rb") as handle:
        return serialization.load_pem_private_key(handle.read(), password=None)


def _load_cert(path: str) -> x509.Certificate:
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


def _name(common_name: str, organization: str = "") -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _certificate(subject, public_key, issuer, issuer_key, *, ca: bool, usages=(), dns=(), ips=()):
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=False, key_cert_sign=False, crl_sign=False,
            content_commitment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True).add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    if dns or ips:
        names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class Pki:
    """The PKI folder of one local cluster (``<state>/pki``)."""

    def __init__(self, directory: str):
        self.directory = directory

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def ensure(self, node_ips=()) -> None:
        """Make whatever is missing: the CA, the SA key pair and every certificate below."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        if not os.path.exists(self.path("ca.crt")):
            key = ec.generate_private_key(ec.SECP256R1())
            name = _name("kubetfx-local-ca")
            _write(self.path("ca.key"), _key_pem(key))
            _write(self.path("ca.crt"), _certificate(name, key.public_key(), name, key, ca=True)
                   .public_bytes(serialization.Encoding.PEM))
        if not os.path.exists(self.path("sa.key")):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _write(self.path("sa.key"), _key_pem(key))
            _write(self.path("sa.pub"), key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        server = ExtendedKeyUsageOID.SERVER_AUTH
        client = ExtendedKeyUsageOID.CLIENT_AUTH
        self.issue("apiserver", "kube-apiserver", usages=(server,), dns=APISERVER_NAMES,
                   ips=("127.0.0.1", SERVICE_IP, NODE_IP))
        self.issue("admin", "kubetfx-admin", "system:masters", usages=(client,))
        self.issue("controller-manager", "system:kube-controller-manager", usages=(client,))
        self.issue("scheduler", "system:kube-scheduler", usages=(client,))
        for component in ("controller-manager", "scheduler"):  # their health endpoints, verified by our CA
            self.issue(f"{component}-serving", f"kube-{component}", usages=(server,), dns=("localhost",),
                       ips=("127.0.0.1",))
        self.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters", usages=(client,))

    def issue(self, file_name: str, common_name: str, organization: str = "", *, usages, dns=(), ips=()) -> str:
        """``<file_name>.crt/.key`` signed by the CA (kept if already there); returns the cert path."""
        cert_path, key_path = self.path(f"{file_name}.crt"), self.path(f"{file_name}.key")
        if os.path.exists(cert_path) and os.path.exists(key_path):
            return cert_path
        ca_cert, ca_key = _load_cert(self.path("ca.crt")), _load_key(self.path("ca.key"))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _certificate(_name(common_name, organization), key.public_key(), ca_cert.subject, ca_key, ca=False,
                            usages=usages, dns=dns, ips=ips)
        _write(key_path, _key_pem(key))
        _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        return cert_path

    def kubeconfig(self, path: str, server: str, user: str, *, token: str = "") -> str:
        """A kubeconfig for ``server`` with the client cert ``<user>.crt`` (or a bearer token)."""
        credentials = {"token": token} if token else {
            "client-certificate": self.path(f"{user}.crt"), "client-key": self.path(f"{user}.key")}
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "kubetfx-local", "cluster": {
                "server": server, "certificate-authority": self.path("ca.crt")}}],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": "kubetfx-local", "context": {"cluster": "kubetfx-local", "user": user}}],
            "current-context": "kubetfx-local",
        }
        _write(path, yaml.safe_dump(config, sort_keys=False).encode())
        return path
