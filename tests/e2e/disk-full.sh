#!/usr/bin/env bash
# disk-full: server 1 keeps its data directory on a 64 MiB ext4 file system
# of its own; server 2's disk is fine; volume vol is spread over both. When
# server 1's file system fills:
#   - a direct write through fused fails with ENOSPC at once (NO_SPACE is not
#     retried until --timeout), and the loop device reports an I/O error;
#   - peerd 1 logs "volume vol ... server 1: no space left" with what to do,
#     once per volume per minute however many writes fail;
#   - pages owned by server 2 keep taking writes, everything acknowledged
#     and flushed before reads back intact, FLUSH works;
#   - server 1 stays up (status answers, server 2 sees it up) and its status
#     shows the free space near 0 and a disk_full warning;
#   - a volume create that server 1 must record fails cleanly and leaves the
#     same catalog on both servers;
#   - TRIM (fallocate --punch-hole through fused) works on the full disk and
#     frees space; writes work again.
# Then ext4 on a volume (fsvol) whose host sees EIO while the disk is full:
# what is fair to assert is that the file synced before the disk filled
# reads back intact, and that after space returns e2fsck -fy leaves a
# file system that e2fsck -fn finds clean (the journal may have aborted, so
# ext4 may have gone read-only and need a repair pass: a real disk that
# returns write errors does the same to it).
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd mkfs.ext4 e2fsck fallocate losetup cmp
need_bin "$PEERD" "$PEERCTL" "$FUSED"
MiB=$((1 << 20))
t0=$SECONDS

# Server 1's data directory: a 64 MiB ext4 file system (no root reserve,
# so the disk is full for peerd as for anyone).
truncate -s 64M "$T/disk1.img"
disk=$(losetup -f --show "$T/disk1.img")
pv_record loops "$disk"
mkfs.ext4 -q -m 0 -E lazy_itable_init=0,lazy_journal_init=0 "$disk"
mount_fs "$disk" "$(data_of 1)"

start_peerd 1
start_peerd 2
wait_peerd 1
wait_peerd 2
ctl 1 group init >/dev/null
ctl 2 group join "$(addr_of 1)" >/dev/null
wait_group_up 1 2
ctl 1 volume create vol 256M >/dev/null
ctl 1 volume create fsvol 64M --page-size 1M >/dev/null
ctl 1 volume create spare 16M --servers 1 >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)"
wait_path_exists "$T/mnt/spare" || fail "volume spare did not appear"
dd if=/dev/urandom of="$T/mnt/spare" bs=1M count=8 oflag=direct conv=notrunc,fsync status=none
vol=$T/mnt/vol

# owner_pages N: the 4 MiB pages of vol that server N owns, one a line.
owner_pages()
{
	ctl 1 --json volume show vol --routing=full |
		json "'\n'.join(str(p) for r in d['routing'] if r['owner'] == $1 for p in range(r['first_page'], r['last_page'] + 1))"
}
pages2=$(owner_pages 2)
[ -n "$pages2" ] && [ -n "$(owner_pages 1)" ] || fail "vol is not spread over both servers"

# ext4 on fsvol, with a file synced before anything fills.
fsdev=$(loop_attach "$T/mnt/fsvol")
mkfs.ext4 -q "$fsdev"
mount_fs "$fsdev" "$T/fs"
make_random "$T/keep" 4
cp "$T/keep" "$T/fs/keep"
sync -f "$T/fs/keep"

# 8 MiB acknowledged and flushed before the disk fills (both servers).
make_random "$T/before" 8
dd if="$T/before" of="$vol" bs=1M oflag=direct conv=notrunc,fsync status=none
sum_before=$(sha256sum <"$T/before" | cut -d' ' -f1)

# Fill: direct writes from 16 MiB on until one fails. Server 1 holds half
# of the 240 MiB, far more than its 64 MiB disk.
start=$SECONDS
if dd if=/dev/urandom of="$vol" bs=1M seek=16 count=240 oflag=direct conv=notrunc \
	status=none 2>"$T/dd.err"; then
	fail "240 MiB of writes succeeded on a 64 MiB disk"
