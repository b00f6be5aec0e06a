#!/bin/sh
# demo.sh BINARY: the whole certbus pipeline in a sandbox, in well under a
# minute. `make demo` builds BINARY, installs the tools (scripts/deps.sh demo)
# and runs this.
#
#   certbot renew -> renewal-hooks/{pre,deploy,post}/50-certbus -> certbus hook
#     -> D-Bus Notify -> certbus serve -> apps: copy the files, reload once
#
# Everything is private: a dbus-daemon configured like Debian's system bus that
# includes the shipped policy (packaging/dbus/org.certbus.Dispatcher1.conf),
# pebble (a test ACME server that accepts every challenge) with a TLS
# certificate made here with openssl, certbot with its own config, work and
# logs directories, and certbus serve with two `service` apps whose reload
# command is a script that logs each call. Nothing outside the sandbox is
# written; the processes started here are stopped by PID and the sandbox is
# removed on exit (CERTBUS_DEMO_KEEP=1 keeps it to look around).
#
# Runs as root: certbus sets owners on the files it installs and refuses
# destinations under world-writable directories such as /tmp, so the sandbox
# is a root-owned directory in /run.
#
# Exit status 0 when every check passed; 1 with a message naming the step and
# the check that failed (and the end of the log that explains it).
#
# POSIX sh: the Makefile runs it as `sh scripts/demo.sh bin/certbus`.
set -eu

