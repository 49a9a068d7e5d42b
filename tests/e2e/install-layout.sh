#!/usr/bin/env bash
# install-layout: `cmake --install` (into a DESTDIR) puts the programs, man
# pages, systemd units, /etc/default examples and bash completion where the
# units and bash expect them: every path a unit runs or reads exists in the
# install, for the default prefix and for a distro's /usr; a settings file
# the administrator changed is kept on the next install.
. "$(dirname "$0")/common.sh"
need_cmd cmake
need_bin "$PEERD" "$PEERCTL" "$FUSED"

src=$(cd "$(dirname "$0")/../.." && pwd)

# check_prefix PREFIX: configures a build of src with that prefix (reusing
# nothing of $PV_BUILD but its compiler), installs it into a DESTDIR and
# checks the units against the files. Both prefixes share one build tree,
# configured again for the second (the programs do not depend on the
# prefix: only the units and the install rules change, and make rebuilds
# whatever does); the cached unit directory follows the prefix.
check_prefix()
{
	local prefix=$1 b=$T/build d=$T/root-${1//\//_} unit path again=0
	[ -f "$b/CMakeCache.txt" ] || again=1
	cmake -S "$src" -B "$b" -DCMAKE_INSTALL_PREFIX="$prefix" -UPV_SYSTEMD_UNITDIR >"$T/cmake.log" 2>&1 ||
		fail "cmake with prefix $prefix failed: $(tail -n 5 "$T/cmake.log")"
	# a tree's first configure writes other compile flags than any later
	# one (the flags pkg-config found are cached and then placed apart):
	# configured once more now, the second prefix's configure rebuilds
	# nothing
	if ((again)); then
		cmake -S "$src" -B "$b" >>"$T/cmake.log" 2>&1 || fail "cmake (again) failed: $(tail -n 5 "$T/cmake.log")"
	fi
	make -C "$b" -j2 peerd peerctl fused >"$T/make.log" 2>&1 || fail "build failed: $(tail -n 5 "$T/make.log")"
	DESTDIR=$d cmake --install "$b" >"$T/install.log" 2>&1 || fail "cmake --install failed: $(tail -n 5 "$T/install.log")"
	for unit in peerd.service fused@.service; do
		[ -f "$d$prefix/lib/systemd/system/$unit" ] ||
			fail "prefix $prefix: $unit not in $prefix/lib/systemd/system (a unit directory of another prefix?)"
	done
	for unit in peerd.service fused@.service; do
		path=$(find "$d" -name "$unit" -path '*/systemd/system/*' | head -n 1)
		[ -n "$path" ] || fail "prefix $prefix: $unit not installed"
		grep -q '@' <<<"$(grep -E '^(ExecStart|EnvironmentFile)=' "$path" | grep -v '%i')" &&
			fail "prefix $prefix: $unit has an unreplaced @VAR@: $(grep @ "$path")"
		exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$path")
		[ -x "$d$exe" ] || fail "prefix $prefix: $unit runs $exe, not in the install"
		env=$(sed -n 's/^EnvironmentFile=-\{0,1\}//p' "$path" | sed 's/%i/example/')
		[ -f "$d$env" ] || fail "prefix $prefix: $unit reads $env, not in the install"
		log "prefix $prefix: $unit runs $exe, reads $env"
	done
	for page in peerd.8 peerctl.8 fused.8; do
		find "$d" -name "$page" | grep -q . || fail "prefix $prefix: man page $page not installed"
	done
	comp=$(find "$d" -path '*/bash-completion/completions/peerctl')
	[ -n "$comp" ] || fail "prefix $prefix: no bash completion for peerctl"
	got=$(bash -c 'source "$1"; COMP_WORDS=(peerctl volume sh); COMP_CWORD=2; _peerctl; echo "${COMPREPLY[*]}"' _ "$comp")
	assert_eq "$got" show "completion of 'peerctl volume sh'"
	# the administrator's settings survive a second install
	env=$(find "$d" -path '*/default/peerd')
	echo "PEERD_ID=7 # mine" >"$env"
	DESTDIR=$d cmake --install "$b" >"$T/install.log" 2>&1 || fail "second cmake --install failed"
	assert_eq "$(cat "$env")" "PEERD_ID=7 # mine" "settings file after a second install"
	"$d$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$(find "$d" -name peerd.service)")" --version >/dev/null ||
		fail "prefix $prefix: the installed peerd does not run"
}

check_prefix /usr/local
check_prefix /usr
[ -f "$T/root-_usr/etc/default/peerd" ] || fail "prefix /usr: settings not in /etc/default"
[ -x "$T/root-_usr/usr/sbin/peerd" ] || fail "prefix /usr: peerd not in /usr/sbin"