fi
took=$((SECONDS - start))
log "fill stopped after ${took}s: $(cat "$T/dd.err")"
grep -q "No space left on device" "$T/dd.err" || fail "the writer did not get ENOSPC: $(cat "$T/dd.err")"
[ "$took" -lt 20 ] || fail "filling took ${took}s: the error did not reach the writer quickly"

# Many more writes to server 1's pages: each fails at once with ENOSPC.
start=$SECONDS
fails=0
for p in $(owner_pages 1 | tail -n 20); do
	if ! dd if=/dev/urandom of="$vol" bs=1M seek=$((p * 4)) count=1 oflag=direct \
		conv=notrunc status=none 2>"$T/dd1.err"; then
		grep -q "No space left on device" "$T/dd1.err" || fail "write to page $p: $(cat "$T/dd1.err")"
		fails=$((fails + 1))
	fi
done
[ "$fails" -ge 10 ] || fail "only $fails of 20 writes to server 1's pages failed on a full disk"
[ $((SECONDS - start)) -lt 10 ] || fail "20 failing writes took $((SECONDS - start))s"

# The loop device on the fused file reports an I/O error too.
vdev=$(loop_attach "$vol")
p1=$(owner_pages 1 | tail -n 1)
if dd if=/dev/urandom of="$vdev" bs=1M seek=$((p1 * 4)) count=1 oflag=direct status=none \
	2>"$T/dd2.err"; then
	fail "a write to server 1's page $p1 through the loop device succeeded on a full disk"
fi
log "through the loop device: $(cat "$T/dd2.err")"
grep -qiE "input/output error|no space left" "$T/dd2.err" || fail "loop device write: $(cat "$T/dd2.err")"
loop_detach "$vdev"

# Pages owned by server 2 keep taking writes; FLUSH works.
p2=$(echo "$pages2" | tail -n 1)
make_random "$T/p2" 1
dd if="$T/p2" of="$vol" bs=1M seek=$((p2 * 4)) oflag=direct conv=notrunc,fsync status=none ||
	fail "a write to server 2's page $p2 failed while only server 1's disk is full"
"$PYTHON" -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDWR); os.fsync(fd)' "$vol" ||
	fail "FLUSH (fsync) of vol failed on a full disk"

# Everything acknowledged before reads back.
assert_eq "$(range_sum "$vol" 0 8)" "$sum_before" "data written before the disk filled"
cmp <(dd if="$vol" bs=1M skip=$((p2 * 4)) count=1 iflag=direct status=none) "$T/p2" ||
	fail "server 2's page does not read back"

# One log line for all those failures, saying which volume, which server
# and what to do.
grep -E "volume vol.*server 1: no space left" "$T/peerd1.log" >"$T/nospc.lines" ||
	fail "peerd 1 did not log 'volume vol ... server 1: no space left'"
log "peerd 1 says: $(head -n 1 "$T/nospc.lines")"
assert_eq "$(wc -l <"$T/nospc.lines")" 1 "no-space log lines for vol (once per minute)"
grep -qiE "free|trim|delete" "$T/nospc.lines" || fail "the no-space log line does not say what to do"

# Server 1 is up and says its disk is full.
ctl 1 --json status >"$T/status1.json" || fail "peerd 1 does not answer status on a full disk"
assert_eq "$(json 'd["disk_full"]' <"$T/status1.json")" true "status disk_full"
free1=$(json 'd["data_free"]' <"$T/status1.json")
[ "$free1" -lt $((1 * MiB)) ] || fail "status data_free is $free1 on a full disk"
ctl 1 status | grep -qi "disk full" || fail "peerctl status does not show the disk-full warning"
assert_eq "$(member_state 2 1)" up "server 1 as server 2 sees it"

# A catalog change server 1 must record fails cleanly, whoever coordinates,
# and both servers keep the same catalog.
view=$(catalog_view 1)
for n in 1 2; do
	if ctl "$n" volume create more$n 16M >"$T/create.out" 2>&1; then
		fail "volume create through server $n succeeded with server 1's disk full"
	fi
	log "volume create through server $n: $(cat "$T/create.out")"
	grep -qiE "no space|free space" "$T/create.out" || fail "volume create error is not about space"
	assert_eq "$(catalog_view 1)" "$view" "server 1's catalog after a failed create"
	assert_eq "$(catalog_view 2)" "$view" "server 2's catalog after a failed create"
