#!/usr/bin/env bash
# package: the Debian packages install peervol as README's "Installing from
# packages" says, and taking them off never loses data.
#   1. A copy of the tree (tracked and new files, no build trees) builds with
#      `dpkg-buildpackage -us -uc -b` (nocheck) into peervol-server and
#      peervol-client of the project's version (debian/changelog ==
#      CMakeLists.txt project VERSION); lintian finds no error.
#   2. `apt-get install ./peervol-server_*.deb ./peervol-client_*.deb` puts
#      peerd, peerctl and fused in /usr/sbin, their man pages where man finds
#      them, the units (systemd-analyze verify: clean; peerd.service runs as
#      peervol and is not enabled), the settings in /etc/default (conffiles)
#      and the bash completion in place; makes the system user peervol and
#      /var/lib/peervol (0750, its own). peerd --version names the version,
#      peerctl --help answers.
#   3. The installed peerd runs as peervol on /var/lib/peervol: group init,
#      volume create (the data file is peervol's).
#   4. apt-get remove: the programs go; settings, data and user stay.
#      apt-get purge: the settings go; the data stays byte for byte, and the
#      user that owns it, with a note saying where it is.
#   5. Installed again, peerd serves the kept volume; purged with
#      PEERVOL_PURGE_DATA=yes, the data directory and the user go.
# The packages are purged in the cleanup whatever happens. The test only runs
# on a machine without peervol installed (no packages, user or
# /var/lib/peervol): it would replace them. Plain build only (CMakeLists.txt):
# it builds its own binaries, so a second run under the sanitizers would
# prove nothing more.
. "$(dirname "$0")/common.sh"
[ "$(id -u)" = 0 ] || skip "needs root (installs packages)"
need_cmd dpkg-buildpackage dh fakeroot lintian apt-get dpkg-parsechangelog setpriv

DATA=/var/lib/peervol
for p in peervol-server peervol-client; do
	if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q ' installed$'; then
		skip "$p is installed on this machine: the test would replace it"
	fi
done
[ ! -e "$DATA" ] || skip "$DATA exists on this machine: the test would delete it"
! getent passwd peervol >/dev/null || skip "a user peervol exists on this machine: the test would delete it"

export DEBIAN_FRONTEND=noninteractive
# other sessions on this machine may hold the dpkg lock for a while
APT=(apt-get -y -q --no-install-recommends -o DPkg::Lock::Timeout=120)
PV_INSTALLED=0

# The cleanup: purge what the test installed, with its data and user (none
# of them existed before: see above).
package_cleanup()
{
	[ "$PV_INSTALLED" = 1 ] || return 0
	if dpkg-query -W -f='${Status}\n' peervol-server peervol-client 2>/dev/null | grep -qv '^unknown ok not-installed$'; then
		PEERVOL_PURGE_DATA=yes "${APT[@]}" purge peervol-server peervol-client >>"$T/apt.log" 2>&1 ||
			{ echo "FAIL: $PV_TEST: cleanup: apt-get purge failed (see $T/apt.log)" >&2; PV_FAILED=1; }
	fi
	rm -rf --one-file-system "$DATA"
	[ -n "${RUN:-}" ] && rm -rf --one-file-system "$RUN"
	getent passwd peervol >/dev/null && deluser --system --quiet peervol >>"$T/apt.log" 2>&1
	return 0
}
pv_on_cleanup package_cleanup

# ------------------------------------------------------------- 1. build
version=$(dpkg-parsechangelog -l "$PV_REPO/debian/changelog" -S Version)
cmake_version=$(sed -n 's/^project(peervol VERSION \([0-9.]*\) .*/\1/p' "$PV_REPO/CMakeLists.txt")
assert_eq "$version" "$cmake_version" "debian/changelog version (CMakeLists.txt project VERSION)"
arch=$(dpkg --print-architecture)

# The working tree as it is (tracked and new files, not the ignored build
# trees), without .git: the build cannot write into the checkout.
mkdir "$T/src"
if git -C "$PV_REPO" rev-parse --git-dir >/dev/null 2>&1; then
	git -C "$PV_REPO" ls-files -z -co --exclude-standard |
		tar -C "$PV_REPO" --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$T/src" -xf -
else
	tar -C "$PV_REPO" --exclude='./build*' --exclude=./.git -cf - . | tar -C "$T/src" -xf -
fi
[ -f "$T/src/debian/rules" ] || fail "the copy of the tree has no debian/rules"
t0=$SECONDS
# the build's and lintian's temporary files in $T (lintian leaves some)
mkdir -p "$T/tmp"
(cd "$T/src" && TMPDIR=$T/tmp DEB_BUILD_OPTIONS="nocheck noautodbgsym parallel=$(nproc)" \
	DEB_BUILD_PROFILES=nocheck dpkg-buildpackage -us -uc -b) >"$T/build.log" 2>&1 ||
	fail "dpkg-buildpackage failed: $(tail -n 20 "$T/build.log")"
