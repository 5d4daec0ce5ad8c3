#!/usr/bin/env bash
# Installs endocap on a Debian or Ubuntu box from a built checkout:
#   npm ci && npm run build && sudo scripts/install.sh
# Copies the program to /opt/endocap, creates the endocap user, installs the
# systemd unit and, if none exists yet, a profile to edit at /etc/endocap/profile.yaml.
set -euo pipefail
source_dir="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/endocap

if [[ ! -f "$source_dir/dist/cli/main.js" ]]; then
  echo "install.sh: $source_dir/dist is missing; run 'npm ci && npm run build' first" >&2
  exit 1
fi

id endocap >/dev/null 2>&1 || useradd --system --home /var/lib/endocap --shell /usr/sbin/nologin endocap
install -d -m 0755 "$prefix"
cp -a "$source_dir/dist" "$source_dir/node_modules" "$source_dir/package.json" "$source_dir/README.md" "$source_dir/hw-profiles" "$prefix/"
install -d -m 0750 -o root -g endocap /etc/endocap
if [[ ! -f /etc/endocap/profile.yaml ]]; then
  install -m 0640 -o root -g endocap "$source_dir/hw-profiles/usb-hdmi-1080p60.yaml" /etc/endocap/profile.yaml
  echo "install.sh: edit /etc/endocap/profile.yaml, then: endocap profile check /etc/endocap/profile.yaml"
fi
install -m 0644 "$source_dir/systemd/endocap.service" /etc/systemd/system/endocap.service
systemctl daemon-reload
echo "install.sh: start with 'systemctl enable --now endocap'; logs with 'journalctl -u endocap -f'"