done


# A volume delete (it frees space) goes through on the full disk, on both.
ctl 2 volume delete spare >/dev/null || fail "volume delete with server 1's disk full"
for n in 1 2; do
	ctl "$n" --json volume list | json '[v["name"] for v in d["volumes"]]' | grep -q spare &&
		fail "server $n still lists volume spare after its delete"
done
assert_eq "$(catalog_view 1)" "$(catalog_view 2)" "catalogs after a delete on a full disk"
# ... and its space is taken again at once.
if dd if=/dev/urandom of="$vol" bs=1M seek=16 count=240 oflag=direct conv=notrunc \
	status=none 2>"$T/dd.err"; then
	fail "240 MiB of writes succeeded on a full 64 MiB disk"
fi
ctl 1 --json status | json 'd["disk_full"]' | grep -qx true || fail "status disk_full after refilling"

# ext4 on fsvol: writing fails (or is held back) while the disk is full.
if dd if=/dev/urandom of="$T/fs/fill" bs=1M count=48 conv=fsync status=none 2>"$T/fs.err"; then
	log "ext4 on fsvol: writing 48 MiB succeeded (its pages on server 1 were all written before)"
else
	log "ext4 on fsvol: $(cat "$T/fs.err")"
fi

# Free space: TRIM the filled range through fused (works on a full disk).
fallocate --punch-hole --keep-size -o $((16 * MiB)) -l $((240 * MiB)) "$vol" ||
	fail "TRIM (punch hole) failed on a full disk"
wait_free()
{
	local k
	for ((k = 0; k < 50; k++)); do
		[ "$(ctl 1 --json status | json 'd["data_free"]')" -gt $((16 * MiB)) ] && return 0
		sleep 0.1
	done
	fail "TRIM did not free space on server 1"
}
wait_free

# Writes work again, on server 1's pages too.
make_random "$T/after" 8
p1=$(owner_pages 1 | tail -n 1)
dd if="$T/after" of="$vol" bs=1M seek=$((p1 * 4 - 4)) oflag=direct conv=notrunc,fsync status=none ||
	fail "writes still fail after space was freed"
cmp <(dd if="$vol" bs=1M skip=$((p1 * 4 - 4)) count=8 iflag=direct status=none) "$T/after" ||
	fail "data written after space was freed does not read back"
assert_eq "$(range_sum "$vol" 0 8)" "$sum_before" "data written before, after space returned"
grep -qE "volume vol, server 1: writes succeed again" "$T/peerd1.log" ||
	fail "peerd 1 did not log that writes to vol succeed again"
assert_eq "$(ctl 1 --json status | json 'd["disk_full"]')" false "status disk_full after space returned"
ctl 1 volume create more 16M >/dev/null || fail "volume create after space was freed"

# ext4 on fsvol after space returned: repair pass, then clean; the file
# synced before the disk filled is intact.
rm -f "$T/fs/fill" 2>/dev/null || true
pv_umount_fs "$T/fs"
pv_forget mounts "$T/fs"
e2fsck -fy "$fsdev" >"$T/fsck1.out" 2>&1 && rc=0 || rc=$?
log "e2fsck -fy: exit $rc"
[ "$rc" -le 1 ] || fail "e2fsck -fy exit $rc: $(tail -n 5 "$T/fsck1.out")"
e2fsck -fn "$fsdev" >"$T/fsck2.out" 2>&1 || fail "e2fsck -fn not clean: $(tail -n 5 "$T/fsck2.out")"
mount_fs "$fsdev" "$T/fs"
cmp "$T/fs/keep" "$T/keep" || fail "the file synced before the disk filled changed"

log "done in $((SECONDS - t0))s"
max=${PV_DISK_FULL_MAX_S:-60} # the sanitizer build is slower
[ $((SECONDS - t0)) -lt "$max" ] || fail "took $((SECONDS - t0))s (bound: $max s)"
