#!/usr/bin/env bash
# Install (or upgrade) the Plume gateway as a systemd service on Debian 12 / Raspberry Pi OS (bookworm).
#
#   sudo deploy/install.sh                  # from a checkout of the repository
#   sudo deploy/install.sh --wheel plume_gateway-0.1.0-py3-none-any.whl
#
# What it does (each step only when needed, so a second run changes nothing):
#   - apt: python3-venv (and python3-pip);
#   - a system user `plume` (no login shell, home /var/lib/plume) in group dialout (serial ports);
#   - a virtualenv /opt/plume/venv with plume installed from this checkout (or the wheel), owned by root;
#   - /etc/plume (root:plume 0750) with site.yaml from deploy/site.example.yaml and an empty plume.env for secrets,
#     only when absent: a user's config is never overwritten;
#   - /var/lib/plume (plume:plume 0750) for the durable log;
#   - /etc/systemd/system/plume.service, enabled, and started (or restarted after an upgrade) unless --no-start;
#   - `plume config check /etc/plume/site.yaml` at the end.
#
# Options:
#   --root DIR      install into DIR as if it were / (tests, image builds): users via useradd --prefix, the unit
#                   enabled with systemctl --root, no apt, nothing started. Also PLUME_ROOT=DIR.
#   --no-start      install and enable, but do not start or restart the service.
#   --no-apt        do not run apt-get (python3-venv must be there).
#   --wheel FILE    install this wheel instead of the checkout.
#   --source DIR    the checkout to install (default: the one this script is in).
#   --site FILE     the example copied to site.yaml when there is none (default: deploy/site.example.yaml).
#   --python PATH   the interpreter for the virtualenv (default: python3; Python >= 3.11). Also PLUME_PYTHON.
# Environment: PLUME_PIP_ARGS  extra arguments for `pip install` (e.g. --index-url of a local mirror).
set -euo pipefail

ROOT=${PLUME_ROOT:-}
START=1
APT=1
WHEEL=""
SRC=""
SITE_EXAMPLE=""
PYTHON=${PLUME_PYTHON:-python3}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "== $*"; }

while (($#)); do
  case $1 in
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --root=*) ROOT=${1#*=}; shift ;;
    --no-start) START=0; shift ;;
    --no-apt) APT=0; shift ;;
    --wheel) WHEEL=${2:?--wheel needs a file}; shift 2 ;;
    --source) SRC=${2:?--source needs a directory}; shift 2 ;;
    --site) SITE_EXAMPLE=${2:?--site needs a file}; shift 2 ;;
    --python) PYTHON=${2:?--python needs a path}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

[[ $(id -u) -eq 0 ]] || die "run as root (sudo $0 $*)"
ROOT=${ROOT%/}
if [[ -n $ROOT ]]; then
  [[ -d $ROOT ]] || die "--root $ROOT: no such directory"
  ROOT=$(cd "$ROOT" && pwd)
  [[ $ROOT != / ]] || ROOT=""
fi
STAGED=0
[[ -z $ROOT ]] || STAGED=1

SRC=${SRC:-$(cd "$HERE/.." && pwd)}
SITE_EXAMPLE=${SITE_EXAMPLE:-$HERE/site.example.yaml}
UNIT_SRC=$HERE/systemd/plume.service
[[ -f $UNIT_SRC ]] || die "$UNIT_SRC is missing (run the script from a checkout of the repository)"
[[ -f $SITE_EXAMPLE ]] || die "site example $SITE_EXAMPLE is missing"
if [[ -n $WHEEL ]]; then
  [[ -f $WHEEL ]] || die "--wheel $WHEEL: no such file"
  WHEEL=$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")
else
  [[ -f $SRC/pyproject.toml ]] || die "$SRC is not a checkout of plume (no pyproject.toml); use --source or --wheel"
fi

USER_NAME=plume
SERIAL_GROUP=dialout
OPT=$ROOT/opt/plume
VENV=$OPT/venv
ETC=$ROOT/etc/plume
STATE=$ROOT/var/lib/plume
UNIT_DIR=$ROOT/etc/systemd/system
UNIT=$UNIT_DIR/plume.service
SYSTEMD_RUNNING=0
[[ $STAGED -eq 0 && -d /run/systemd/system ]] && SYSTEMD_RUNNING=1
CHANGED_CODE=0
CHANGED_UNIT=0

