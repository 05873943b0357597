#!/bin/sh
# Writes the serving PKI of sks-apiserver, which deploy/kustomization.yaml turns
# into Secret kube-system/sks-apiserver-serving and the APIService's caBundle:
#   ca.crt   a CA, kept (with ca.key) across runs so renewing keeps the caBundle
#   tls.crt  a certificate for the Service's DNS names, signed by that CA
#   tls.key  its key
#   ca.key   the CA's key: not deployed; keep it out of version control
#
# Usage: deploy/gen-pki.sh [DIR]        (DIR defaults to deploy/sks-apiserver/pki)
# Environment: SERVICE (sks-apiserver), NAMESPACE (kube-system),
#              DAYS (365, the certificate), CA_DAYS (3650, a new CA)
# Needs openssl. Run it again to renew the certificate; delete ca.key first to
# replace the CA too (docs/operations.md, "Serving certificate").
set -eu

DIR=${1:-$(dirname "$0")/sks-apiserver/pki}
SERVICE=${SERVICE:-sks-apiserver}
NAMESPACE=${NAMESPACE:-kube-system}
DAYS=${DAYS:-365}
CA_DAYS=${CA_DAYS:-3650}

mkdir -p "$DIR"
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -s "$DIR/ca.key" ] && openssl x509 -in "$DIR/ca.crt" -noout >/dev/null 2>&1; then
    echo "keeping the CA in $DIR (ca.crt, ca.key)"
else
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
        -keyout "$DIR/ca.key" -out "$DIR/ca.crt" -days "$CA_DAYS" \
        -subj "/CN=$SERVICE.$NAMESPACE serving CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    echo "created a CA in $DIR (ca.crt, ca.key)"
fi

host="$SERVICE.$NAMESPACE.svc"
cat >"$work/ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:$host,DNS:$host.cluster.local,DNS:$SERVICE.$NAMESPACE,DNS:$SERVICE
EXT
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$work/tls.key" -out "$work/tls.csr" -subj "/CN=$host" 2>/dev/null
openssl x509 -req -in "$work/tls.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$DAYS" -extfile "$work/ext" \
    -out "$work/tls.crt" 2>/dev/null
mv "$work/tls.key" "$DIR/tls.key"
mv "$work/tls.crt" "$DIR/tls.crt"
chmod 0644 "$DIR/ca.crt" "$DIR/tls.crt"
echo "wrote $DIR/tls.crt for $host (valid $DAYS days) and $DIR/tls.key"