usage() {
	echo "usage: $0 CERTBUS-BINARY   (or: make demo)" >&2
	exit 2
}
[ $# -eq 1 ] || usage

# ---------------------------------------------------------------- helpers

nphases=8
phase_no=0
phase_open="" # set while a phase line waits for its time
t_start=$(date +%s.%N)

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2fs", b - a }'; }

# phase TITLE: start a numbered, timed step.
phase() {
	phase_no=$((phase_no + 1))
	phase_title=$1
	printf '[%d/%d] %-66s ' "$phase_no" "$nphases" "$1"
	phase_open=1
	t_phase=$(now)
}
# phase_done: print the step's time, ending its line.
phase_done() {
	printf '%6s\n' "$(since "$t_phase")"
	phase_open=""
}
# detail TEXT...: an indented line under a step.
detail() { printf '      %s\n' "$*"; }

# die MESSAGE [LOGFILE [LINES]]: stop with a message naming the failed step,
# and the end of LOGFILE when given.
die() {
	[ -z "$phase_open" ] || printf 'FAILED\n'
	phase_open=""
	{
		echo
		if [ "$phase_no" -gt 0 ]; then
			echo "certbus demo: FAILED at step $phase_no ($phase_title):"
		else
			echo "certbus demo: FAILED:"
		fi
		printf '  %s\n' "$1"
		if [ $# -ge 2 ] && [ -s "$2" ]; then
			echo "  --- last lines of $2:"
			tail -n "${3:-25}" "$2" | cut -c1-400 | sed 's/^/  | /'
		fi
	} >&2
	exit 1
}

# short PATH: the path relative to the sandbox, for compact output.
short() { printf '%s\n' "$1" | sed "s|^$sb/||"; }

# fingerprint FILE: SHA-256 fingerprint of the first certificate in FILE.
fingerprint() {
	openssl x509 -noout -fingerprint -sha256 -in "$1" 2>/dev/null | sed 's/^.*=//'
}
# fp_short FINGERPRINT: its first 8 bytes, enough to tell certificates apart.
fp_short() { printf '%s\n' "$1" | cut -c1-23; }

# Processes started here, "name:pid" in start order; stopped in reverse.
procs=""
sb=""

# alive PID: the process exists and is not a zombie waiting to be reaped.
alive() {
	[ -r "/proc/$1/stat" ] || return 1
	state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
	[ -n "$state" ] && [ "$state" != Z ]
}

# stop PID: SIGTERM, up to 10s for a clean exit, then SIGKILL; reap it.
stop() {
	kill -TERM "$1" 2>/dev/null || return 0
	i=0
	while alive "$1" && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if alive "$1"; then
		echo "certbus demo: pid $1 ignored SIGTERM for 10s; killing it" >&2
		kill -KILL "$1" 2>/dev/null || true
	fi
	wait "$1" 2>/dev/null || true
}

cleanup() {
	rc=$?
	trap - EXIT INT TERM HUP
	[ -z "$phase_open" ] || printf 'interrupted\n'
	rev=""
	for p in $procs; do rev="$p $rev"; done
	for p in $rev; do stop "${p#*:}"; done
	if [ -n "$sb" ] && [ -d "$sb" ]; then
		if [ -n "${CERTBUS_DEMO_KEEP:-}" ]; then
			echo "certbus demo: sandbox kept: $sb (remove it with: rm -rf $sb)"
		else
			rm -rf "$sb"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# started NAME PID: remember a background process to stop at exit.
started() { procs="$procs $1:$2"; }

# wait_until SECONDS PID LOG WHAT COMMAND...: poll COMMAND every 50ms until
# it succeeds; fail if PID exits first or time runs out.
wait_until() {
	limit=$1 pid=$2 log=$3 what=$4
	shift 4
	deadline=$(awk -v n="$(now)" -v s="$limit" 'BEGIN { printf "%d", n + s }')
	until "$@" >/dev/null 2>&1; do
		alive "$pid" || die "$what: the process exited" "$log"
		[ "$(date +%s)" -lt "$deadline" ] || die "$what: not ready after ${limit}s" "$log"
		sleep 0.05
	done
}

# ---------------------------------------------------------------- checks

bin=$1
case $bin in
/*) ;;
*) bin=$(pwd)/$bin ;;
esac
[ -x "$bin" ] || die "$bin is not an executable: build it first (make build), or run make demo"
repo=$(cd "$(dirname "$0")/.." && pwd)
policy=$repo/packaging/dbus/org.certbus.Dispatcher1.conf
[ -f "$policy" ] || die "the shipped bus policy $policy is missing"
[ "$(id -u)" = 0 ] || die "run as root (sudo make demo): certbus sets owners on the files it installs, and the sandbox lives in /run"
for tool in dbus-daemon gdbus certbot pebble openssl /usr/bin/python3 timeout awk cmp stat; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found: install the demo's tools with: sh scripts/deps.sh demo"
done
# The hooks must find this demo's bus and config, not the environment's.
unset CERTBUS_BUS CERTBUS_CONFIG
# certbot and the readiness check talk to pebble on loopback: never via a proxy.
no_proxy=127.0.0.1,localhost${no_proxy:+,$no_proxy}
NO_PROXY=$no_proxy
export no_proxy NO_PROXY

sb=$(mktemp -d /run/certbus-demo.XXXXXX) || die "cannot create a directory in /run"
mkdir -p "$sb/bus" "$sb/pebble" "$sb/letsencrypt" "$sb/certbot/work" "$sb/certbot/logs" \
	"$sb/certbot/xdg" "$sb/certbus/state" "$sb/certbus/apps.d"
install -d -m 0755 "$sb/srv"
# Other users may reach the bus socket, so that the policy check below is the
# bus's own answer and not a permission error on the directory.
chmod 0755 "$sb" "$sb/bus"
# certbot runs the hook scripts and certbus the reload scripts from here.
printf '#!/bin/sh\nexit 0\n' >"$sb/exec-test"
chmod 0755 "$sb/exec-test"
"$sb/exec-test" 2>/dev/null ||
	die "cannot run programs from $sb (is /run mounted noexec?): the demo's hook and reload scripts live there"
rm -f "$sb/exec-test"
le=$sb/letsencrypt
cfg=$sb/certbus/certbus.yaml
serve_log=$sb/certbus/serve.log
reloads=$sb/certbus/reloads.log

echo "certbus demo: certbot -> hooks -> D-Bus -> certbus serve -> apps, in a sandbox"
echo "      binary   $bin: $("$bin" version 2>/dev/null | head -n 1)"
echo "      sandbox  $sb (removed at exit; CERTBUS_DEMO_KEEP=1 keeps it)"
echo

# ---------------------------------------------------------------- 1. bus

phase "private system-like bus (dbus-daemon + the shipped policy)"
# Debian's system.conf default policy: anyone may connect, nobody owns names
# or calls methods unless a policy file allows it; then the shipped file.
policy_xml=$(printf '%s' "$policy" | sed 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g')
cat >"$sb/bus/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$sb/bus/socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
  </policy>
  <include>$policy_xml</include>
</busconfig>
EOF
dbus-daemon --config-file="$sb/bus/bus.conf" --nofork --nosyslog --print-address=1 \
	>"$sb/bus/address" 2>"$sb/bus/dbus-daemon.log" &
started dbus-daemon $!
wait_until 10 $! "$sb/bus/dbus-daemon.log" "dbus-daemon" test -s "$sb/bus/address"
addr=$(head -n 1 "$sb/bus/address")
phase_done
detail "$addr"
# A <policy group="certbus"> naming a group this host lacks is dropped with a
# warning (the package's postinst creates the group); root needs none.
for g in $(sed -n 's/.*Unknown group "\([^"]*\)" in message bus configuration.*/\1/p' "$sb/bus/dbus-daemon.log" | sort -u); do
	detail "(no group $g on this host: the policy's rule for it is inert; the demo calls as root)"
done

# ---------------------------------------------------------------- 2. pebble

phase "pebble ACME server, TLS certificate made with openssl"
p=$sb/pebble
ssl() { openssl "$@" >>"$p/openssl.log" 2>&1 || die "openssl $1 failed" "$p/openssl.log"; }
ssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-subj "/CN=certbus demo CA for pebble" -keyout "$p/ca.key" -out "$p/ca.pem" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
ssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	-subj "/CN=localhost" -keyout "$p/key.pem" -out "$p/req.csr"
printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=critical,CA:FALSE" \
	"keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
	"subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" >"$p/ext.cnf"
ssl x509 -req -in "$p/req.csr" -CA "$p/ca.pem" -CAkey "$p/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
	-days 2 -extfile "$p/ext.cnf" -out "$p/cert.pem"
# Four free loopback ports: the ACME API, pebble's management API, and the
# challenge ports it never uses (every challenge is valid without a look).
ports=$(/usr/bin/python3 -c '
import socket
s = [socket.socket() for _ in range(4)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))') || die "could not find free loopback ports"
set -- $ports
cat >"$p/pebble.json" <<EOF
{"pebble": {
  "listenAddress": "127.0.0.1:$1",
  "managementListenAddress": "127.0.0.1:$2",
  "certificate": "$p/cert.pem",
  "privateKey": "$p/key.pem",
  "httpPort": $3,
  "tlsPort": $4,
  "ocspResponderURL": "",
  "externalAccountBindingRequired": false
}}
EOF
acme_url=https://127.0.0.1:$1/dir
# Fast and deterministic: no validation (nor the sleep before it), no
# deliberately rejected nonces, valid authorizations reused.
(cd "$p" && PEBBLE_VA_ALWAYS_VALID=1 PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=100 \
	exec pebble -config "$p/pebble.json" >"$p/pebble.log" 2>&1) &
started pebble $!
pebble_pid=$!
# Ready when its directory answers over TLS verified with our CA, the way
# certbot will see it (REQUESTS_CA_BUNDLE).
/usr/bin/python3 - "$acme_url" "$p/ca.pem" "$pebble_pid" >"$p/ready.log" 2>&1 <<'EOF' ||
import os, ssl, sys, time, urllib.error, urllib.request
url, ca, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
    urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca)))
