#!/usr/bin/env bash
# Remakes the test-only certificates in this folder (see README.md). The private keys are
# thrown away: the certificates are fixtures, never trusted anywhere.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
days=36500
key() { openssl ecparam -genkey -name "${2:-prime256v1}" -noout -out "$work/$1.key"; }
# cert NAME ISSUER SUBJECT EXTENSIONS: NAME's key certified by ISSUER (self-signed when ISSUER is -).
cert() {
  local name=$1 issuer=$2 subject=$3 ext=$4
  printf '%b\n' "$ext" >"$work/$name.ext"
  openssl req -new -key "$work/$name.key" -subj "$subject" -out "$work/$name.csr"
  if [ "$issuer" = - ]; then
    openssl x509 -req -in "$work/$name.csr" -key "$work/$name.key" -days $days -sha384 \
      -extfile "$work/$name.ext" -set_serial "0x$(openssl rand -hex 8)" -out "$name.pem"
  else
    openssl x509 -req -in "$work/$name.csr" -CA "$issuer.pem" -CAkey "$work/$issuer.key" -days $days \
      -sha384 -extfile "$work/$name.ext" -set_serial "0x$(openssl rand -hex 8)" -out "$name.pem"
  fi
}
ca='basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign'
signing='basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\nsubjectAltName=URI:https://kubernetes.io/namespaces/signet-system/serviceaccounts/signet-signer'
issuer=https://kubernetes.default.svc.cluster.local
signing="$signing\n1.3.6.1.4.1.57264.1.8=ASN1:UTF8String:$issuer"

key root secp384r1; cert root - '/O=signet test/CN=test root' "$ca"
key other-root secp384r1; cert other-root - '/O=signet test/CN=other root' "$ca"
# The key every leaf below certifies (the key the signer sent).
key leaf; openssl ec -in "$work/leaf.key" -pubout -out leaf.pub
key other; openssl ec -in "$work/other.key" -pubout -out other.pub
cert leaf root '/O=signet test' "$signing"
# An intermediate like Sigstore's (path length 0, codeSigning), and a leaf under it.
key intermediate secp384r1
cert intermediate root '/O=signet test/CN=intermediate' \
  'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nextendedKeyUsage=codeSigning'
cp "$work/leaf.key" "$work/leaf-via-intermediate.key"
cert leaf-via-intermediate intermediate '/O=signet test' "$signing"
# RFC 5280 violations, each a leaf for leaf.pub:
# an end-entity certificate (a genuine leaf for another key) used as an issuer;
key genuine secp384r1; cert genuine root '/O=signet test/CN=genuine leaf' "$signing"
cp "$work/leaf.key" "$work/forged-leaf.key"; cert forged-leaf genuine '/O=signet test' "$signing"
# a CA whose key usage does not allow certificate signing;
key no-cert-sign secp384r1; cert no-cert-sign root '/O=signet test/CN=no certSign' 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature'
cp "$work/leaf.key" "$work/leaf-via-no-cert-sign.key"; cert leaf-via-no-cert-sign no-cert-sign '/O=signet test' "$signing"
# a CA below the path-length-0 intermediate;
key sub-intermediate secp384r1; cert sub-intermediate intermediate '/O=signet test/CN=sub intermediate' "$ca"
cp "$work/leaf.key" "$work/leaf-via-sub-intermediate.key"; cert leaf-via-sub-intermediate sub-intermediate '/O=signet test' "$signing"
# a leaf without the codeSigning extended key usage;
cp "$work/leaf.key" "$work/leaf-not-code-signing.key"
cert leaf-not-code-signing root '/O=signet test' "${signing/codeSigning/serverAuth}"
# a leaf that is itself a CA.
cp "$work/leaf.key" "$work/leaf-is-ca.key"
cert leaf-is-ca root '/O=signet test' "${signing/CA:FALSE/CA:TRUE}"
# the signer's identity from another OIDC issuer (Fulcio's v2 extension), and a leaf that
# names its issuer in the v1 extension alone (raw bytes).
cp "$work/leaf.key" "$work/leaf-other-issuer.key"
cert leaf-other-issuer root '/O=signet test' "${signing/$issuer/https://issuer.example}"
cp "$work/leaf.key" "$work/leaf-v1-issuer.key"
cert leaf-v1-issuer root '/O=signet test' \
  "${signing%\\n1.3.6.1.4.1.57264.1.8*}\n1.3.6.1.4.1.57264.1.1=DER:$(printf %s "$issuer" | od -An -tx1 | tr -d ' \n')"
rm -f ./*.srl
