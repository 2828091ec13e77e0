#!/usr/bin/env bash
# A real OCI registry for tests and local use: Debian's docker-registry package (the CNCF distribution
# registry, 2.8) on 127.0.0.1, with a configuration and storage of its own in a temporary directory.
# It runs in the foreground: once it answers, one line goes to stdout,
#
#   endpoint=http://127.0.0.1:PORT root=/tmp/swarm-oci-registry-XXXX
#
# and it runs until it gets SIGTERM or SIGINT, then removes its directory. `root` holds the
# registry's storage (root/data) for tests that need to reach under the registry (a tampered blob).
#
#   scripts/oci-registry.sh                                  anonymous pull and push
#   scripts/oci-registry.sh --htpasswd USER:PASSWORD         HTTP basic auth (bcrypt htpasswd from apache2-utils)
#   scripts/oci-registry.sh --token REALM SERVICE ISSUER CERT bearer tokens from the token server at REALM, signed by
#                                                            the key of CERT (PEM), which the registry trusts
#   scripts/oci-registry.sh --s3 ENDPOINT BUCKET KEY SECRET  storage in an S3 bucket instead of the directory, blob
#                                                            GETs redirected to presigned S3 URLs
#
# Settings (environment): SWARM_OCI_REGISTRY_PORT (a free port), SWARM_OCI_REGISTRY_TIMEOUT (seconds to wait, 30).
set -euo pipefail

command -v docker-registry >/dev/null || { echo "oci-registry: docker-registry is not installed (apt-get install docker-registry; scripts/setup.sh test installs it)" >&2; exit 1; }

auth=none
while [ $# -gt 0 ]; do
  case "$1" in
    --htpasswd) auth=htpasswd; credentials=${2:?--htpasswd USER:PASSWORD}; shift 2 ;;
    --token) auth=token; realm=${2:?}; service=${3:?}; issuer=${4:?}; cert=${5:?--token REALM SERVICE ISSUER CERT}; shift 5 ;;
    --s3) s3_endpoint=${2:?}; s3_bucket=${3:?}; s3_key=${4:?}; s3_secret=${5:?--s3 ENDPOINT BUCKET KEY SECRET}; shift 5 ;;
    *) echo "oci-registry: unknown argument $1" >&2; exit 2 ;;
  esac
done

root=$(mktemp -d /tmp/swarm-oci-registry-XXXXXX)
pid=
cleanup () {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$root"
}
trap cleanup EXIT
trap 'exit 0' TERM INT

mkdir -p "$root/data"
case "$auth" in
  htpasswd)
    # distribution accepts only bcrypt entries
    htpasswd -Bbn "${credentials%%:*}" "${credentials#*:}" > "$root/htpasswd"
    auth_config=$(printf 'auth:\n  htpasswd:\n    realm: swarm-test\n    path: %s\n' "$root/htpasswd") ;;
  token)
    auth_config=$(printf 'auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n' "$realm" "$service" "$issuer" "$cert") ;;
  *) auth_config= ;;
esac
if [ -n "${s3_endpoint:-}" ]; then
  storage_config=$(printf 'storage:\n  s3:\n    accesskey: %s\n    secretkey: %s\n    region: us-east-1\n    regionendpoint: %s\n    bucket: %s\n    rootdirectory: /oci-%s\n    secure: false\n    v4auth: true\n  redirect:\n    disable: false\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n' \
    "$s3_key" "$s3_secret" "$s3_endpoint" "$s3_bucket" "$(basename "$root")")
else
  storage_config=$(printf 'storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n' "$root/data")
fi

free_port () { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
timeout=${SWARM_OCI_REGISTRY_TIMEOUT:-30}

# a port picked free may be taken before the registry binds it: then it exits at once and another is tried
for attempt in 1 2 3 4 5; do
  port=${SWARM_OCI_REGISTRY_PORT:-$(free_port)}
  cat > "$root/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
$storage_config
http:
  addr: 127.0.0.1:$port
  secret: $(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
$auth_config
EOF
  # AWS_CA_BUNDLE, when the environment sets one, makes distribution's S3 driver panic at start
  # (its HTTP transport cannot take a custom bundle); the S3 server it talks to here is plain HTTP
  env -u AWS_CA_BUNDLE docker-registry serve "$root/config.yml" >> "$root/registry.log" 2>&1 &
  pid=$!
  for _ in $(seq $((timeout * 10))); do
    kill -0 "$pid" 2>/dev/null || break
    # any HTTP answer (200, or 401 with auth) means it serves
    if (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'GET /v2/ HTTP/1.0\r\n\r\n' >&3 && head -c 12 <&3 | grep -q '^HTTP/') 2>/dev/null; then
      echo "endpoint=http://127.0.0.1:$port root=$root"
      wait "$pid"
      pid=
      echo "oci-registry: docker-registry exited; its log:" >&2
      tail -20 "$root/registry.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=
  [ -n "${SWARM_OCI_REGISTRY_PORT:-}" ] && break
done
echo "oci-registry: docker-registry did not start; its log:" >&2
tail -20 "$root/registry.log" >&2
exit 1
