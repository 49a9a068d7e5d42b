# scripts/lib.sh: helpers shared by scripts/test and scripts/demo: the Debian
# packages peervol needs (installed only when missing), kernel modules, and
# the CMake build. Source it; it defines functions and PV_REPO only.

PV_REPO=${PV_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

# Everything to build peervol and run all of its tests (debhelper, dpkg-dev,
# fakeroot and lintian: the e2e test package builds the Debian packages).
pv_packages()
{
	local rt=libclang-rt-14-dev v
	# The sanitizer/fuzzer runtime must match the installed clang.
	if command -v clang >/dev/null 2>&1; then
		v=$(clang -dumpversion 2>/dev/null | cut -d. -f1)
		[ -n "$v" ] && rt=libclang-rt-$v-dev
	fi
	echo build-essential cmake pkg-config libfuse3-dev fuse3 libzmq3-dev \
		libprotobuf-c-dev protobuf-c-compiler check liblmdb-dev libjansson-dev libsystemd-dev uthash-dev \
		libsodium-dev libmicrohttpd-dev libgnutls28-dev \
		clang "$rt" fio e2fsprogs util-linux iproute2 python3 nbdkit libnbd-bin curl tmux tcpdump \
		debhelper dpkg-dev fakeroot lintian
}

pv_say() { printf '==> %s\n' "$*" >&2; }

# Installs the packages that dpkg does not list as installed; runs apt-get
# only when something is missing.
pv_install_deps()
{
	local p missing=()
	for p in $(pv_packages); do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		pv_say "build and test dependencies are installed"
		return 0
	fi
	pv_say "installing: ${missing[*]}"
	if [ "$(id -u)" != 0 ]; then
		echo "scripts: need root to install ${missing[*]} (run as root, or install them)" >&2
		return 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q || return 1
	apt-get install -y -q --no-install-recommends "${missing[@]}" || return 1
	# clang may have come in just now: its runtime package follows its version
	for p in $(pv_packages); do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			apt-get install -y -q --no-install-recommends "$p" || return 1
	done
}

# Loads the fuse and loop modules when their devices are missing.
pv_load_modules()
{
	if [ ! -c /dev/fuse ]; then
		modprobe fuse 2>/dev/null || pv_say "warning: cannot load the fuse module (no /dev/fuse)"
	fi
	if [ ! -e /dev/loop-control ]; then
		modprobe loop 2>/dev/null || pv_say "warning: cannot load the loop module"
	fi
}

# pv_build DIR [cmake args...]: configures (if needed) and builds the tree
# in $PV_REPO/DIR. CC in the environment picks the compiler; PV_BUILD_TARGET
# builds that target only (default: all).
pv_build()
{
	local dir=$PV_REPO/$1
	shift
	local cc cached
	pv_say "building $dir ($* CC=${CC:-default})"
	# A tree configured with another compiler is started afresh.
	if [ -n "${CC:-}" ] && [ -f "$dir/CMakeCache.txt" ]; then
		cc=$(command -v "$CC" || echo "$CC")
		cached=$(sed -n 's/^CMAKE_C_COMPILER:[A-Z]*=//p' "$dir/CMakeCache.txt")
		if [ "$(readlink -f "$cc")" != "$(readlink -f "$cached")" ]; then
			pv_say "$dir was configured with $cached; starting it afresh"
			rm -rf "$dir"
		fi
	fi
	mkdir -p "$dir"
	cmake -S "$PV_REPO" -B "$dir" "$@" >"$dir/cmake-configure.log" 2>&1 ||
		{ cat "$dir/cmake-configure.log" >&2; return 1; }
	cmake --build "$dir" -j "$(nproc)" ${PV_BUILD_TARGET:+--target "$PV_BUILD_TARGET"}
}
