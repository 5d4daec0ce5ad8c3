#!/usr/bin/env bash
# Installs endocap on a Debian or Ubuntu box from a built checkout:
#   npm ci && npm run build && sudo scripts/install.sh
# It copies the program to /opt/endocap and creates the endocap system user.
# It installs the systemd unit, udev rules and tmpfiles.d entry and, if none
# exists yet, a profile to edit at /etc/endocap/profile.yaml.
#
# --root DIR installs into DIR instead of / (an image being built, or a test):
# users are then added to DIR/etc/passwd and nothing on the running system is
# reloaded. Running the script again gives the same files, owners and modes;
# an existing profile is kept.
set -euo pipefail

usage() {
  echo "usage: install.sh [--root DIR]" >&2
  exit 64
}

root=/
while [[ $# -gt 0 ]]; do
  case "$1" in
    --root)
      [[ $# -ge 2 ]] || usage
      root="$2"
      shift 2
      ;;
    --root=*)
      root="${1#--root=}"
      shift
      ;;
    -h | --help)
      echo "usage: install.sh [--root DIR]"
      echo "  --root DIR   install into DIR instead of / and reload nothing on this system"
      exit 0
      ;;
    *) usage ;;
  esac
done
[[ -d "$root" ]] || { echo "install.sh: --root $root is not a folder" >&2; exit 64; }
root="$(cd "$root" && pwd)"
# Paths below are written as "$root$path", so the real root becomes the empty prefix.
[[ "$root" == / ]] && root=""

source_dir="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/endocap
if [[ ! -f "$source_dir/dist/cli/main.js" ]]; then
  echo "install.sh: $source_dir/dist is missing; run 'npm ci && npm run build' first" >&2
  exit 1
fi

create_user() {
  if [[ -z "$root" ]]; then
    id endocap >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/endocap --no-create-home --shell /usr/sbin/nologin endocap
    return
  fi
  # A fresh image folder has no account files yet; useradd --prefix needs them.
  install -d -m 0755 "$root/etc"
  for file in passwd group shadow gshadow; do
    [[ -e "$root/etc/$file" ]] || install -m "$([[ $file == *shadow ]] && echo 0640 || echo 0644)" /dev/null "$root/etc/$file"
  done
  grep -q '^endocap:' "$root/etc/passwd" || useradd --prefix "$root" --system --user-group --home-dir /var/lib/endocap --no-create-home --shell /usr/sbin/nologin endocap
}

# Numeric ids read from the target's own account files, which under --root are not this system's.
account_id() {
  awk -F: -v name=endocap '$1 == name { print $3 }' "$root/etc/$1"
}

create_user
uid="$(account_id passwd)"
gid="$(account_id group)"

# The program goes to a fresh folder that then replaces the old one, so files
# dropped by a new version do not linger.
install -d -m 0755 "$root/opt"
rm -rf "$root$prefix.new"
install -d -m 0755 "$root$prefix.new"
cp -a "$source_dir/dist" "$source_dir/node_modules" "$source_dir/package.json" "$source_dir/README.md" "$source_dir/hw-profiles" "$root$prefix.new/"
[[ -d "$source_dir/docs" ]] && cp -a "$source_dir/docs" "$root$prefix.new/"
rm -rf "$root$prefix"
mv "$root$prefix.new" "$root$prefix"

install -d -m 0750 "$root/etc/endocap"
chown "0:$gid" "$root/etc/endocap"
if [[ ! -f "$root/etc/endocap/profile.yaml" ]]; then
  install -m 0640 "$source_dir/hw-profiles/usb-hdmi-1080p60.yaml" "$root/etc/endocap/profile.yaml"
  chown "0:$gid" "$root/etc/endocap/profile.yaml"
  echo "install.sh: edit /etc/endocap/profile.yaml, then: endocap profile check /etc/endocap/profile.yaml"
fi

install -d -m 0755 "$root/etc/systemd/system" "$root/etc/udev/rules.d" "$root/etc/tmpfiles.d"
install -m 0644 "$source_dir/systemd/endocap.service" "$root/etc/systemd/system/endocap.service"
install -m 0644 "$source_dir/systemd/99-endocap.rules" "$root/etc/udev/rules.d/99-endocap.rules"
install -m 0644 "$source_dir/systemd/endocap.tmpfiles.conf" "$root/etc/tmpfiles.d/endocap.conf"

if [[ -n "$root" ]]; then
  systemd-tmpfiles --create --root="$root" endocap.conf
  echo "install.sh: installed into $root (uid $uid, gid $gid); nothing was reloaded"
  exit 0
fi
systemd-tmpfiles --create endocap.conf
systemctl daemon-reload
if command -v udevadm >/dev/null; then
  udevadm control --reload
  udevadm trigger --subsystem-match=tty --subsystem-match=video4linux
fi
echo "install.sh: start with 'systemctl enable --now endocap'; logs with 'journalctl -u endocap -f'"
