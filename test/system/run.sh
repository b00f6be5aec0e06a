#!/usr/bin/env bash
# test/system/run.sh [DEB|DIR]: the certbus system test.
#
# Boots Debian bookworm with systemd as PID 1 and the real system bus in its
# own PID/mount/UTS/IPC namespaces (the network is the host's), installs the
# certbus .deb in it (DEB, or the newest certbus_*.deb in DIR, else one built
# from this tree with scripts/build-deb.sh) and checks, from outside through nsenter:
#   install  postinst: group, state dir, unit enabled and running; the unit's
#            hardening still lets it write /etc, chown, signal other users'
#            processes, switch users and reload units over D-Bus
#   issue    pebble runs; certbot issues two certificates; Apache serves
#            them on two name-based TLS vhosts
#   renew    with certbus.service stopped, `certbot renew --force-renewal`:
#            the packaged hooks reach the daemon over the system bus (bus
#            activation starts it), apache2.service is reloaded exactly once
#            (not restarted), and both vhosts serve the new certificates
#   upgrade  reinstalling the package restarts the daemon, and `certbus
#            migrate` in postinst removes legacy per-domain dispatcher hooks
#            from a renewal config and keeps a user's own hook
#   policy   a non-root user is refused by the installed bus policy and
#            cannot own the name; a member of group certbus gets through it
#   purge    `dpkg --purge certbus` leaves no unit, policy, hook or state
# Checks that fail are collected and the test goes on where it can, so one
# run shows every problem; the exit status is 1 if any failed.
#
# Needs root, debootstrap, unshare, nsenter, openssl, flock (and go + dpkg-deb
# without DEB). Without them it fails when CI is set and prints SKIP and exits
# 0 otherwise.
#
# The debootstrapped rootfs (with apache2, certbot, pebble installed) is
# cached in $CERTBUS_SYSTEM_TEST_CACHE (default /var/cache/certbus-system-test),
# built in a temporary directory and renamed when complete; each run boots an
# overlay on it, so the cache stays clean. The first run downloads about
# 75 MB and takes one to a few minutes; later runs work offline.
#
# Environment: CERTBUS_SYSTEM_TEST_CACHE, CERTBUS_SYSTEM_TEST_MIRROR (default:
# the host's Debian mirror from /etc/apt), CERTBUS_SYSTEM_TEST_KEEP=1 (keep
# the work directory with the overlay's upper layer and logs),
# CERTBUS_SYSTEM_TEST_SETTLE (seconds to wait for a second, unwanted reload;
# default 6).
set -euo pipefail

CACHE=${CERTBUS_SYSTEM_TEST_CACHE:-/var/cache/certbus-system-test}
SUITE=bookworm
# Bump when the provisioning below changes: a cache with another recipe is
# rebuilt.
RECIPE="v3 $SUITE minbase+systemd,systemd-sysv,dbus apt:apache2,certbot,pebble,adduser"
SETTLE=${CERTBUS_SYSTEM_TEST_SETTLE:-6}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
INNER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
DOMAINS=(one.certbus.test two.certbus.test)
TESTDIR=/etc/certbus-system-test # inside: pebble's TLS files and config

# State the cleanup needs.
WORK=
UNSHARE_PID=
SYSTEMD_PID=
CACHE_TMP=
PHASE=setup
PHASE_T0=
TIMINGS=()
FAILURES=()

log() { echo "system-test: $*" >&2; }

# skip_or_fail MESSAGE: a missing prerequisite.
skip_or_fail() {
	if [ -n "${CI:-}" ]; then
		echo "FAIL: $1 (CI is set, so this is a failure, not a skip)" >&2
		exit 1
	fi
	echo "SKIP: $1"
	exit 0
}

# die MESSAGE: the test cannot go on.
die() {
	echo "system-test: FAIL [$PHASE]: $*" >&2
	FAILURES+=("[$PHASE] $*")
	exit 1
}

# check_fail MESSAGE: record a failed check and go on.
check_fail() {
	echo "system-test: FAIL [$PHASE]: $*" >&2
	FAILURES+=("[$PHASE] $*")
}

ok() { echo "system-test: ok [$PHASE]: $*" >&2; }

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

phase() {
	phase_end
	PHASE=$1
	PHASE_T0=$(now)
	echo "system-test: === $PHASE: $2" >&2
}

phase_end() {
	[ -n "$PHASE_T0" ] || return 0
	TIMINGS+=("$(printf '%-8s %6ss' "$PHASE" "$(elapsed "$PHASE_T0")")")
	PHASE_T0=
}

# --- prerequisites ------------------------------------------------------------

[ "$(id -u)" -eq 0 ] || skip_or_fail "the system test needs root (it debootstraps and boots systemd in namespaces): run it with sudo"
for tool in debootstrap unshare nsenter openssl flock mount chroot; do
	command -v "$tool" >/dev/null 2>&1 || skip_or_fail "$tool not found: apt-get install $(
		case $tool in debootstrap | openssl | mount) echo "$tool" ;; flock | unshare | nsenter) echo util-linux ;; *) echo coreutils ;; esac
	)"
done
DEB=${1:-}
if [ -d "$DEB" ]; then
	# A directory (make's dist/): its newest package.
	newest=$(ls -t "$DEB"/certbus_*.deb 2>/dev/null | head -1 || true)
	[ -n "$newest" ] || die "no certbus_*.deb in $DEB: run \`make deb\` first"
	DEB=$newest
fi
if [ -n "$DEB" ]; then
	[ -f "$DEB" ] || die "$DEB: no such file"
	DEB=$(cd "$(dirname "$DEB")" && pwd)/$(basename "$DEB")