deadline = time.monotonic() + 15
while True:
    try:
        with opener.open(url, timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except urllib.error.URLError as e:
        if isinstance(e.reason, ssl.SSLError):
            sys.exit("pebble answers, but its TLS certificate does not verify: %s" % e.reason)
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("pebble exited")
    if time.monotonic() > deadline:
        sys.exit("pebble's directory %s did not answer within 15s" % url)
    time.sleep(0.05)
EOF
	die "$(tail -n 1 "$p/ready.log")" "$p/pebble.log"
phase_done
detail "$acme_url"

# ---------------------------------------------------------------- 3. serve

# The daemon starts before certbot issues anything. Started later, it would
# find lineages its apps never received and catch up on them at once (DESIGN
# section 7: one more install and reload, correct but not this demo's story).
# A first issuance runs no renewal hooks, so the apps first hear of the
# certificates when certbot renews them.
phase "certbus serve: app web-one (one.demo.test), app proxy-all (*)"
# The apps' "daemons": a reload is a line in reloads.log naming the app, the
# operation and event that triggered it, and the domains it reloaded for.
cat >"$sb/certbus/reload" <<EOF
#!/bin/sh
echo "\$1 \$CERTBUS_OPERATION \$CERTBUS_EVENT_ID \$CERTBUS_DOMAINS" >>$reloads
EOF
chmod 0755 "$sb/certbus/reload"
: >"$reloads"
cat >"$cfg" <<EOF
# certbus demo configuration (DESIGN section 6)
letsencrypt_dir: $le
state_dir: $sb/certbus/state
apps_dir: $sb/certbus/apps.d
reload: {debounce: 500ms, timeout: 10s}
apps:
  - name: web-one
    type: service
    domains: [one.demo.test]
    copy:
      certificate: $sb/srv/web-one/{domain}/fullchain.pem
      private_key: $sb/srv/web-one/{domain}/privkey.pem
    reload: {command: ["$sb/certbus/reload", "web-one"]}
  - name: proxy-all
    type: service
    domains: ["*"]
    copy:
      certificate: $sb/srv/proxy-all/{domain}/fullchain.pem
      private_key: $sb/srv/proxy-all/{domain}/privkey.pem
    reload: {command: ["$sb/certbus/reload", "proxy-all"]}
EOF
"$bin" serve --bus "$addr" --config "$cfg" >"$serve_log" 2>&1 &
started certbus-serve $!
serve_pid=$!
has_owner() {
	gdbus call --address "$addr" --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
		--method org.freedesktop.DBus.NameHasOwner org.certbus.Dispatcher1 | grep -q true
}
wait_until 10 "$serve_pid" "$serve_log" "certbus serve owning org.certbus.Dispatcher1" has_owner
# The shipped policy is in force: an unprivileged caller (nobody, in no
# group) is refused by the bus before the daemon sees the call.
policy_note=""
if command -v setpriv >/dev/null 2>&1; then
	if setpriv --reuid=65534 --regid=65534 --clear-groups -- gdbus call --address "$addr" \
		--dest org.certbus.Dispatcher1 --object-path /org/certbus/Dispatcher1 \
		--method org.certbus.Dispatcher1.Notify pre '{}' >"$sb/certbus/nobody.out" 2>&1; then
		die "uid 65534 (nobody) could call Notify: the shipped bus policy is not in force" "$sb/certbus/nobody.out"
	fi
	# dbus-daemon's refusal reads "AccessDenied: Rejected send message";
	# the daemon's own check (the second lock) says "not allowed".
	grep -q 'AccessDenied: Rejected send message' "$sb/certbus/nobody.out" ||
		die "uid 65534 (nobody) calling Notify was not refused by the bus policy" "$sb/certbus/nobody.out"
	policy_note="nobody (uid 65534) calling Notify: AccessDenied, rejected by the bus policy"
fi
phase_done
detail "pid $serve_pid owns org.certbus.Dispatcher1; config $(short "$cfg")"
[ -z "$policy_note" ] || detail "$policy_note"

# ---------------------------------------------------------------- 4. issue

# run_certbot OUTPUT ARGS...: certbot with the sandbox's directories against
# pebble. It still reads /etc/letsencrypt/cli.ini (no flag turns that off):
# Debian's sets max-log-backups = 0, overridden here (one log per run).
run_certbot() {
	out=$1
	shift
	REQUESTS_CA_BUNDLE=$p/ca.pem XDG_CONFIG_HOME=$sb/certbot/xdg timeout --foreground 120 \
		certbot --config-dir "$le" --work-dir "$sb/certbot/work" --logs-dir "$sb/certbot/logs" \
		--server "$acme_url" --non-interactive --agree-tos --register-unsafely-without-email \
		--max-log-backups 1000 "$@" >"$out" 2>&1
}

one="one.demo.test"
two="two.demo.test www.two.demo.test"
if [ -r /etc/letsencrypt/cli.ini ]; then
	extra=$(grep -Ev '^[[:space:]]*([#;]|$)|^[[:space:]]*(max-log-backups|preconfigured-renewal)[[:space:]]*=' \
		/etc/letsencrypt/cli.ini || true)
	[ -z "$extra" ] || detail "note: /etc/letsencrypt/cli.ini applies to these runs too: $(echo "$extra" | tr '\n' ' ')"
fi
phase "certbot certonly: $one; $two"
for names in "$one" "$two"; do
	lineage=${names%% *}
	set --
	for d in $names; do set -- "$@" -d "$d"; done
	# The manual authenticator with `true` as its hook: pebble validates
	# nothing, and no port is bound. Saved in the renewal config for renew.
	run_certbot "$sb/certbot/certonly-$lineage.out" certonly --cert-name "$lineage" \
		--manual --preferred-challenges http-01 --manual-auth-hook /bin/true "$@" ||
		die "certbot certonly $lineage failed" "$sb/certbot/certonly-$lineage.out"
	[ -f "$le/live/$lineage/cert.pem" ] || die "certbot made no lineage $le/live/$lineage" "$sb/certbot/logs/letsencrypt.log"
done
old_fp_one=$(fingerprint "$le/live/one.demo.test/cert.pem")
old_fp_two=$(fingerprint "$le/live/two.demo.test/cert.pem")
phase_done
detail "live/one.demo.test  $(fp_short "$old_fp_one")...  (SHA-256 of the leaf)"
detail "live/two.demo.test  $(fp_short "$old_fp_two")..."

# ---------------------------------------------------------------- 5. hooks

phase "certbus install-hooks --letsencrypt-dir <certbot's config dir>"
"$bin" install-hooks --letsencrypt-dir "$le" >"$sb/certbus/install-hooks.out" 2>&1 ||
	die "certbus install-hooks failed" "$sb/certbus/install-hooks.out"
for kind in pre deploy post; do
	[ -x "$le/renewal-hooks/$kind/50-certbus" ] ||
		die "install-hooks wrote no executable renewal-hooks/$kind/50-certbus" "$sb/certbus/install-hooks.out"
done
phase_done
while IFS= read -r line; do detail "$(short "$line")"; done <"$sb/certbus/install-hooks.out"

# ---------------------------------------------------------------- 6. renew

phase "certbot renew --force-renewal (CERTBUS_BUS, CERTBUS_CONFIG set)"
lines_before=$(wc -l <"$reloads")
serve_before=$(wc -l <"$serve_log")
(
	export CERTBUS_BUS="$addr" CERTBUS_CONFIG="$cfg"
	run_certbot "$sb/certbot/renew.out" renew --force-renewal --no-random-sleep-on-renew
) || die "certbot renew failed" "$sb/certbot/renew.out"
celog=$sb/certbot/logs/letsencrypt.log
phase_done

# certbot's log records, one per line: "Running deploy-hook command: X" and
# "Hook 'deploy-hook' ran with output:\n <lines>" (or with error output, or
# "reported error code N").
awk '
	/^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9:,]+:[A-Z]+:[^:]*:/ {
		if (rec != "") print rec
		rec = $0; sub(/^[^:]*:[^:]*:[^:]*:[A-Z]+:[^:]*:/, "", rec); next
	}
	{ gsub(/^[ \t]+/, ""); rec = rec " " $0 }
	END { if (rec != "") print rec }