log "dpkg-buildpackage: $((SECONDS - t0)) s"
server_deb=peervol-server_${version}_$arch.deb
client_deb=peervol-client_${version}_$arch.deb
for deb in "$server_deb" "$client_deb"; do
	[ -f "$T/$deb" ] || fail "$deb was not built: $(ls "$T")"
done

t0=$SECONDS
TMPDIR=$T/tmp lintian --fail-on error "$T/peervol_${version}_$arch.changes" >"$T/lintian.log" 2>&1 ||
	fail "lintian found errors: $(grep -E '^E: ' "$T/lintian.log" || tail -n 20 "$T/lintian.log")"
log "lintian: no error ($(grep -c '^W: ' "$T/lintian.log" || true) warnings) in $((SECONDS - t0)) s"

# ------------------------------------------------------------- 2. install
PV_INSTALLED=1
(cd "$T" && "${APT[@]}" install "./$server_deb" "./$client_deb") >"$T/apt.log" 2>&1 ||
	fail "apt-get install failed: $(tail -n 20 "$T/apt.log")"
log "installed $server_deb $client_deb"

for b in peerd peerctl fused; do
	[ -x /usr/sbin/$b ] || fail "/usr/sbin/$b not installed"
done
assert_eq "$(dpkg -S /usr/sbin/fused | cut -d: -f1)" peervol-client "package of /usr/sbin/fused"
assert_eq "$(dpkg -S /usr/sbin/peerctl | cut -d: -f1)" peervol-server "package of /usr/sbin/peerctl"
got=$(/usr/sbin/peerd --version) || fail "peerd --version failed"
[[ $got == "peerd $version "* ]] || fail "peerd --version: '$got', not version $version"
/usr/sbin/fused --version | grep -qF " $version" || fail "fused --version does not name $version"
/usr/sbin/peerctl --help >"$T/peerctl-help.txt" 2>&1 || fail "peerctl --help failed"
grep -q '^Usage: peerctl' "$T/peerctl-help.txt" || fail "peerctl --help: $(head -n 3 "$T/peerctl-help.txt")"

# man pages: where man finds them (unless dpkg is told to leave them out, as
# in slim container images: then in the package)
if grep -rqs '^path-exclude=/usr/share/man' /etc/dpkg/dpkg.cfg.d/; then
	for page in peerd.8 peerctl.8 fused.8; do
		dpkg-deb -c "$T/$server_deb" "$T/$client_deb" 2>/dev/null | grep -q "/man8/$page" ||
			fail "man page $page not in the packages"
	done
	log "man pages in the packages (dpkg excludes /usr/share/man here)"
else
	for page in peerd peerctl fused; do
		path=$(man -w "$page" 2>/dev/null) || fail "man -w $page finds no page"
		[[ $path == /usr/share/man/man8/$page.8* ]] || fail "man -w $page: $path"
	done
fi

units=/lib/systemd/system
for u in peerd.service fused@.service; do
	[ -f "$units/$u" ] || fail "$units/$u not installed"
done
grep -qx 'User=peervol' "$units/peerd.service" || fail "peerd.service does not run peerd as peervol"
grep -q '^ExecStart=/usr/sbin/peerd ' "$units/peerd.service" || fail "peerd.service does not run /usr/sbin/peerd"
grep -q '^ExecStart=/usr/sbin/fused ' "$units/fused@.service" || fail "fused@.service does not run /usr/sbin/fused"
if command -v systemd-analyze >/dev/null; then
	# offline: it needs no running systemd; clean units print nothing
	for u in peerd.service fused@.service; do
		out=$(systemd-analyze verify "$units/$u" 2>&1) || fail "systemd-analyze verify $u: $out"
		[ -z "$out" ] || fail "systemd-analyze verify $u: $out"
	done
	log "systemd-analyze verify: units clean"
else
	log "no systemd-analyze here: units checked by their lines only"
fi
[ ! -e /etc/systemd/system/multi-user.target.wants/peerd.service ] ||
	fail "peerd.service was enabled at install (its settings are an example)"
for f in /etc/default/peerd:peervol-server /etc/default/fused-example:peervol-client; do
	dpkg-query -W -f='${Conffiles}\n' "${f#*:}" | grep -q " ${f%%:*} " ||
		fail "${f%%:*} is not a conffile of ${f#*:}"
done
[ -f /usr/share/bash-completion/completions/peerctl ] || fail "no bash completion for peerctl"

