#!/bin/sh
# build-deb.sh VERSION OUTDIR: build the certbus Debian package with dpkg-deb.
#
# Builds the binary, generates man pages and shell completions by running it,
# lays out the FHS tree from packaging/, writes DEBIAN/ and builds
# OUTDIR/certbus_<debian-version>_<arch>.deb. The path of the .deb is the only
# thing printed on stdout; progress and warnings go to stderr.
#
# Environment: GOOS/GOARCH as for go build (only linux; another GOARCH
# cross-builds and runs a host binary for the generated files),
# SOURCE_DATE_EPOCH (default: the last commit's time, for reproducible
# archives), CERTBUS_DEB_MAINTAINER (the Maintainer field).
#
# POSIX sh: the Makefile runs it as `sh scripts/build-deb.sh`.
set -eu

usage() {
	echo "usage: $0 VERSION OUTDIR   (e.g. $0 0.1.0 dist)" >&2
	exit 2
}
[ $# -eq 2 ] || usage
version=$1
outdir=$2
[ -n "$version" ] || usage

log() { echo "build-deb: $*" >&2; }
die() {
	echo "build-deb: error: $*" >&2
	exit 1
}

for tool in go dpkg-deb gzip install md5sum; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found: install it (dpkg-deb is in package dpkg, go from go.dev)"
done

repo=$(cd "$(dirname "$0")/.." && pwd)
pkgsrc=$repo/packaging

# Debian versions start with a digit and use no '-' (a native package has no
# revision): v1.2.3 -> 1.2.3, 1.2.3-4-gabc -> 1.2.3+4+gabc. A bare commit
# (`git describe --always` without tags: 8841803, 8841803-dirty) sorts
# before any release: 0~git8841803+dirty.
if printf '%s\n' "$version" | grep -Eq '^[0-9a-f]{7,40}(-dirty)?$'; then
	version_base=git$version
else
	version_base=${version#v}
fi
debversion=$(printf '%s' "$version_base" | tr -- '-' '+' | tr -c 'A-Za-z0-9.+~' '.')
case $debversion in
[0-9]*) ;;
*) debversion=0~$debversion ;;
esac

goos=${GOOS:-$(go env GOOS)}
goarch=${GOARCH:-$(go env GOARCH)}
[ "$goos" = linux ] || die "GOOS=$goos: a Debian package needs GOOS=linux"
case $goarch in
amd64 | arm64 | s390x | riscv64 | loong64 | mips64le) debarch=$goarch ;;
386) debarch=i386 ;;
arm) debarch=armhf ;;
ppc64le) debarch=ppc64el ;;
*) die "GOARCH=$goarch has no Debian architecture name here: add it to $0" ;;
esac

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/certbus-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

log "building certbus $version ($goos/$goarch)"
mkdir -p "$work/bin"
(cd "$repo" && CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch go build -trimpath \
	-ldflags "-s -w -X main.version=$version" -o "$work/bin/certbus" ./cmd/certbus &&
	CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch go build -trimpath -ldflags "-s -w" -o "$work/bin/certbus-hook" ./cmd/certbus-hook)

# The generated files come from running certbus, so they need a binary for
# this machine, built with the genman tag (the hidden gen-man command is not
# in the shipped binary: it would slow the hook's start-up).
genbin=$work/bin/certbus-gen
log "building a host binary with gen-man to generate man pages and completions"
(cd "$repo" && CGO_ENABLED=0 GOOS= GOARCH= go build -tags genman -trimpath -o "$genbin" ./cmd/certbus)

# The FHS tree. Modes are set explicitly: the umask of whoever builds must not
# leak into the package.
d() { install -d -m 0755 "$root$1"; }
f() { install -m "$1" "$2" "$root$3"; }

