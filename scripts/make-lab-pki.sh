#!/bin/sh
# make-lab-pki.sh — a throwaway PKI for a lab: one CA, a server certificate
# for vmhostd and a client certificate for the engine (or vmhost-client).
# Not for production: keys are unencrypted and the CA key sits next to them.
#
# Usage: scripts/make-lab-pki.sh OUTDIR [HOSTNAME] [DAYS]
#   OUTDIR    created if missing; existing files are overwritten
#   HOSTNAME  extra name in the server certificate (default: `hostname -f`);
#             localhost and 127.0.0.1 are always included
#   DAYS      validity (default 825)
#
# Produces (PEM):
#   ca.pem ca-key.pem             the lab CA
#   server.pem server-key.pem     serverAuth, SAN localhost, 127.0.0.1, ::1, HOSTNAME
#   client.pem client-key.pem     clientAuth, CN=vmhost-engine
#
# Then run the daemon with mutual TLS:
#   vmhostd --listen 0.0.0.0:54321 --tls-cert OUTDIR/server.pem \
#           --tls-key OUTDIR/server-key.pem --tls-ca OUTDIR/ca.pem
# (or the [tls] section of config/vmhostd.toml) and give clients
# ca.pem + client.pem + client-key.pem.
set -eu

out=${1:?usage: $0 OUTDIR [HOSTNAME] [DAYS]}
host=${2:-$(hostname -f 2>/dev/null || hostname)}
days=${3:-825}
mkdir -p "$out"
umask 077
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# CA
key "$out/ca-key.pem"
openssl req -x509 -new -key "$out/ca-key.pem" -sha256 -days "$days" \
  -subj "/O=vmhostd lab/CN=vmhostd lab CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out "$out/ca.pem"

sign() { # name subject extfile
  openssl req -new -key "$out/$1-key.pem" -subj "$2" -out "$tmp/$1.csr"
  openssl x509 -req -in "$tmp/$1.csr" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" \
    -CAcreateserial -CAserial "$tmp/ca.srl" -sha256 -days "$days" -extfile "$3" -out "$out/$1.pem" 2>/dev/null
}

# Server
key "$out/server-key.pem"
san="DNS:localhost,IP:127.0.0.1,IP:::1"
case "$host" in
  localhost | 127.0.0.1 | '') ;;
  *[!0-9.]*) san="$san,DNS:$host" ;;
  *) san="$san,IP:$host" ;;
esac
cat >"$tmp/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
EXT
sign server "/O=vmhostd lab/CN=$host" "$tmp/server.ext"

# Client (the engine)
key "$out/client-key.pem"
cat >"$tmp/client.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EXT
sign client "/O=vmhostd lab/CN=vmhost-engine" "$tmp/client.ext"

chmod 644 "$out/ca.pem" "$out/server.pem" "$out/client.pem"
echo "lab PKI written to $out (server names: $san)"