' "$celog" | grep -E "(pre|deploy|post)-hook" >"$sb/certbot/hooks.log" || true
if grep -Eq "reported error code|ran with error output" "$sb/certbot/hooks.log"; then
	die "a certbus hook failed or warned (certbot only logs that; a spooled event means the hook did not reach the daemon)" \
		"$sb/certbot/hooks.log"
fi
n_pre=$(grep -c "^Running pre-hook command" "$sb/certbot/hooks.log" || true)
n_deploy=$(grep -c "^Running deploy-hook command" "$sb/certbot/hooks.log" || true)
n_post=$(grep -c "^Running post-hook command" "$sb/certbot/hooks.log" || true)
[ "$n_pre/$n_deploy/$n_post" = 1/2/1 ] ||
	die "certbot ran $n_pre pre, $n_deploy deploy and $n_post post hooks; want 1, 2 and 1" "$sb/certbot/hooks.log"
post_id=$(sed -n "s/^.*Hook 'post-hook' ran with output: certbus: post event \([^ ]*\) delivered.*$/\1/p" \
	"$sb/certbot/hooks.log" | tail -n 1)
[ -n "$post_id" ] || die "the post hook did not report a delivered event" "$sb/certbot/hooks.log"

# ---------------------------------------------------------------- 7. wait