d /usr/bin
f 0755 "$work/bin/certbus" /usr/bin/certbus
f 0755 "$work/bin/certbus-hook" /usr/bin/certbus-hook
d /lib/systemd/system
f 0644 "$pkgsrc/systemd/certbus.service" /lib/systemd/system/certbus.service
d /usr/share/dbus-1/system.d
f 0644 "$pkgsrc/dbus/org.certbus.Dispatcher1.conf" /usr/share/dbus-1/system.d/org.certbus.Dispatcher1.conf
d /usr/share/dbus-1/system-services
f 0644 "$pkgsrc/dbus/org.certbus.Dispatcher1.service" /usr/share/dbus-1/system-services/org.certbus.Dispatcher1.service
for kind in pre post deploy; do
	d "/etc/letsencrypt/renewal-hooks/$kind"
	f 0755 "$pkgsrc/letsencrypt/renewal-hooks/$kind/50-certbus" "/etc/letsencrypt/renewal-hooks/$kind/50-certbus"
done
d /etc/certbus
d /etc/certbus/apps.d
f 0644 "$pkgsrc/certbus.yaml" /etc/certbus/certbus.yaml

# Shell completions: cobra's built-in `completion` command.
gen_completion() { # shell destination
	out=$work/completion.$1
	"$genbin" completion "$1" >"$out" || die "\`certbus completion $1\` failed"
	[ -s "$out" ] || die "\`certbus completion $1\` printed nothing"
	d "$(dirname "$2")"
	f 0644 "$out" "$2"
}
gen_completion bash /usr/share/bash-completion/completions/certbus
gen_completion zsh /usr/share/zsh/vendor-completions/_certbus
gen_completion fish /usr/share/fish/vendor_completions.d/certbus.fish

