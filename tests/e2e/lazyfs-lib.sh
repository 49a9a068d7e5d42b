# lazyfs-lib.sh: helpers for the tests that put a directory on pvlazyfs
# (tests/tools/pvlazyfs.c), the FUSE file system that forgets unsynced
# writes on "drop": a power cut for that directory alone. Source it after
# common.sh. Not a test itself.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	echo "SKIP: lazyfs-lib: helper library sourced by tests, not a test"
	exit 77
fi
[ -n "${PV_TEST:-}" ] || { echo "lazyfs-lib.sh: source common.sh first" >&2; exit 1; }

PVLAZYFS=$PV_BUILD/tests/tools/pvlazyfs
declare -A LAZYFS_PID=() # mount point -> pid of its pvlazyfs

# mount_lazyfs BACKING MOUNT: pvlazyfs in the foreground (so that we own its
# pid) over BACKING at MOUNT, log $T/lazyfs-NAME.log; recorded for cleanup
# (unmounted with the fused mounts, before the processes are killed).
mount_lazyfs()
{
	local back=$1 mnt=$2 pid
	need_bin "$PVLAZYFS"
	mkdir -p "$back" "$mnt"
	"$PVLAZYFS" "$back" "$mnt" -f </dev/null >>"$T/lazyfs-$(basename "$mnt").log" 2>&1 &
	pid=$!
	LAZYFS_PID[$mnt]=$pid
	pv_track_mount "$mnt" "$pid" "pvlazyfs over $back"
}

# lazy_ctl MOUNT drop|sync: the power cut / a checkpoint.
lazy_ctl()
{
	echo "$2" >"$1/.pvlazyfs-ctl" || fail "pvlazyfs at $1: '$2' failed"
	log "pvlazyfs at $1: $2"
}

# lazy_stat MOUNT FIELD: one number of the control file's status line
# (files, pages, drops, syncs, fsyncs, dsync_writes).
lazy_stat()
{
	awk -v k="$2" '{ for (i = 1; i < NF; i += 2) if ($i == k) print $(i + 1) }' "$1/.pvlazyfs-ctl"
}