phase "Wait($post_id) over D-Bus: the apps' results"
gdbus call --address "$addr" --dest org.certbus.Dispatcher1 --object-path /org/certbus/Dispatcher1 \
	--method org.certbus.Dispatcher1.Wait "$post_id" 20000 >"$sb/certbus/wait.out" 2>&1 ||
	die "Wait for the post event failed" "$sb/certbus/wait.out"
# A buggy extra reload (say, a deploy not coalesced into the post) would land
# within the debounce of 500ms: give it the chance to show.
sleep 0.7
phase_done
# ([('web-one', 'ok', 'reloaded ...'), ...],): GVariant text, which reads as
# a Python literal -> "app status message" per line.
/usr/bin/python3 -c '
import ast, sys
for app, status, msg in ast.literal_eval(sys.stdin.read())[0]:
    print("%-10s %-8s %s" % (app, status, msg.replace(sys.argv[1] + "/", "")))
' "$sb" <"$sb/certbus/wait.out" >"$sb/certbus/wait.txt" 2>&1 ||
	die "cannot read Wait's answer: $(cat "$sb/certbus/wait.out")" "$sb/certbus/wait.txt"
for app in web-one proxy-all; do
	st=$(awk -v a="$app" '$1 == a { print $2 }' "$sb/certbus/wait.txt")
	[ "$st" = ok ] || die "app $app's result for the post event is \"$st\", want ok: $(cat "$sb/certbus/wait.out")" "$serve_log"