else
	command -v go >/dev/null 2>&1 || skip_or_fail "go not found (needed to build the .deb; or pass a built one: $0 path/to/certbus.deb)"
	command -v dpkg-deb >/dev/null 2>&1 || skip_or_fail "dpkg-deb not found: apt-get install dpkg"
fi

# --- namespaces ---------------------------------------------------------------

# inside CMD...: run CMD in the booted system as root, with a clean
# environment (nothing of the host's leaks in).
inside() {
	nsenter -t "$SYSTEMD_PID" -m -u -i -p -r -w \
		env -i PATH="$INNER_PATH" HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive "$@" 7>&- 8>&- 9>&-
}

# boot MODE ARGS: boot systemd as PID 1 of new PID/mount/UTS/IPC namespaces.
#   boot dir ROOT ARCHIVES   ROOT itself (provisioning the cache); ARCHIVES
#                            is bind-mounted over apt's download directory
#   boot overlay LOWER DIR   an overlay with upper and work dirs in DIR and
#                            the merged tree at DIR/root, only visible inside
# Sets UNSHARE_PID (our child) and SYSTEMD_PID (PID 1 inside, as the host sees
# it) and waits until the system is up.
boot() {
	local mode=$1 a=$2 b=$3 bootlog=$WORK/boot.log
	cat >"$WORK/boot.sh" <<'EOF'
set -e
mode=$1
mount --make-rprivate /
if [ "$mode" = overlay ]; then
	R=$3/root
	mkdir -p "$3/upper" "$3/work" "$R"
	mount -t overlay overlay -o "lowerdir=$2,upperdir=$3/upper,workdir=$3/work" "$R"
else
	R=$2
	mount --bind "$R" "$R"
	mount --bind "$3" "$R/var/cache/apt/archives"
fi
mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"
mount --rbind /dev "$R/dev"
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
# PID 1 logs to the journal (the checks count its job messages there); until
# journald runs that falls back to the console, i.e. boot.log.
exec chroot "$R" /lib/systemd/systemd --log-target=journal --log-level=info
EOF
	# fd 9 is the cache lock, 7 and 8 the test's output: not for the booted
	# system.
	unshare --pid --fork --mount --uts --ipc sh "$WORK/boot.sh" "$mode" "$a" "$b" >"$bootlog" 2>&1 7>&- 8>&- 9>&- &
	UNSHARE_PID=$!
	local i
	for i in $(seq 100); do
		SYSTEMD_PID=$(cat "/proc/$UNSHARE_PID/task/$UNSHARE_PID/children" 2>/dev/null | awk '{print $1}')
		if [ -n "$SYSTEMD_PID" ] && [ "$(cat "/proc/$SYSTEMD_PID/comm" 2>/dev/null)" = systemd ]; then
			break
		fi
		kill -0 "$UNSHARE_PID" 2>/dev/null || { cat "$bootlog" >&2; SYSTEMD_PID=; die "the namespace did not come up (boot log above)"; }
		sleep 0.1
	done
	[ "$(cat "/proc/$SYSTEMD_PID/comm" 2>/dev/null)" = systemd ] || { tail -20 "$bootlog" >&2; die "systemd did not start in the namespace (boot log above)"; }
	# systemctl cannot connect until PID 1 has made its private socket.
	local state=
	for i in $(seq 100); do
		inside test -S /run/systemd/private && break
		sleep 0.1
	done
	state=$(timeout 180 nsenter -t "$SYSTEMD_PID" -m -p -r -w systemctl is-system-running --wait 2>&1) || true
	case $state in
	running) ;;
	degraded) log "system is degraded; failed units: $(inside systemctl --failed --no-legend --plain | awk '{print $1}' | xargs)" ;;
	*)
		tail -30 "$bootlog" >&2
		inside systemctl list-jobs --no-pager >&2 || true
		die "systemd did not finish booting (is-system-running: ${state:-timeout}); boot log and jobs above"
		;;
	esac
}

# shutdown_ns: power the namespace off (systemd as PID 1 ignores SIGTERM;
# SIGRTMIN+4 is poweroff) and wait for it; kill it if it hangs. Killing PID
# 1 of a PID namespace kills everything in it.
shutdown_ns() {
	[ -n "$UNSHARE_PID" ] || return 0
	if [ -n "$SYSTEMD_PID" ] && kill -0 "$SYSTEMD_PID" 2>/dev/null; then
		kill -s SIGRTMIN+4 "$SYSTEMD_PID" 2>/dev/null || true
	fi
	local i
	for i in $(seq 600); do
		kill -0 "$UNSHARE_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$UNSHARE_PID" 2>/dev/null; then
		log "namespace did not power off within 60s: killing its PID 1 ($SYSTEMD_PID)"
		[ -z "$SYSTEMD_PID" ] || kill -KILL "$SYSTEMD_PID" 2>/dev/null || true
		kill -KILL "$UNSHARE_PID" 2>/dev/null || true
	fi
	wait "$UNSHARE_PID" 2>/dev/null || true
	UNSHARE_PID=
	SYSTEMD_PID=
}

# diagnose: what a reader needs to see after a failure.
diagnose() {
	[ -n "$SYSTEMD_PID" ] && kill -0 "$SYSTEMD_PID" 2>/dev/null || return 0
	{
		echo "----- diagnostics (inside the booted system) -----"
		echo "## systemctl --failed"
		inside systemctl --failed --no-pager --no-legend || true
		echo "## systemctl status certbus.service"
		inside systemctl status --no-pager --lines=0 certbus.service 2>&1 || true
		local unit
		for unit in certbus.service dbus.service apache2.service; do
			echo "## journalctl -u $unit (last 25 lines)"
			inside journalctl --no-pager -q -u "$unit" -n 25 || true
		done
		echo "## /var/log/letsencrypt/letsencrypt.log (hooks and errors)"
		inside sh -c 'grep -E ":ERROR:|reported error code|ran with error output|Running .*-hook command" /var/log/letsencrypt/letsencrypt.log 2>/dev/null | tail -25' || true
		echo "--------------------------------------------------"
	} >&2
}