# Users and groups: useradd/usermod --prefix edit $ROOT/etc/{passwd,group} without touching the host.
PREFIX_ARGS=()
[[ $STAGED -eq 0 ]] || PREFIX_ARGS=(--prefix "$ROOT")
passwd_entry() { awk -F: -v u="$1" '$1 == u' "$ROOT/etc/passwd" 2>/dev/null; }
group_entry() { awk -F: -v g="$1" '$1 == g' "$ROOT/etc/group" 2>/dev/null; }
user_exists() {
  if [[ $STAGED -eq 1 ]]; then [[ -n $(passwd_entry "$1") ]]; else getent passwd "$1" >/dev/null; fi
}
group_exists() {
  if [[ $STAGED -eq 1 ]]; then [[ -n $(group_entry "$1") ]]; else getent group "$1" >/dev/null; fi
}
in_group() {  # user group
  local members
  if [[ $STAGED -eq 1 ]]; then members=$(group_entry "$2" | cut -d: -f4); else members=$(getent group "$2" | cut -d: -f4); fi
  [[ ,$members, == *,$1,* ]]
}
uid_of() { if [[ $STAGED -eq 1 ]]; then passwd_entry "$1" | cut -d: -f3; else id -u "$1"; fi; }
gid_of() { if [[ $STAGED -eq 1 ]]; then group_entry "$1" | cut -d: -f3; else getent group "$1" | cut -d: -f3; fi; }

# Set owner and mode only when they differ (a second run leaves every file as it was).
ensure_owner_mode() {  # path uid gid mode
  local path=$1 want_owner="$2:$3" want_mode=$4
  [[ $(stat -c '%u:%g' "$path") == "$want_owner" ]] || chown "$want_owner" "$path"
  [[ $(stat -c '%a' "$path") == "${want_mode#0}" ]] || chmod "$want_mode" "$path"
}
ensure_dir() {  # path uid gid mode
  [[ -d $1 ]] || mkdir -p "$1"
  ensure_owner_mode "$@"
}
# Copy only when the content differs; returns 0 when the file was (re)written.
install_if_changed() {  # src dst uid gid mode
  if [[ -f $2 ]] && cmp -s "$1" "$2"; then
    ensure_owner_mode "$2" "$3" "$4" "$5"
    return 1
  fi
  install -m "$5" -o "$3" -g "$4" "$1" "$2"
}

# 1. Debian packages.
if [[ $APT -eq 1 && $STAGED -eq 0 ]]; then
  missing=()
  for p in python3-venv python3-pip; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    say "apt: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
elif [[ $STAGED -eq 1 ]]; then
  say "apt: skipped (--root $ROOT)"
fi
"$PYTHON" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  || die "$PYTHON is not Python >= 3.11 with the venv module (apt-get install python3-venv, or --python)"

# 2. The service user: a system user without login, home = the state folder, in the serial-port group.
if [[ $STAGED -eq 1 ]]; then
  [[ -f $ROOT/etc/passwd && -f $ROOT/etc/group ]] || die "--root $ROOT has no etc/passwd and etc/group"
fi
group_exists "$SERIAL_GROUP" || die "group $SERIAL_GROUP does not exist (it owns the serial ports on Debian)"
if ! user_exists "$USER_NAME"; then
  say "user: creating system user $USER_NAME"
  useradd "${PREFIX_ARGS[@]}" --system --user-group --home-dir /var/lib/plume --no-create-home \
    --shell /usr/sbin/nologin --comment "Plume gateway" "$USER_NAME"
fi
if ! in_group "$USER_NAME" "$SERIAL_GROUP"; then
  say "user: adding $USER_NAME to $SERIAL_GROUP (serial ports)"
  usermod "${PREFIX_ARGS[@]}" --append --groups "$SERIAL_GROUP" "$USER_NAME"
fi
PUID=$(uid_of "$USER_NAME")
PGID=$(gid_of "$USER_NAME")
[[ -n $PUID && -n $PGID ]] || die "cannot resolve the uid/gid of $USER_NAME"