done
while IFS= read -r line; do detail "$line"; done <"$sb/certbus/wait.txt"

# ---------------------------------------------------------------- 8. check

phase "check: files, fingerprints, modes, reloads"
new_fp_one=$(fingerprint "$le/live/one.demo.test/cert.pem")
new_fp_two=$(fingerprint "$le/live/two.demo.test/cert.pem")
[ "$new_fp_one" != "$old_fp_one" ] || die "certbot renew did not replace live/one.demo.test's certificate" "$celog"
[ "$new_fp_two" != "$old_fp_two" ] || die "certbot renew did not replace live/two.demo.test's certificate" "$celog"
: >"$sb/files.txt"
# check_copy APP DOMAIN LINEAGE: the app's copy is byte-identical to the
# renewed lineage, with the right modes and owner.
check_copy() {
	dir=$sb/srv/$1/$2
	live=$le/live/$3
	for f in fullchain privkey; do
		[ -f "$dir/$f.pem" ] || die "app $1 did not install $(short "$dir")/$f.pem" "$serve_log"
		cmp -s "$dir/$f.pem" "$live/$f.pem" ||
			die "$(short "$dir")/$f.pem differs from the renewed $(short "$live")/$f.pem" "$serve_log"
	done
	fp=$(fingerprint "$dir/fullchain.pem")
	[ "$fp" = "$(fingerprint "$live/cert.pem")" ] || die "$(short "$dir")/fullchain.pem's leaf is not the renewed one"
	modes=$(stat -c '%a %U' "$dir/fullchain.pem")/$(stat -c '%a %U' "$dir/privkey.pem")
	[ "$modes" = "644 root/600 root" ] ||
		die "$(short "$dir"): modes and owners fullchain/privkey are $modes, want 644 root/600 root"
	printf '%-10s %-18s %-27s %-20s %s\n' "$1" "$2" "$(fp_short "$fp")..." "live/$3" "644/600 root" >>"$sb/files.txt"
}
check_copy web-one one.demo.test one.demo.test
check_copy proxy-all one.demo.test one.demo.test
check_copy proxy-all two.demo.test two.demo.test
check_copy proxy-all www.two.demo.test two.demo.test
for d in two.demo.test www.two.demo.test; do
	[ ! -e "$sb/srv/web-one/$d" ] || die "app web-one (one.demo.test only) installed files for $d"
