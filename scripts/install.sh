#!/usr/bin/env bash
# Installs vmhostd from this checkout: /opt/vmhostd (built code, production
# node_modules, web console, docs), /etc/vmhostd/vmhostd.toml (only if absent:
# an operator's edits are never overwritten), and the systemd unit.
# Idempotent: run it again after `git pull` to upgrade. Run as root.
#
#   bash scripts/install.sh [--prefix /opt/vmhostd] [--etc /etc/vmhostd]
#                           [--unit-dir /etc/systemd/system] [--bin-dir /usr/local/bin]
#                           [--no-systemd] [--enable]
set -euo pipefail

prefix=/opt/vmhostd
etc=/etc/vmhostd
unit_dir=/etc/systemd/system
bin_dir=/usr/local/bin
systemd=1
enable=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --etc) etc="$2"; shift 2 ;;
    --unit-dir) unit_dir="$2"; shift 2 ;;
    --bin-dir) bin_dir="$2"; shift 2 ;;
    --no-systemd) systemd=0; shift ;;
    --enable) enable=1; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

src="$(cd "$(dirname "$0")/.." && pwd)"
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }
command -v node >/dev/null || { echo "install.sh: node (>= 20) is required" >&2; exit 1; }

cd "$src"
[ -d node_modules ] || npm ci --no-audit --no-fund
[ -f dist/daemon.js ] && [ -f dist/cli/main.js ] || npm run build

echo "installing to $prefix"
install -d -m 0755 "$prefix" "$prefix/bin"
# Replace code directories wholesale so files deleted upstream disappear.
for d in dist web config systemd; do
  rm -rf "$prefix/$d.new"
  cp -a "$src/$d" "$prefix/$d.new"
  rm -rf "$prefix/$d"
  mv "$prefix/$d.new" "$prefix/$d"
done
install -m 0755 "$src/bin/vmhostd.js" "$src/bin/vmhost-client.js" "$prefix/bin/"
install -m 0644 "$src/package.json" "$src/package-lock.json" "$src/README.md" "$prefix/"
# Production dependencies only, installed from the lock file.
if [ ! -d "$prefix/node_modules" ] || ! cmp -s "$src/package-lock.json" "$prefix/.installed-lock.json"; then
  (cd "$prefix" && npm ci --omit=dev --no-audit --no-fund --ignore-scripts)
  cp "$src/package-lock.json" "$prefix/.installed-lock.json"
fi
install -d "$bin_dir"
ln -sf "$prefix/bin/vmhost-client.js" "$bin_dir/vmhost-client"

install -d -m 0750 "$etc"
if [ ! -e "$etc/vmhostd.toml" ]; then
  install -m 0640 "$src/config/vmhostd.toml" "$etc/vmhostd.toml"
  echo "wrote $etc/vmhostd.toml (defaults; edit it, then: systemctl restart vmhostd)"
else
  echo "kept existing $etc/vmhostd.toml"
fi

if [ "$systemd" = 1 ]; then
  install -d "$unit_dir"
  sed -e "s#/opt/vmhostd#${prefix}#g" -e "s#/etc/vmhostd#${etc}#g" "$src/systemd/vmhostd.service" > "$unit_dir/vmhostd.service.new"
  chmod 0644 "$unit_dir/vmhostd.service.new"
  mv "$unit_dir/vmhostd.service.new" "$unit_dir/vmhostd.service"
  echo "installed $unit_dir/vmhostd.service"
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ "$enable" = 1 ]; then systemctl enable --now vmhostd; fi
    echo "start it with: systemctl enable --now vmhostd; logs: journalctl -u vmhostd -f"
  else
    echo "systemd is not running here: start by hand with: node $prefix/bin/vmhostd.js --config $etc/vmhostd.toml"
  fi
fi
echo "done: vmhost-client is $bin_dir/vmhost-client"
