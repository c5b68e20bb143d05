# Shell helpers to run Debian's docker-registry on a free loopback port.
# Source this file; call start_registry, then use $REGISTRY (host:port).
# The registry and its storage are removed when the calling shell exits.

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start_registry() {
  local port dir
  port=$(free_port)
  dir=$(mktemp -d "${TMPDIR:-/tmp}/kiln-registry.XXXXXX")
  cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
  docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  REGISTRY_PID=$!
  REGISTRY_DIR=$dir
  REGISTRY="127.0.0.1:$port"
  trap stop_registry EXIT
  for _ in $(seq 1 100); do
    if curl -fsS "http://$REGISTRY/v2/" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  echo "registry did not start; its log:" >&2
  cat "$dir/registry.log" >&2
  return 1
}

stop_registry() {
  if [ -n "${REGISTRY_PID:-}" ]; then
    kill "$REGISTRY_PID" 2>/dev/null || true
    wait "$REGISTRY_PID" 2>/dev/null || true
  fi
  [ -n "${REGISTRY_DIR:-}" ] && rm -rf "$REGISTRY_DIR"
}
