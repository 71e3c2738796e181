#!/usr/bin/env bash
# Create (or rotate) the broker credentials of one gateway: MQTT username = site id, a random password.
#
#   sudo deploy/mosquitto/add-gateway.sh site-001            # prints the password once
#   sudo deploy/mosquitto/add-gateway.sh --remove site-001
#   sudo deploy/mosquitto/add-gateway.sh --service telegraf  # the ingest user (also: dashboard)
#   sudo deploy/mosquitto/add-gateway.sh --operator ops-li --site site-001 --site site-002
#
# The ACL (deploy/mosquitto/acl) then lets user site-001 publish under plume/site-001/ only. On the gateway, put
# the password in /etc/plume/plume.env as PLUME_MQTT_PASSWORD=... and `username: site-001` in the site file.
#
# Options:
#   --passwd FILE     the password file (default /etc/mosquitto/plume/passwd for gateways, .../passwd-services
#                     for services and operators; created when missing)
#   --password PW     use this password instead of a random one (also PLUME_MQTT_PASSWORD; avoid on shared hosts:
#                     arguments are visible to other users)
#   --service NAME    a service account (telegraf, dashboard) instead of a gateway
#   --operator NAME   an operator account (name ops-...): reads its sites, writes their plume/<site>/cmd/#
#   --site SITE       a site of the operator (repeat for several); its ACL block is rewritten each time
#   --acl FILE        the broker's ACL, edited for operators (default /etc/mosquitto/plume/acl)
#   --remove          delete the user instead
#   --reload          reload the broker afterwards (systemctl reload mosquitto)
set -euo pipefail

PASSWD=""
ACL=/etc/mosquitto/plume/acl
OPERATOR=0
SITES=()
PASSWORD=${PLUME_MQTT_PASSWORD:-}
SERVICE=0
REMOVE=0
RELOAD=0
NAME=""
SERVICES=(telegraf dashboard)
NAME_RE='^[A-Za-z0-9][A-Za-z0-9_.-]*$'  # the site-file rule for site ids (gateway/config.py NAME)

die() { echo "add-gateway.sh: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while (($#)); do
  case $1 in
    --passwd) PASSWD=${2:?--passwd needs a file}; shift 2 ;;
    --password) PASSWORD=${2:?--password needs a value}; shift 2 ;;
    --service) SERVICE=1; NAME=${2:?--service needs a name}; shift 2 ;;
    --operator) OPERATOR=1; NAME=${2:?--operator needs a name}; shift 2 ;;
    --site) SITES+=("${2:?--site needs a site id}"); shift 2 ;;
    --acl) ACL=${2:?--acl needs a file}; shift 2 ;;
    --remove) REMOVE=1; shift ;;
    --reload) RELOAD=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [[ -z $NAME ]] || die "one site at a time ($NAME, $1)"; NAME=$1; shift ;;
  esac
done
[[ -n $NAME ]] || die "which site? (add-gateway.sh SITE; see --help)"
command -v mosquitto_passwd >/dev/null || die "mosquitto_passwd not found (apt-get install mosquitto)"

is_service_name() { local s; for s in "${SERVICES[@]}"; do [[ $1 == "$s" ]] && return 0; done; return 1; }
if [[ -z $PASSWD ]]; then
  if [[ $SERVICE -eq 1 || $OPERATOR -eq 1 ]]; then PASSWD=/etc/mosquitto/plume/passwd-services
  else PASSWD=/etc/mosquitto/plume/passwd; fi
fi
if [[ $SERVICE -eq 1 ]]; then
  is_service_name "$NAME" || die "unknown service account $NAME (the ACL knows: ${SERVICES[*]})"
elif [[ $OPERATOR -eq 1 ]]; then
  [[ $NAME =~ ^ops-[A-Za-z0-9_.-]+$ ]] || die "operator $NAME: the name must start with ops- (letters, digits, '_', '.', '-')"
  [[ $REMOVE -eq 1 || ${#SITES[@]} -gt 0 ]] || die "operator $NAME: which sites? (--site SITE, repeatable)"
  for s in "${SITES[@]}"; do
    [[ $s =~ $NAME_RE ]] || die "site id $s is not valid: letters, digits, '_', '.', '-'"
  done
else
  [[ $NAME =~ $NAME_RE ]] || die "site id $NAME is not valid: letters, digits, '_', '.', '-' (a site file's site.id)"
  ! is_service_name "$NAME" || die "$NAME is a service account name; give the site another id (or use --service)"
  [[ $NAME != ops-* ]] || die "site ids starting with ops- are reserved for operator accounts"
fi

# The operator's ACL block, between marker lines: removed, then (unless --remove) written again.
write_operator_acl() {
  [[ -f $ACL ]] || die "$ACL does not exist (copy deploy/mosquitto/acl there first)"
  local tmp
  tmp=$(mktemp "$ACL.XXXXXX")
  awk -v b="# >>> operator $NAME" -v e="# <<< operator $NAME" \
    '$0 == b {skip = 1; next} $0 == e {skip = 0; next} !skip' "$ACL" > "$tmp"
  if [[ $REMOVE -eq 0 ]]; then
    {
      echo "# >>> operator $NAME"
      echo "user $NAME"
      echo "topic deny plume/$NAME/#"
      for s in "${SITES[@]}"; do
        echo "topic read plume/$s/#"
        echo "topic write plume/$s/cmd/#"
      done
      echo "# <<< operator $NAME"
    } >> "$tmp"
  fi
  chmod --reference="$ACL" "$tmp" 2>/dev/null || chmod 0644 "$tmp"
  mv "$tmp" "$ACL"
  echo "ACL of $NAME in $ACL: ${SITES[*]:-removed}"
}

if [[ $REMOVE -eq 1 ]]; then
  [[ -f $PASSWD ]] || die "$PASSWD does not exist"
  mosquitto_passwd -D "$PASSWD" "$NAME"
  echo "removed $NAME from $PASSWD"
else
  if [[ -z $PASSWORD ]]; then
    PASSWORD=$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')
    GENERATED=1
  else
    GENERATED=0
  fi
  if [[ ! -e $PASSWD ]]; then
    mkdir -p "$(dirname "$PASSWD")"
    (umask 027 && : > "$PASSWD")
  fi
  # The password goes through stdin, never the command line (visible in ps).
  printf '%s\n%s\n' "$PASSWORD" "$PASSWORD" | mosquitto_passwd "$PASSWD" "$NAME" >/dev/null
  # Mosquitto reads the file as its own user and warns when others can.
  chmod 0640 "$PASSWD"
  if getent group mosquitto >/dev/null; then chgrp mosquitto "$PASSWD"; fi
  echo "user $NAME set in $PASSWD"
  if [[ $GENERATED -eq 1 ]]; then
    if [[ $SERVICE -eq 1 || $OPERATOR -eq 1 ]]; then
      echo "password (shown once): $PASSWORD"
    else
      echo "on the gateway, /etc/plume/plume.env:  PLUME_MQTT_PASSWORD=$PASSWORD"
      echo "and in /etc/plume/site.yaml: username: $NAME  (site.id must be $NAME)"
    fi
  fi
fi

if [[ $OPERATOR -eq 1 ]]; then write_operator_acl; fi

if [[ $RELOAD -eq 1 ]]; then
  systemctl reload mosquitto
else
  echo "reload the broker to apply: systemctl reload mosquitto"
fi