getent passwd peervol >/dev/null || fail "no user peervol after the install"
IFS=: read -r _ _ uid _ _ home shell <<<"$(getent passwd peervol)"
((uid < 1000)) || fail "peervol is not a system user (uid $uid)"
assert_eq "$home:$shell" "$DATA:/usr/sbin/nologin" "home and shell of peervol"
assert_eq "$(stat -c '%U:%G %a' "$DATA")" "peervol:peervol 750" "owner and mode of $DATA"

# ------------------------------------------------------------- 3. peerd as peervol
# start_peerd with the installed peerd, as peervol, on the package's data
# directory; its control socket in a directory of peervol's
cat >"$T/peerd-as-peervol" <<'EOF'
#!/bin/sh
exec setpriv --reuid=peervol --regid=peervol --init-groups /usr/sbin/peerd "$@"
EOF
chmod +x "$T/peerd-as-peervol"
# outside $T: the test runner's TMPDIR is root's alone (0700), and peervol
# must reach its socket's directory (the cleanup removes it)
RUN=$(mktemp -d /run/pv-package.XXXXXX)
chown peervol:peervol "$RUN"
PEERD=$T/peerd-as-peervol
PEERCTL=/usr/sbin/peerctl
data_of() { echo "$DATA"; }
sock_of() { echo "$RUN/c$1.sock"; }
run_peerd 1
assert_eq "$(ps -o user= -p "${PEERD_PID[1]}")" peervol "user of the running peerd"
ctl 1 group init >/dev/null
ctl 1 volume create kept 16M >/dev/null
assert_eq "$(stat -c %U "$DATA/volumes/kept.vol")" peervol "owner of the volume's data file"
stop_peerd 1
# the data, to compare after remove and purge
data_sums() { (cd "$DATA" && find . -type f ! -name lock -print0 | sort -z | xargs -0 sha256sum); }
sums=$(data_sums)

# ------------------------------------------------------------- 4. remove, purge
"${APT[@]}" remove peervol-server peervol-client >>"$T/apt.log" 2>&1 || fail "apt-get remove failed"
for b in peerd peerctl fused; do
	[ ! -e /usr/sbin/$b ] || fail "/usr/sbin/$b still there after apt-get remove"
done
[ -f /etc/default/peerd ] || fail "apt-get remove took the settings (/etc/default/peerd)"
getent passwd peervol >/dev/null || fail "apt-get remove took the user peervol"
assert_eq "$(data_sums)" "$sums" "data in $DATA after apt-get remove"
log "apt-get remove: programs gone; settings, user and data kept"

"${APT[@]}" purge peervol-server peervol-client >"$T/purge.log" 2>&1 || fail "apt-get purge failed"
cat "$T/purge.log" >>"$T/apt.log"
[ ! -e /etc/default/peerd ] || fail "apt-get purge left /etc/default/peerd"
[ ! -e /etc/default/fused-example ] || fail "apt-get purge left /etc/default/fused-example"
assert_eq "$(data_sums)" "$sums" "data in $DATA after apt-get purge"
getent passwd peervol >/dev/null || fail "apt-get purge took the user peervol, who owns the kept data"
grep -q "data stays in $DATA" "$T/purge.log" || fail "apt-get purge says nothing of the kept data"
log "apt-get purge: settings gone; data and user kept: $(grep -o "data stays in $DATA" "$T/purge.log")"

# ------------------------------------------------------------- 5. again, purge with the data
(cd "$T" && "${APT[@]}" install "./$server_deb" "./$client_deb") >>"$T/apt.log" 2>&1 ||
	fail "apt-get install over the kept data failed"
run_peerd 1
ctl 1 volume list >"$T/volumes.txt"
grep -q '^kept ' "$T/volumes.txt" || fail "the kept volume is not served after a reinstall: $(cat "$T/volumes.txt")"
stop_peerd 1
log "installed again: peerd serves the kept volume"
PEERVOL_PURGE_DATA=yes "${APT[@]}" purge peervol-server peervol-client >>"$T/apt.log" 2>&1 ||
	fail "apt-get purge with PEERVOL_PURGE_DATA=yes failed"
[ ! -e "$DATA" ] || fail "PEERVOL_PURGE_DATA=yes apt-get purge left $DATA: $(ls -A "$DATA")"
! getent passwd peervol >/dev/null || fail "PEERVOL_PURGE_DATA=yes apt-get purge left the user peervol"
! getent group peervol >/dev/null || fail "PEERVOL_PURGE_DATA=yes apt-get purge left the group peervol"
PV_INSTALLED=0
log "PEERVOL_PURGE_DATA=yes apt-get purge: data directory and user gone"