# 3. Folders: code root-owned (the service cannot change its own code), config readable by the service only,
#    state writable by the service only.
ensure_dir "$OPT" 0 0 0755
ensure_dir "$ETC" 0 "$PGID" 0750
ensure_dir "$STATE" "$PUID" "$PGID" 0750

# 4. The virtualenv, reinstalled only when the source (or wheel) changed since the last install.
if [[ -n $WHEEL ]]; then
  FINGERPRINT="wheel $(sha256sum "$WHEEL" | cut -d' ' -f1)"
  TARGET=$WHEEL
else
  FINGERPRINT="source $(cd "$SRC" && find pyproject.toml gateway firmware-sim -type f \
    ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
  TARGET=$SRC
fi
STAMP=$VENV/.plume-installed
if [[ ! -x $VENV/bin/python ]]; then
  say "venv: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [[ ! -f $STAMP || $(cat "$STAMP") != "$FINGERPRINT" ]]; then
  say "venv: installing plume from $TARGET"
  # Word splitting of PLUME_PIP_ARGS is intended: it holds several options.
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    ${PLUME_PIP_ARGS:-} "$TARGET"
  printf '%s\n' "$FINGERPRINT" > "$STAMP"
  CHANGED_CODE=1
else
  say "venv: plume is up to date in $VENV"
fi
[[ -x $VENV/bin/plume ]] || die "$VENV/bin/plume is missing after the install"

# 5. Configuration: never overwrite what is there.
if [[ ! -e $ETC/site.yaml ]]; then
  say "config: $ETC/site.yaml from $(basename "$SITE_EXAMPLE") (edit it for your site)"
  install -m 0640 -o 0 -g "$PGID" "$SITE_EXAMPLE" "$ETC/site.yaml"
else
  say "config: keeping $ETC/site.yaml"
fi
if [[ ! -e $ETC/plume.env ]]; then
  say "config: $ETC/plume.env for secrets (root:plume 0640)"
  tmp=$(mktemp)
  cat > "$tmp" <<'ENV'
# Environment of the plume service (systemd EnvironmentFile): secrets and extra arguments.
# PLUME_MQTT_PASSWORD=the-password-from-add-gateway.sh
# PLUME_RUN_ARGS=--metrics-port 9464
ENV
  install -m 0640 -o 0 -g "$PGID" "$tmp" "$ETC/plume.env"
  rm -f "$tmp"
fi

# 6. The systemd unit.
ensure_dir "$UNIT_DIR" 0 0 0755
if install_if_changed "$UNIT_SRC" "$UNIT" 0 0 0644; then
  say "systemd: installed $UNIT"
  CHANGED_UNIT=1
fi
SYSTEMCTL=(systemctl)
[[ $STAGED -eq 0 ]] || SYSTEMCTL=(systemctl --root="$ROOT")
if [[ $SYSTEMD_RUNNING -eq 1 && $CHANGED_UNIT -eq 1 ]]; then
  systemctl daemon-reload
fi
if ! "${SYSTEMCTL[@]}" --quiet is-enabled plume.service 2>/dev/null; then
  say "systemd: enabling plume.service"
  "${SYSTEMCTL[@]}" --quiet enable plume.service
fi

# 7. Check the configuration with the installed gateway (as the service user when there is one to switch to).
say "check: plume config check $ETC/site.yaml"
if [[ $STAGED -eq 0 ]] && command -v runuser >/dev/null; then
  runuser -u "$USER_NAME" -- "$VENV/bin/plume" config check "$ETC/site.yaml" \
    || die "the site file does not pass the check: fix $ETC/site.yaml, then re-run this script"
else
  "$VENV/bin/plume" config check "$ETC/site.yaml" \
    || die "the site file does not pass the check: fix $ETC/site.yaml, then re-run this script"
fi

# 8. Start (or restart after an upgrade).
if [[ $START -eq 0 || $STAGED -eq 1 ]]; then
  say "systemd: not started (start with: systemctl start plume)"
elif [[ $SYSTEMD_RUNNING -eq 0 ]]; then
  say "systemd: not running on this machine; the service starts at the next boot"
elif [[ $CHANGED_CODE -eq 1 || $CHANGED_UNIT -eq 1 ]]; then
  say "systemd: (re)starting plume.service"
  systemctl restart plume.service
else
  systemctl start plume.service
fi
say "done: logs with journalctl -u plume -f"
