#!/bin/sh
# Install what certbus's build, tests and demo need on Debian, only when it is
# missing. Usage: scripts/deps.sh [demo|test|bench]
#   demo: the pipeline's tools (dbus, certbot, pebble, openssl)
#   test: those plus the real daemons and ACME clients the tests drive
#   bench: the demo's plus apache2 and wrk
# Daemons are installed with a policy-rc.d that forbids starting them: tests
# start their own copies on loopback.
set -eu
what=${1:-test}

# command -> Debian package
need="dbus-daemon:dbus gdbus:libglib2.0-bin certbot:certbot pebble:pebble openssl:openssl setpriv:util-linux"
if [ "$what" = test ]; then
	need="$need apache2:apache2 ejabberdctl:ejabberd nginx:nginx haproxy:haproxy debootstrap:debootstrap"
	need="$need pg_ctlcluster:postgresql postfix:postfix dovecot:dovecot-core turnserver:coturn dpkg-deb:dpkg"
	# dovecot-core alone has no IMAP service (imap-login is in dovecot-imapd).
	need="$need /usr/lib/dovecot/imap-login:dovecot-imapd"
	# ACME clients besides certbot (Debian's lego saves building it from the
	# module proxy, minutes), and small tools the tests use.
	need="$need dehydrated:dehydrated lego:lego curl:curl patch:patch /usr/bin/python3:python3"
fi
if [ "$what" = bench ]; then
	need="$need apache2:apache2 wrk:wrk"
fi

missing=""
for pair in $need; do
	cmd=${pair%%:*}
	pkg=${pair#*:}
	if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/sbin/$cmd" ]; then
		missing="$missing $pkg"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "certbus: missing packages:$missing; run as root or: sudo apt-get install$missing" >&2
	exit 1
fi
echo "certbus: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# postfix asks what kind of mail server this is: none, tests configure their own.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	made_policy=1
fi
trap '[ -n "$made_policy" ] && rm -f "$policy"' EXIT
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
