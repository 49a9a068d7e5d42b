#!/usr/bin/env bash
# shm-other-user: a peerd that runs as another user than fused (the Debian
# package runs peerd as peervol, fused as root) still gets fused's shared
# memory, and with it mapped reads. Such a peerd may not open fused's memfd
# by /proc/PID/fd/N (EACCES), so its refusal names its pass socket
# (CONTROL.shm, mode 0600, in a directory only its user may write); fused
# checks that socket (its owner is the listening process's user, its
# directory is writable by no one else) and passes the memfd there
# (SCM_RIGHTS), then attaches with "passed". Here peerd runs as nobody:
#   a. fused logs that block data goes through shared memory, peerd maps
#      the passed memfd; 64 MiB of 1 MiB direct IO leaves the socket
#      nearly idle (under 4 MiB), fio verify (crc32c, 4k..1m randrw) is
#      clean, and peerd gave fused its data file to map (mapped reads);
#   b. the pass socket's directory made writable by everyone: fused refuses
#      to pass its memory there (another user could have put the socket),
#      logs why, and its data goes by socket; fio verify is clean.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_cmd fio setpriv ss
need_bin "$PEERD" "$PEERCTL" "$FUSED"

# peerd 1 as nobody: its binary, data and control socket in a directory of
# its own outside T (T's parents may be private to root: scripts/test's
# TMPDIR is), removed by the cleanup
D=$(mktemp -d /tmp/pv-shm-other-user-nobody.XXXXXX)
drop_nobody_dir() { rm -rf "$D"; }
pv_on_cleanup drop_nobody_dir
cp "$PEERD" "$D/peerd"
chmod 0755 "$D" "$D/peerd"
chown nobody:nogroup "$D"
ln -s "$D/ctl.sock" "$(sock_of 1)" # what ctl 1 connects to
echo "=== $(date +%T) start as nobody: peerd --id 1 ===" >>"$T/peerd1.log"
setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$D/peerd" --id 1 \
	--listen "$(addr_of 1)" --data "$D" --control "$D/ctl.sock" </dev/null >>"$T/peerd1.log" 2>&1 &
PEERD_PID[1]=$!
PV_PIDS+=("$!")
pv_record pids "$!"
wait_peerd 1
[ "$(stat -c %U "$D/ctl.sock.shm")" = nobody ] || fail "no pass socket of nobody's at $D/ctl.sock.shm"
[ "$(stat -c %a "$D/ctl.sock.shm")" = 600 ] || fail "the pass socket is not mode 0600"
ctl 1 group init >/dev/null
ctl 1 volume create vol 256M >/dev/null

cat >"$T/verify.fio" <<EOF
[global]
filename=$T/mnt/vol
direct=1
ioengine=libaio
iodepth=16
size=128M
verify=crc32c
verify_fatal=1
verify_state_save=0
do_verify=1
bssplit=4k/40:64k/30:1m/30
[mixed]
rw=randrw
EOF

# mount_and_attach MNT WHAT: mounts fused at MNT, writes a MiB and waits
# (10 s) until fused logged how its block data goes to server 1 (WHAT)
mount_and_attach()
{
	mount_fused "$1" "$(addr_of 1)"
	wait_path_exists "$1/vol" || fail "$1/vol did not appear"
	dd if=/dev/zero of="$1/vol" bs=1M count=1 oflag=direct conv=notrunc status=none
	for _ in $(seq 50); do
		grep -q "$2" "$T/fused-$(basename "$1").log" && return 0
		sleep 0.2
	done
}

# a. passed, shared, mapped
mount_and_attach "$T/mnt" "block data goes"
grep -q "is on this host: block data goes through shared memory" "$T/fused-mnt.log" ||
	fail "fused does not share its memory with a peerd of another user: $(grep -i 'shared memory' "$T/fused-mnt.log")"
grep -q "shared memory mapped (passed over the pass socket: a fused of another user)" "$T/peerd1.log" ||
	fail "peerd (nobody) did not map the passed memory"
grep -q "runs as another user: our shared memory passed over its pass socket $D/ctl.sock.shm" \
	"$T/fused-mnt.log" || fail "fused did not log the pass"
pid=${FUSED_PID[$T/mnt]}
before=$(fused_sock_bytes "$pid")
make_random "$T/io.in" 32
dd if="$T/io.in" of="$T/mnt/vol" bs=1M seek=64 oflag=direct conv=notrunc status=none
cmp <(dd if="$T/mnt/vol" bs=1M skip=64 count=32 iflag=direct status=none) "$T/io.in" ||
	fail "32 MiB read back through the shared memory differ"
after=$(fused_sock_bytes "$pid")
log "64 MiB of 1 MiB IO through a passed memfd: $((after - before)) bytes on the socket"
((after - before < 4 << 20)) || fail "$((after - before)) bytes crossed the socket for 64 MiB of IO through shared memory"
(cd "$T" && run_fio passed "$T/verify.fio")
mapped=$(ctl 1 status --json | json "d['data_files_mapped']")
((mapped >= 1)) || fail "peerd gave no data file to map (mapped reads off)"
log "a peerd of nobody maps the memfd root's fused passed; mapped reads on ($mapped)"
umount_fused "$T/mnt"

# b. a pass socket in a directory anyone may write is not trusted
chmod 0777 "$D"
mount_and_attach "$T/mnt2" "block data goes"
grep -q "cannot pass it our shared memory: pass socket .* not a socket in a directory only its owner or root may write" \
	"$T/fused-mnt2.log" || fail "fused passed its memory to a socket in a directory anyone may write"
grep -q "block data goes by socket" "$T/fused-mnt2.log" || fail "fused did not fall back to the socket"
sed -i "s|$T/mnt/vol|$T/mnt2/vol|" "$T/verify.fio"
(cd "$T" && run_fio by-socket "$T/verify.fio")
log "a pass socket anyone could have put there gets nothing; data by socket, verify clean"
umount_fused "$T/mnt2"