# Man pages: the hidden `certbus gen-man DIR` (cobra/doc, genman build tag)
# writes one page per command.
mkdir -p "$work/man"
if "$genbin" gen-man "$work/man" >"$work/gen-man.log" 2>&1; then
	found=0
	for page in "$work"/man/*.[1-9]; do
		[ -e "$page" ] || continue
		section=${page##*.}
		d "/usr/share/man/man$section"
		gzip -9n <"$page" >"$work/page.gz"
		f 0644 "$work/page.gz" "/usr/share/man/man$section/$(basename "$page").gz"
		found=$((found + 1))
	done
	[ "$found" -gt 0 ] || die "\`certbus gen-man\` succeeded but wrote no man page (NAME.SECTION files) into its directory"
	log "$found man pages"
else
	cat "$work/gen-man.log" >&2
	die "\`certbus gen-man\` failed (output above)"
fi

# Debian's documentation files: copyright, changelog (native package),
# lintian overrides.
d /usr/share/doc/certbus
license=
for f in LICENSE LICENSE.md LICENSE.txt COPYING; do
	[ -f "$repo/$f" ] && license=$repo/$f && break
done
{
	echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
	echo "Upstream-Name: certbus"
	echo "Source: https://github.com/certbus/certbus"
	echo
	echo "Files: *"
	echo "Copyright: $(date -u -d "@$SOURCE_DATE_EPOCH" +%Y) the certbus authors"
	if [ -n "$license" ]; then
		echo "License: see below"
		sed -e 's/^$/./' -e 's/^/ /' "$license"
	else
		echo "License: none declared"
		echo " The source tree has no LICENSE file yet."
	fi
} >"$work/copyright"
[ -n "$license" ] || log "WARNING: no LICENSE file in the repository: the package's copyright file says so"
f 0644 "$work/copyright" /usr/share/doc/certbus/copyright
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
{
	echo "certbus ($debversion) unstable; urgency=medium"
	echo
	echo "  * Built from commit $commit."
	echo
	echo " -- ${CERTBUS_DEB_MAINTAINER:-certbus maintainers <maintainers@certbus.invalid>}  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$work/changelog.gz"
f 0644 "$work/changelog.gz" /usr/share/doc/certbus/changelog.gz
d /usr/share/lintian/overrides
f 0644 "$pkgsrc/deb/lintian-overrides" /usr/share/lintian/overrides/certbus

# The packaged hook scripts are conffiles, and `certbus install-hooks` may be
# run on the same host later: it must find them identical ("unchanged"), or
# it would either call them foreign or rewrite a conffile behind dpkg.
mkdir -p "$work/le"
if "$genbin" install-hooks --letsencrypt-dir "$work/le" --binary /usr/bin/certbus >"$work/install-hooks.log" 2>&1; then
	for kind in pre post deploy; do
		if ! cmp -s "$work/le/renewal-hooks/$kind/50-certbus" "$pkgsrc/letsencrypt/renewal-hooks/$kind/50-certbus"; then
			diff -u "$pkgsrc/letsencrypt/renewal-hooks/$kind/50-certbus" "$work/le/renewal-hooks/$kind/50-certbus" >&2 || true
			die "packaging/letsencrypt/renewal-hooks/$kind/50-certbus differs from what \`certbus install-hooks --binary /usr/bin/certbus\` writes (diff above): make them the same (hooks.Script is the source)"
		fi
	done
else
	cat "$work/install-hooks.log" >&2
	die "\`certbus install-hooks --letsencrypt-dir DIR --binary /usr/bin/certbus\` failed (output above)"
fi

# DEBIAN/
install -d -m 0755 "$root/DEBIAN"
for script in postinst prerm postrm; do
	install -m 0755 "$pkgsrc/deb/$script" "$root/DEBIAN/$script"
done
# Every file under /etc is a conffile: an admin's edit survives upgrades.
(cd "$root" && find etc -type f | sort | sed 's|^|/|') >"$root/DEBIAN/conffiles"
chmod 0644 "$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print |
	sed 's|^\./||' | sort | xargs md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"
installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: certbus
Version: $debversion
Architecture: $debarch
Maintainer: ${CERTBUS_DEB_MAINTAINER:-certbus maintainers <maintainers@certbus.invalid>}
Installed-Size: $installed_size
Depends: dbus, adduser
Recommends: certbot
Section: admin
Priority: optional
Homepage: https://github.com/certbus/certbus
Description: deliver renewed TLS certificates to every service on the host
 certbus makes every service on a host pick up certificates that certbot
 renewed, from one set of certbot hooks. The hooks pass each renewal over the
 system D-Bus to the certbus daemon, which installs the certificate where
 each configured service (Apache, nginx, ejabberd, Matrix Synapse, HAProxy,
 PostgreSQL, Postfix, Dovecot, coturn, any systemd unit) reads it, reloads
 the service once per renewal run, checks that it serves the new
 certificate, and rolls back if it does not.
EOF
chmod 0644 "$root/DEBIAN/control"

deb=$outdir/certbus_${debversion}_${debarch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
log "built $deb"

# Check: the package holds what the system test and users rely on.
listing=$(dpkg-deb -c "$deb")
for path in /usr/bin/certbus /usr/bin/certbus-hook /lib/systemd/system/certbus.service \
	/usr/share/dbus-1/system.d/org.certbus.Dispatcher1.conf \
	/usr/share/dbus-1/system-services/org.certbus.Dispatcher1.service \
	/etc/letsencrypt/renewal-hooks/pre/50-certbus /etc/letsencrypt/renewal-hooks/post/50-certbus \
	/etc/letsencrypt/renewal-hooks/deploy/50-certbus /etc/certbus/certbus.yaml /etc/certbus/apps.d/ \
	/usr/share/bash-completion/completions/certbus /usr/share/zsh/vendor-completions/_certbus \
	/usr/share/fish/vendor_completions.d/certbus.fish; do
	printf '%s\n' "$listing" | grep -q " \.$path\$" || die "$deb lacks $path"
done
if command -v lintian >/dev/null 2>&1; then
	lintian --tag-display-limit 0 "$deb" >&2 || log "lintian reported problems (above); not fatal"
fi

echo "$deb"