done
tail -n +"$((lines_before + 1))" "$reloads" >"$sb/certbus/reloads.run"
for app in web-one proxy-all; do
	n=$(awk -v a="$app" '$1 == a' "$sb/certbus/reloads.run" | wc -l)
	[ "$n" -eq 1 ] || die "app $app reloaded $n times for one certbot run, want exactly 1" "$sb/certbus/reloads.run"
done
phase_done

# ---------------------------------------------------------------- report

echo
echo "what certbot's hooks said ($(short "$celog")):"
sed -n "s/^.*Hook '\([a-z]*-hook\)' ran with output: \(.*\)$/\1 \2/p" "$sb/certbot/hooks.log" |
	while read -r kind text; do printf '  %-12s %s\n' "$kind" "$text"; done
echo
echo "what certbus serve did ($(short "$serve_log")):"
# zap's console lines "TIME LEVEL [LOGGER] MESSAGE {JSON fields}", shortened.
tail -n +"$((serve_before + 1))" "$serve_log" | /usr/bin/python3 -c '
import json, sys
for line in sys.stdin:
    parts = line.rstrip("\n").split(" ", 2)
    if len(parts) < 3:
        print("  " + line.rstrip("\n")[:150]); continue
    text, brace, js = parts[2].partition(" {")
    try:
        fields = json.loads("{" + js) if brace else {}
    except ValueError:
        fields, text = {}, parts[2]
    kv = []
    for k, v in fields.items():
        if (k == "replay" and v is False) or (k != "domains" and v == []):
            continue
        if isinstance(v, list):
            v = " ".join(map(str, v)) or "-"
        v = str(v).replace(sys.argv[1] + "/", "")
        kv.append("%s=%s" % (k, ("\"%s\"" % v) if " " in v else v))
    out = "  %-5s %-24s %s" % (parts[1], text, " ".join(kv))
    print(out if len(out) <= 150 else out[:147] + "...")
' "$sb"
echo
echo "installed copies: byte-identical to the renewed lineage (fingerprint: SHA-256 of the leaf):"
printf '  %-10s %-18s %-27s %-20s %s\n' APP DOMAIN FINGERPRINT LINEAGE "MODES (cert/key)"
while IFS= read -r line; do printf '  %s\n' "$line"; done <"$sb/files.txt"
printf '  %-10s %-18s %s\n' web-one "two.demo.test" "nothing installed: not one of its domains (nor www.two.demo.test)"
echo
echo "reloads in this certbot run ($(short "$reloads"), written by each app's reload command):"
printf '  %-10s %-8s %-10s %-27s %s\n' APP RELOADS OPERATION EVENT DOMAINS
for app in web-one proxy-all; do
	awk -v a="$app" '$1 == a { op = $2; ev = $3; $1 = $2 = $3 = ""; sub(/^ +/, ""); d = $0; n++ }
		END { printf "  %-10s %-8s %-10s %-27s %s\n", a, n, op, ev, d }' "$sb/certbus/reloads.run"
done
echo
echo "certbus status --config $(short "$cfg"):"
"$bin" status --config "$cfg" >"$sb/certbus/status.out" 2>&1 ||
	die "certbus status failed" "$sb/certbus/status.out"
sed 's/^/  /; s/^  $//' "$sb/certbus/status.out"
echo
echo "certbus demo: OK: 2 lineages renewed, 4 copies installed and checked, each app reloaded exactly once ($(since "$t_start") in all)"
