#!/usr/bin/env bash
# Makes throwaway certificates for TLS tests in DIR (openssl CLI): a CA (ca.crt), a server
# certificate for 127.0.0.1 and localhost signed by it (server.crt/.key), a client certificate
# (client.crt/.key), a server certificate signed by it for another name only (wrong-name.crt/.key:
# wrong.example) and a second CA nobody trusts (other-ca.crt). Idempotent.
#   scripts/test_certs.sh DIR
set -euo pipefail
dir=${1:?usage: test_certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
[ -f other-ca.crt ] && [ -f wrong-name.crt ] && exit 0
quiet() { "$@" >/dev/null 2>&1 || { echo "test_certs.sh: failed: $*" >&2; exit 1; }; }
make_ca() {  # NAME
  quiet openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.crt" -days 3650 \
    -subj "/CN=Tollgate test $1" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
}
make_leaf() {  # NAME CN EXTENSIONS
  quiet openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$2"
  printf '%s\n' "$3" >"$1.ext"
  quiet openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" \
    -days 3650 -extfile "$1.ext"
  rm -f "$1.csr" "$1.ext"
}
make_ca ca
make_leaf server localhost "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
make_leaf client tollgate-test-client "extendedKeyUsage=clientAuth"
make_leaf wrong-name wrong.example "subjectAltName=DNS:wrong.example
extendedKeyUsage=serverAuth"
make_ca other-ca
chmod 600 ./*.key