cleanup() {
	local rc=$?
	set +e
	# A signal's trap can run while a function call's redirection (inside
	# ... >log 2>&1) is in effect: report to the real stdout and stderr.
	exec 1>&7 2>&8
	phase_end
	if [ "$rc" -ne 0 ] || [ ${#FAILURES[@]} -gt 0 ]; then
		diagnose
	fi
	shutdown_ns
	if [ -n "$CACHE_TMP" ]; then
		rm -rf "$CACHE_TMP"
	fi
	if [ -n "$WORK" ]; then
		if [ -n "${CERTBUS_SYSTEM_TEST_KEEP:-}" ]; then
			log "kept $WORK"
		else
			rm -rf "$WORK"
		fi
	fi
	if [ ${#TIMINGS[@]} -gt 0 ]; then
		echo "system-test: phase timings:" >&2
		printf 'system-test:   %s\n' "${TIMINGS[@]}" >&2
	fi
	if [ ${#FAILURES[@]} -gt 0 ]; then
		echo "system-test: FAILED (${#FAILURES[@]}):" >&2
		printf 'system-test:   %s\n' "${FAILURES[@]}" >&2
		[ "$rc" -ne 0 ] || rc=1
	elif [ "$rc" -eq 0 ]; then
		echo "system-test: PASS" >&2
	fi
	case $rc in 130 | 143) echo "system-test: interrupted (everything it started is stopped)" >&2 ;; esac
	exit "$rc"
}
exec 7>&1 8>&2
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

WORK=$(mktemp -d /var/tmp/certbus-system-test.XXXXXX)

# --- the cached rootfs --------------------------------------------------------

host_mirror() {
	local url
	url=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\)[[:space:]]\+'"$SUITE"'[[:space:]].*/\2/p' |
		grep -v security | head -1 || true)
	if [ -z "$url" ]; then
		url=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
			awk '$1 == "URIs:" && $2 !~ /security/ && $2 ~ /debian\/?$/ { print $2; exit }' || true)
	fi
	echo "${url:-http://deb.debian.org/debian}"
}

# ensure_cache: $CACHE/debootstrap (the bare debootstrap) and $CACHE/rootfs
# (provisioned), each built in a temporary directory and renamed into place
# when complete. Under an exclusive lock; afterwards a shared one is held so
# no other run rebuilds the cache under this one.
ensure_cache() {
	mkdir -p "$CACHE/apt/debootstrap" "$CACHE/apt/archives/partial"
	exec 9>"$CACHE/lock"
	flock 9
	# Leftovers of runs that were killed (nobody else builds: we hold the lock).
	rm -rf "$CACHE"/*.tmp.*

	if [ -d "$CACHE/rootfs" ] && [ "$(cat "$CACHE/rootfs/etc/certbus-system-test.recipe" 2>/dev/null)" = "$RECIPE" ]; then
		log "using cached rootfs $CACHE/rootfs"
		flock -s 9
		return
	fi
	if [ -d "$CACHE/rootfs" ]; then
		log "cached rootfs was built by another recipe: rebuilding it"
		mv "$CACHE/rootfs" "$CACHE/rootfs.old.tmp.$$"
		rm -rf "$CACHE/rootfs.old.tmp.$$"
	fi

	if [ ! -d "$CACHE/debootstrap" ]; then
		local mirror
		mirror=${CERTBUS_SYSTEM_TEST_MIRROR:-$(host_mirror)}
		log "debootstrap $SUITE from $mirror (a few minutes; cached afterwards)"
		CACHE_TMP=$(mktemp -d "$CACHE/debootstrap.tmp.XXXXXX")
		debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus \
			--cache-dir="$CACHE/apt/debootstrap" "$SUITE" "$CACHE_TMP/root" "$mirror" \
			>"$WORK/debootstrap.log" 2>&1 ||
			{ tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
		mv "$CACHE_TMP/root" "$CACHE/debootstrap"
		rm -rf "$CACHE_TMP"
		CACHE_TMP=
	fi

	log "provisioning the rootfs (apt-get install apache2 certbot pebble inside)"
	CACHE_TMP=$(mktemp -d "$CACHE/rootfs.tmp.XXXXXX")
	local r=$CACHE_TMP/root
	cp -a "$CACHE/debootstrap" "$r"
	cp /etc/resolv.conf "$r/etc/resolv.conf"
	# No console here: getty jobs would wait for devices forever and the
	# system would stay "starting".
	local u
	for u in serial-getty@.service getty@.service console-getty.service systemd-update-utmp-runlevel.service; do
		ln -sf /dev/null "$r/etc/systemd/system/$u"
	done
	# Keep package installs from starting daemons: apache2 would bind port
	# 80 of the host's network.
	printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
	chmod 755 "$r/usr/sbin/policy-rc.d"

	boot dir "$r" "$CACHE/apt/archives"
	inside apt-get update -q >"$WORK/provision.log" 2>&1 ||
		{ tail -20 "$WORK/provision.log" >&2; die "apt-get update in the rootfs failed (log above)"; }
	inside apt-get install -y -q --no-install-recommends apache2 certbot pebble adduser >>"$WORK/provision.log" 2>&1 ||
		{ tail -30 "$WORK/provision.log" >&2; die "apt-get install apache2 certbot pebble in the rootfs failed (log above)"; }
	# Apache starts per run, on the run's ports, never on port 80; timers
	# must not run certbot or apt behind the test's back.
	inside systemctl disable -q apache2.service
	inside systemctl mask -q certbot.timer apt-daily.timer apt-daily-upgrade.timer
	shutdown_ns
	rm -f "$r/usr/sbin/policy-rc.d"
	# A volatile journal: each run's journal starts empty and nothing is
	# written to the overlay (nor, here, to the cache).
	mkdir -p "$r/etc/systemd/journald.conf.d"
	printf '[Journal]\nStorage=volatile\n' >"$r/etc/systemd/journald.conf.d/volatile.conf"
	rm -rf "$r/var/log/journal"
	echo "$RECIPE" >"$r/etc/certbus-system-test.recipe"
	mv "$r" "$CACHE/rootfs"
	rm -rf "$CACHE_TMP"
	CACHE_TMP=
	flock -s 9
}

# --- helpers for the checks ---------------------------------------------------

# free_port: a TCP port nothing on the host listens on (the rootfs shares
# the host's network) and that this run has not picked yet.
PICKED_PORTS=" "
free_port() {
	local p i
	for i in $(seq 200); do
		p=$((20000 + RANDOM % 40000))
		case $PICKED_PORTS in *" $p "*) continue ;; esac
		if ! (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			PICKED_PORTS="$PICKED_PORTS$p "
			echo "$p"
			return
		fi
	done
	die "found no free TCP port"
}

wait_port() { # port what
	local i
	for i in $(seq 100); do
		(: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	die "$2 does not listen on 127.0.0.1:$1"
}

# served_fp PORT NAME: SHA-256 fingerprint of the leaf certificate a TLS
# handshake from the host gets, with NAME as SNI.
served_fp() {
	openssl s_client -connect "127.0.0.1:$1" -servername "$2" </dev/null 2>/dev/null |
		openssl x509 -noout -fingerprint -sha256 2>/dev/null | cut -d= -f2
}

# live_fp NAME: fingerprint of certbot's current certificate for lineage NAME.
live_fp() {
	inside cat "/etc/letsencrypt/live/$1/cert.pem" | openssl x509 -noout -fingerprint -sha256 | cut -d= -f2
}

# unit_jobs UNIT JOBTYPE: how many JOBTYPE jobs of UNIT systemd completed
# since boot. PID 1 logs each finished job with UNIT=, JOB_TYPE= and
# JOB_RESULT= fields: that counts what systemd did, however it was asked and
# whatever the unit's ExecReload prints. Counted over the whole (volatile)
# journal and compared before and after, because journalctl 252 loses entries
# when --after-cursor is combined with several field matches.
unit_jobs() {
	inside journalctl -q --no-pager -o json UNIT="$1" | grep "\"JOB_TYPE\":\"$2\"" | grep -c '"JOB_RESULT":"done"' || true
}

# activations: how often the bus asked systemd to start certbus.service.
activations() {
	inside journalctl -q --no-pager -o cat -u dbus.service |
		grep -c "Activating via systemd: service name='org.certbus.Dispatcher1'" || true
}

# unit_log UNIT: the unit's last journal lines, for a failure message.
unit_log() {
	inside journalctl -q --no-pager -o cat -n 4 -u "$1" 2>&1 | sed 's/^/    /'
}

# not_implemented_hint TEXT: name the certbus command that is still a
# placeholder, if TEXT shows one.
not_implemented_hint() {
	local what
	what=$(grep -o '[a-z-]* is not implemented yet' <<<"$1" | sort -u | xargs) || true
	[ -z "$what" ] || echo " (certbus placeholder: $what)"
}

certbot_env=(REQUESTS_CA_BUNDLE="$TESTDIR/pebble/cert.pem")

# --- the test -----------------------------------------------------------------

phase cache "debootstrapped rootfs with apache2, certbot, pebble"
ensure_cache

if [ -z "$DEB" ]; then
	phase build "scripts/build-deb.sh"
	DEB=$("$REPO/scripts/build-deb.sh" "0.0.0~systemtest" "$WORK/deb" 2> >(sed 's/^/  /' >&2)) ||
		die "scripts/build-deb.sh failed (output above)"
fi
log "package: $DEB"

phase boot "systemd as PID 1 in namespaces, on an overlay of the cached rootfs"
boot overlay "$CACHE/rootfs" "$WORK"
ok "systemd $(inside systemctl --version | awk 'NR==1 {print $2}') is up"
# The host's resolver, in case apt needs the mirror (a new dependency).
inside sh -c 'cat >/etc/resolv.conf' </etc/resolv.conf

# ---- install
phase install "apt-get install ./certbus.deb; postinst; unit hardening"
inside sh -c 'cat >/root/certbus.deb' <"$DEB"
if inside apt-get install -y -q --no-install-recommends /root/certbus.deb >"$WORK/install.log" 2>&1; then
	ok "package installed"
else
	sed 's/^/  /' "$WORK/install.log" >&2
	die "apt-get install ./certbus.deb failed (output above)"
fi
grep -i 'certbus: warning' "$WORK/install.log" | sed 's/^/  postinst: /' >&2 || true

inside getent group certbus >/dev/null && ok "group certbus exists" || check_fail "postinst did not create the system group certbus"
mode=$(inside stat -c '%a %U:%G' /var/lib/certbus 2>/dev/null || true)
[ "$mode" = "700 root:root" ] && ok "/var/lib/certbus is 0700 root:root" ||
	check_fail "/var/lib/certbus is '${mode:-missing}', want '700 root:root'"
inside systemctl is-enabled -q certbus.service && ok "certbus.service enabled" ||
	check_fail "postinst did not enable certbus.service (is-enabled: $(inside systemctl is-enabled certbus.service 2>&1 || true))"
inside busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ListActivatableNames |
	grep -q '"org.certbus.Dispatcher1"' && ok "org.certbus.Dispatcher1 is activatable on the system bus" ||
	check_fail "the system bus does not list org.certbus.Dispatcher1 as activatable (activation file not loaded)"
if inside systemctl is-active -q certbus.service; then
	ok "certbus.service is active after install"
else
	check_fail "certbus.service is not active after install (postinst starts it): $(inside systemctl is-active certbus.service 2>&1 || true)$(not_implemented_hint "$(inside journalctl -q -u certbus.service 2>&1)"); its journal ends:
$(unit_log certbus.service)"
fi

out=$(inside systemd-analyze verify --man=no /lib/systemd/system/certbus.service 2>&1) &&
	ok "systemd-analyze verify accepts certbus.service" ||
	check_fail "systemd-analyze verify certbus.service: $out"
log "certbus.service: systemd-analyze security exposure $(inside systemd-analyze security --no-pager certbus.service 2>/dev/null | tail -1 | sed 's/.*: //')"

# The package's hook scripts are what `certbus install-hooks` writes, so
# running it later neither calls them foreign nor rewrites a conffile.
out=$(inside certbus install-hooks 2>&1) || true
if [ "$(grep -c ': unchanged$' <<<"$out")" -eq 3 ]; then
	ok "certbus install-hooks finds the packaged hooks unchanged"
else
	check_fail "certbus install-hooks does not find the three packaged hooks unchanged:
$(sed 's/^/    /' <<<"$out")"
fi

# The unit's hardening, tried without the daemon: a oneshot copy of the
# installed unit with the probe below as ExecStart does what the apps need.
inside useradd --system --no-create-home --shell /usr/sbin/nologin certbus-probe
inside mkdir -p /etc/certbus-probe
inside sh -c 'cat >/run/systemd/system/certbus-probe-target.service' <<'EOF'
[Service]
ExecStart=/bin/sleep infinity
ExecReload=/bin/true
User=certbus-probe
EOF
inside sh -c 'cat >/usr/local/sbin/certbus-probe' <<'EOF'
#!/bin/sh
# Runs under certbus.service's hardening.
set -eu
step() { echo "probe: $*"; }
step "write and rename a file in /etc (app destinations like /etc/ejabberd)"
printf 'x\n' >/etc/certbus-probe/.tmp && mv /etc/certbus-probe/.tmp /etc/certbus-probe/key.pem
step "chown and chmod it to another user (copy.owner, key_mode)"
chown certbus-probe:certbus-probe /etc/certbus-probe/key.pem && chmod 0640 /etc/certbus-probe/key.pem
step "write the state directory"
printf 'x\n' >/var/lib/certbus/.probe && rm /var/lib/certbus/.probe
step "read certbot's private keys"
[ ! -d /etc/letsencrypt/archive ] || find /etc/letsencrypt/archive -name 'privkey*.pem' -exec cat {} + >/dev/null
step "signal another user's process (signal-based reloads)"
kill -0 "$(systemctl show -p MainPID --value certbus-probe-target.service)"
step "switch to another user (reload commands such as ejabberdctl, pg_ctlcluster)"
runuser -u certbus-probe -- true
step "reload a unit through systemd over D-Bus"
busctl --system call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager \
	ReloadUnit ss certbus-probe-target.service replace
step "all done"
EOF
inside chmod 755 /usr/local/sbin/certbus-probe
inside sh -c 'sed -e "s/^Type=.*/Type=oneshot/" -e "/^BusName=/d" -e "/^Restart/d" -e "/^ExecReload=/d" \
	-e "s|^ExecStart=.*|ExecStart=/usr/local/sbin/certbus-probe|" -e "/^\[Install\]/,\$d" \
	/lib/systemd/system/certbus.service >/run/systemd/system/certbus-probe.service'
inside systemctl daemon-reload
inside systemctl start certbus-probe-target.service
if inside systemctl start certbus-probe.service; then
	ok "the unit's hardening allows everything the apps need"
else
	check_fail "certbus.service's hardening blocks something the apps need: $(inside journalctl -q -o cat -u certbus-probe.service | grep -v '^probe: all done' | tail -3 | xargs)"
fi
inside systemctl stop certbus-probe-target.service
inside sh -c 'rm -rf /etc/certbus-probe /run/systemd/system/certbus-probe*.service /usr/local/sbin/certbus-probe; systemctl daemon-reload'

# ---- issue
phase issue "pebble; certbot issues two certificates; Apache serves them"
PEBBLE_PORT=$(free_port)
PEBBLE_MGMT_PORT=$(free_port)
HTTPS_PORT=$(free_port)
log "ports: pebble $PEBBLE_PORT (management $PEBBLE_MGMT_PORT), apache $HTTPS_PORT"

# pebble's own TLS certificate, made here; certbot trusts it through
# REQUESTS_CA_BUNDLE.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=certbus-system-test-pebble -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
	-keyout "$WORK/pebble-key.pem" -out "$WORK/pebble-cert.pem" 2>/dev/null
inside mkdir -p "$TESTDIR/pebble"
inside sh -c "cat >$TESTDIR/pebble/cert.pem" <"$WORK/pebble-cert.pem"
inside sh -c "cat >$TESTDIR/pebble/key.pem" <"$WORK/pebble-key.pem"
inside sh -c "cat >$TESTDIR/pebble/pebble.json" <<EOF
{"pebble": {
  "listenAddress": "127.0.0.1:$PEBBLE_PORT",
  "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT_PORT",
  "certificate": "$TESTDIR/pebble/cert.pem",
  "privateKey": "$TESTDIR/pebble/key.pem",
  "httpPort": 80,
  "tlsPort": 443,
  "ocspResponderURL": "",
  "externalAccountBindingRequired": false
}}
EOF
# A transient unit: it dies with the namespace. No challenge is really
# validated (VA_ALWAYS_VALID), without pebble's random delay before
# validating, and no nonce is rejected at random.
inside systemd-run -q --unit=certbus-test-pebble \
	-E PEBBLE_VA_ALWAYS_VALID=1 -E PEBBLE_VA_NOSLEEP=1 -E PEBBLE_WFE_NONCEREJECT=0 -E PEBBLE_AUTHZREUSE=0 \
	/usr/bin/pebble -config "$TESTDIR/pebble/pebble.json"
wait_port "$PEBBLE_PORT" pebble
ok "pebble listens on 127.0.0.1:$PEBBLE_PORT"

for d in "${DOMAINS[@]}"; do
	# --manual with a no-op auth hook: pebble accepts every challenge.
	inside env "${certbot_env[@]}" certbot certonly --non-interactive --agree-tos \
		--register-unsafely-without-email --server "https://127.0.0.1:$PEBBLE_PORT/dir" \
		--manual --preferred-challenges http --manual-auth-hook /bin/true \
		--cert-name "$d" -d "$d" >"$WORK/certonly-$d.log" 2>&1 ||
		{ sed 's/^/  /' "$WORK/certonly-$d.log" >&2; die "certbot certonly -d $d failed (output above)"; }
	ok "certbot issued $d"
done

inside sh -c 'cat >/etc/apache2/ports.conf' <<EOF
# certbus system test: loopback only, a high port (the host's network).
Listen 127.0.0.1:$HTTPS_PORT https
EOF
for i in 0 1; do
	d=${DOMAINS[$i]}
	inside sh -c "cat >/etc/apache2/sites-available/$d.conf" <<EOF
<VirtualHost 127.0.0.1:$HTTPS_PORT>
	ServerName $d
	DocumentRoot /var/www/html
	SSLEngine on
	SSLCertificateFile /etc/letsencrypt/live/$d/fullchain.pem
	SSLCertificateKeyFile /etc/letsencrypt/live/$d/privkey.pem
</VirtualHost>
EOF
	inside a2ensite -q "$d"
done
inside a2dissite -q 000-default
inside a2enmod -q ssl
inside systemctl enable -q --now apache2.service ||
	die "apache2.service did not start: $(inside journalctl -q -o cat -u apache2.service | tail -5 | xargs)"
# Two name-based vhosts on one address, told apart by SNI, as on a real
# :443; that also lets certbus verify both on one endpoint.
wait_port "$HTTPS_PORT" apache2
declare -A OLD_FP
for d in "${DOMAINS[@]}"; do
	OLD_FP[$d]=$(live_fp "$d")
	got=$(served_fp "$HTTPS_PORT" "$d")
	[ -n "$got" ] && [ "$got" = "${OLD_FP[$d]}" ] || die "apache on 127.0.0.1:$HTTPS_PORT serves '${got:-nothing}' for $d, want certbot's ${OLD_FP[$d]}"
	ok "apache serves $d on 127.0.0.1:$HTTPS_PORT (SNI)"
done

# ---- renew
phase renew "certbot renew with certbus.service stopped: hooks, bus activation, one reload"
inside systemctl stop certbus.service
inside systemctl is-active -q certbus.service && die "certbus.service is still active after systemctl stop"
APACHE_PID=$(inside systemctl show -p MainPID --value apache2.service)
reloads0=$(unit_jobs apache2.service reload)
renew_since=$(inside date '+%Y-%m-%d %H:%M:%S')
restarts0=$(($(unit_jobs apache2.service restart) + $(unit_jobs apache2.service start)))
activations0=$(activations)
renew_rc=0
# -v: certbot names each hook it runs.
inside env "${certbot_env[@]}" certbot renew -v --force-renewal --no-random-sleep-on-renew \
	>"$WORK/renew.log" 2>&1 || renew_rc=$?
renew_out=$(cat "$WORK/renew.log")
[ "$renew_rc" -eq 0 ] || check_fail "certbot renew exited $renew_rc (output in the diagnostics)"
for kind in pre post deploy; do
	grep -q "Running $kind-hook command: /etc/letsencrypt/renewal-hooks/$kind/50-certbus" <<<"$renew_out" ||
		check_fail "certbot did not run the packaged $kind hook /etc/letsencrypt/renewal-hooks/$kind/50-certbus"
	inside grep -qx "\[ -x /usr/bin/certbus-hook \] && GOMAXPROCS=1 exec /usr/bin/certbus-hook $kind" "/etc/letsencrypt/renewal-hooks/$kind/50-certbus" ||
		check_fail "the packaged $kind hook does not run the lean /usr/bin/certbus-hook"
done
# certbot shows a hook's stderr even when it exits 0 (e.g. "spooled" warnings).
hook_errors=$(grep -A3 'reported error code\|ran with error output' <<<"$renew_out" || true)
if [ -n "$hook_errors" ]; then
	sed 's/^/  certbot: /' <<<"$hook_errors" >&2
	check_fail "the packaged hooks failed (certbot output above)$(not_implemented_hint "$hook_errors")"
else
	ok "certbot ran the packaged pre, deploy and post hooks without error"
fi
declare -A NEW_FP
for d in "${DOMAINS[@]}"; do
	NEW_FP[$d]=$(live_fp "$d")
	[ "${NEW_FP[$d]}" != "${OLD_FP[$d]}" ] || die "certbot did not renew $d (live certificate unchanged; output in the log above)"
done

if [ "$(activations)" -gt "$activations0" ]; then
	ok "the bus activated certbus.service: $(inside journalctl -q --no-pager -o cat -u dbus.service |
		grep "Activating via systemd: service name='org.certbus.Dispatcher1'" | tail -1)"
else
	check_fail "the system bus never activated org.certbus.Dispatcher1 (no 'Activating via systemd' in dbus.service's journal): the hooks did not call the daemon"
fi
if inside systemctl is-active -q certbus.service; then
	ok "certbus.service is active after the renewal"
else
	check_fail "certbus.service is not active after the renewal$(not_implemented_hint "$(inside journalctl -q -u certbus.service 2>&1)"); its journal ends:
$(unit_log certbus.service)"
fi

# One reload: wait for the first, then long enough for a second one (the
# daemon's debounce is 2s) to show up if there is one.
reloads=0
for i in $(seq 60); do
	reloads=$(($(unit_jobs apache2.service reload) - reloads0))
	[ "$reloads" -eq 0 ] || break
	sleep 0.5
done
if [ "$reloads" -gt 0 ]; then
	sleep "$SETTLE"
	reloads=$(($(unit_jobs apache2.service reload) - reloads0))
fi
restarts=$(($(unit_jobs apache2.service restart) + $(unit_jobs apache2.service start) - restarts0))
# The apache type reloads a second time when the new certificate is not
# served 100ms after the first (Apache's accept gap after a graceful, see
# apps/apache): allowed once, and only when the daemon says so.
repeats=$(inside journalctl -q --no-pager -o cat -u certbus.service --since "$renew_since" | grep -c "apps.apache new certificate not served yet: running the reload method once more" || true)
if [ "$reloads" -eq 1 ] && [ "$restarts" -eq 0 ]; then
	ok "apache2.service was reloaded exactly once"
elif [ "$reloads" -eq 2 ] && [ "$repeats" -eq 1 ] && [ "$restarts" -eq 0 ]; then
	ok "apache2.service was reloaded once, and once more for Apache's accept gap (logged by certbus)"
else
	check_fail "apache2.service: $reloads reloads ($repeats logged as the accept-gap repeat) and $restarts (re)starts after the renewal, want 1 reload (2 with one logged repeat) and no restart"
	inside journalctl -q --no-pager -n 20 -u apache2.service | sed 's/^/  /' >&2 || true
fi
pid_now=$(inside systemctl show -p MainPID --value apache2.service)
[ "$pid_now" = "$APACHE_PID" ] || check_fail "apache2's main PID changed ($APACHE_PID -> $pid_now): it was restarted, not reloaded"

for d in "${DOMAINS[@]}"; do
	got=
	for n in $(seq 20); do
		got=$(served_fp "$HTTPS_PORT" "$d")
		[ "$got" != "${NEW_FP[$d]}" ] && [ "$reloads" -gt 0 ] || break
		sleep 0.5
	done
	if [ "$got" = "${NEW_FP[$d]}" ]; then
		ok "apache serves the renewed certificate for $d"
	else
		check_fail "apache still serves ${got:-nothing} for $d, want the renewed ${NEW_FP[$d]} (was ${OLD_FP[$d]})"
	fi
done

spooled=$(inside sh -c 'ls -A /var/lib/certbus/spool 2>/dev/null' || true)
[ -z "$spooled" ] || check_fail "events were spooled instead of delivered: /var/lib/certbus/spool holds $(xargs <<<"$spooled")"
out=$(inside certbus status 2>&1) && rc=0 || rc=$?
if [ "$rc" -eq 0 ] && grep -q "${DOMAINS[0]}" <<<"$out" && grep -q "${DOMAINS[1]}" <<<"$out"; then
	ok "certbus status shows both domains"
else
	check_fail "certbus status (exit $rc) does not show both renewed domains:
$(sed 's/^/    /' <<<"$out")"
fi

# ---- upgrade
phase upgrade "reinstall: postinst restarts the daemon and runs certbus migrate"
# What an older setup left in the renewal configs: FreedomBox's per-domain
# dispatcher as certbot's --pre/--post/--deploy-hook for one lineage (the
# packaged hooks supersede it), a hook of the user's own for the other.
legacy=/usr/share/plinth/actions/letsencrypt
conf=/etc/letsencrypt/renewal/${DOMAINS[0]}.conf
userconf=/etc/letsencrypt/renewal/${DOMAINS[1]}.conf
inside sed -i "/^\[renewalparams\]/a pre_hook = $legacy run_pre_hooks --domain ${DOMAINS[0]}\\
post_hook = $legacy run_post_hooks --domain ${DOMAINS[0]}\\
renew_hook = $legacy run_renew_hooks --domain ${DOMAINS[0]} --modules apache" "$conf"
inside sed -i '/^\[renewalparams\]/a renew_hook = systemctl reload apache2' "$userconf"
[ "$(inside grep -c '^\(pre\|post\|renew\)_hook = ' "$conf")" -eq 3 ] && inside grep -q '^renew_hook = ' "$userconf" ||
	die "could not add the legacy hooks to $conf and $userconf"
before_pid=$(inside systemctl show -p MainPID --value certbus.service)
if inside apt-get install -y -q --reinstall /root/certbus.deb >"$WORK/reinstall.log" 2>&1; then
	ok "package reinstalled"
else
	sed 's/^/  /' "$WORK/reinstall.log" >&2
	check_fail "apt-get install --reinstall ./certbus.deb failed (output above)"
fi
migrate_warning=$(grep -A2 'certbus migrate. failed' "$WORK/reinstall.log" || true)
[ -z "$migrate_warning" ] || check_fail "postinst: certbus migrate failed$(not_implemented_hint "$(cat "$WORK/reinstall.log")")"
left=$(inside grep '^\(pre\|post\|renew\)_hook = ' "$conf" || true)
if [ -n "$left" ]; then
	check_fail "legacy hooks are still in $conf after postinst ran certbus migrate: $(xargs <<<"$left")"
else
	ok "postinst's certbus migrate removed the legacy dispatcher hooks"
fi
inside grep -q '^renew_hook = systemctl reload apache2$' "$userconf" && ok "the user's own renew_hook is kept" ||
	check_fail "certbus migrate removed the user's own renew_hook from $userconf"
for d in "${DOMAINS[@]}"; do
	inside env "${certbot_env[@]}" certbot certificates --cert-name "$d" 2>&1 | grep -q "Certificate Name: $d" ||
		check_fail "certbot cannot read /etc/letsencrypt/renewal/$d.conf after certbus migrate"
done
after_pid=$(inside systemctl show -p MainPID --value certbus.service)
if inside systemctl is-active -q certbus.service && [ "$after_pid" != "$before_pid" ]; then
	ok "postinst restarted certbus.service"
else
	check_fail "certbus.service was not restarted by the upgrade (MainPID $before_pid -> $after_pid, $(inside systemctl is-active certbus.service 2>&1 || true))"
fi

# ---- policy
phase policy "the installed bus policy: root and group certbus only"
# dbus-send, unlike busctl, prints the bus's own error message, which tells a
# refusal by the policy ("Rejected send message") from one by the daemon.
# The arguments do not matter: the policy is applied before the daemon (or
# its activation) sees anything.
as_nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
for method in org.certbus.Dispatcher1.Notify org.freedesktop.DBus.Introspectable.Introspect; do
	out=$(inside "${as_nobody[@]}" dbus-send --system --print-reply --dest=org.certbus.Dispatcher1 \
		/org/certbus/Dispatcher1 "$method" 2>&1) && rc=0 || rc=$?
	if [ "$rc" -ne 0 ] && grep -q 'AccessDenied: Rejected send message' <<<"$out"; then
		ok "user nobody calling ${method##*.} is rejected by the bus policy"
	else
		check_fail "user nobody calling ${method##*.} was not rejected by the bus policy (exit $rc): $out"
	fi
done
out=$(inside "${as_nobody[@]}" dbus-send --system --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
	org.freedesktop.DBus.RequestName string:org.certbus.Dispatcher1 uint32:4 2>&1) && rc=0 || rc=$?
if [ "$rc" -ne 0 ] && grep -q 'not allowed to own' <<<"$out"; then
	ok "nobody may not own org.certbus.Dispatcher1"
else
	check_fail "nobody was not refused ownership of org.certbus.Dispatcher1 (exit $rc): $out"
fi
# The bus looks a sender's groups up by its UID: a real member is needed.
inside useradd --system --no-create-home --shell /usr/sbin/nologin -G certbus certbus-member
out=$(inside setpriv --reuid=certbus-member --regid=certbus-member --init-groups \
	busctl --system introspect org.certbus.Dispatcher1 /org/certbus/Dispatcher1 2>&1) && rc=0 || rc=$?
if grep -q 'Rejected send message' <<<"$out"; then
	check_fail "a member of group certbus is rejected by the bus policy: $out"
elif [ "$rc" -ne 0 ]; then
	check_fail "a member of group certbus passed the bus policy, but introspecting the daemon failed: $out"
else
	ok "a member of group certbus gets through the bus policy (introspection works)"
fi

# ---- purge
phase purge "dpkg --purge certbus leaves nothing behind"
inside dpkg --purge certbus >"$WORK/purge.log" 2>&1 ||
	{ sed 's/^/  /' "$WORK/purge.log" >&2; die "dpkg --purge certbus failed (output above)"; }
ok "purged"
for p in /usr/bin/certbus /usr/bin/certbus-hook /lib/systemd/system/certbus.service \
	/usr/share/dbus-1/system.d/org.certbus.Dispatcher1.conf \
	/usr/share/dbus-1/system-services/org.certbus.Dispatcher1.service \
	/etc/letsencrypt/renewal-hooks/pre/50-certbus /etc/letsencrypt/renewal-hooks/post/50-certbus \
	/etc/letsencrypt/renewal-hooks/deploy/50-certbus /etc/certbus /var/lib/certbus; do
	inside test ! -e "$p" -a ! -L "$p" || check_fail "$p is still there after purge"
done
# Anything else named after certbus, except what this test made itself.
left=$(inside find / -xdev -name '*certbus*' \
	-not -name '*certbus.test*' -not -path "$TESTDIR*" -not -path /root/certbus.deb 2>/dev/null || true)
[ -z "$left" ] || check_fail "left behind after purge: $(xargs <<<"$left")"
state=$(inside systemctl show -p LoadState --value certbus.service)
[ "$state" = not-found ] || check_fail "systemd still knows certbus.service after purge (LoadState=$state)"
inside busctl --system call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ListActivatableNames |
	grep -q '"org.certbus.Dispatcher1"' && check_fail "the system bus still lists org.certbus.Dispatcher1 as activatable after purge"
inside sh -c 'grep -lx certbus /proc/[0-9]*/comm' >/dev/null 2>&1 && check_fail "a certbus process still runs after purge"
inside getent group certbus >/dev/null || check_fail "purge removed the certbus group (it is kept on purpose)"
[ ${#FAILURES[@]} -gt 0 ] || ok "no unit, policy, activation file, hook, config or state left"

[ ${#FAILURES[@]} -eq 0 ] || diagnose
phase shutdown "power off the namespace"
shutdown_ns
phase_end
