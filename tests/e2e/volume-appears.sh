#!/usr/bin/env bash
# volume-appears: the mount follows the catalog without a remount: a volume
# created after mounting appears (with its size, its creation time and the
# space it takes as st_blocks), a deleted one disappears;
# deleting a volume that fused has open (a loop device holds it) is refused
# with a clear message and changes nothing, and succeeds with --force or
# once the loop device is gone.
. "$(dirname "$0")/common.sh"
need_fuse
need_loop
need_bin "$PEERD" "$PEERCTL" "$FUSED"

run_peerd 1
ctl 1 volume create first 16M >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)"
[ -f "$T/mnt/first" ] || fail "first is not in the mount"
assert_eq "$(ls "$T/mnt")" first "mount root listing"

# ---------------------------------------------------------------- appears
ctl 1 volume create later 24M >/dev/null
# Look it up before it exists once, to catch a cached negative lookup.
wait_path_exists "$T/mnt/later" || fail "volume 'later' created after mounting did not appear within ${PV_WAIT}s"
assert_eq "$(stat -c %s "$T/mnt/later")" $((24 << 20)) "size of the new volume file"
assert_eq "$(ls "$T/mnt" | tr '\n' ' ')" "first later " "mount root listing after create"
make_random "$T/x" 1
dd if="$T/x" of="$T/mnt/later" bs=1M oflag=direct conv=notrunc status=none
cmp <(dd if="$T/mnt/later" bs=1M count=1 iflag=direct status=none) "$T/x" || fail "IO to the new volume failed"
log "a volume created after mounting appeared and works"
# its times are its creation, its blocks what it takes (thin): 1 MiB written
created=$(ctl 1 --json volume show later | json 'd["created"]')
assert_eq "$(stat -c %Y "$T/mnt/later")" "$created" "mtime of the volume file (its creation)"
blocks=0
for _ in $(seq 1 30); do # the holders' usage comes with their heartbeats
	blocks=$(stat -c %b "$T/mnt/later")
	[ "$blocks" = 2048 ] && break
	sleep 0.3
done
assert_eq "$blocks" 2048 "st_blocks of a 24 MiB volume with 1 MiB written"
assert_eq "$(stat -c %b "$T/mnt/first")" 0 "st_blocks of a volume never written"

# ---------------------------------------------------------------- disappears
ctl 1 volume delete later >/dev/null
wait_path_gone "$T/mnt/later" || fail "deleted volume 'later' is still in the mount after ${PV_WAIT}s"
ls "$T/mnt" | grep -qx later && fail "deleted volume 'later' still listed in the mount root"
log "a deleted volume disappeared"

# a re-created volume of the same name is a new, empty volume
ctl 1 volume create later 8M >/dev/null
wait_path_exists "$T/mnt/later" || fail "re-created volume 'later' did not appear"
for _ in $(seq 1 50); do
	[ "$(stat -c %s "$T/mnt/later")" = $((8 << 20)) ] && break
	sleep 0.2
done
assert_eq "$(stat -c %s "$T/mnt/later")" $((8 << 20)) "size of the re-created volume"
cmp -n $((1 << 20)) <(dd if="$T/mnt/later" bs=1M count=1 iflag=direct status=none) /dev/zero ||
	fail "a re-created volume shows the deleted volume's data"

# ---------------------------------------------------------------- delete while open
dev=$(loop_attach "$T/mnt/first")
before=$(ctl 1 --json volume list | json 'sorted(v["name"] for v in d["volumes"])')
# fused reports open volumes periodically: allow it a few seconds
for _ in $(seq 1 60); do
	[ "$(ctl 1 --json volume show first | json 'd["open_clients"]')" -ge 1 ] && break
	sleep 0.5
done
assert_eq "$(ctl 1 --json volume show first | json 'd["open_clients"]')" 1 "open_clients while a loop device holds the volume"
expect_ctl_error 1 1 "first.*(open|in use|busy)|(open|in use|busy).*first" volume delete first
expect_ctl_error 1 1 "force" volume delete first
assert_eq "$(ctl 1 --json volume list | json 'sorted(v["name"] for v in d["volumes"])')" "$before" "volume list after a refused delete"
[ -f "$T/mnt/first" ] || fail "refused delete removed the volume from the mount"
make_random "$T/y" 1
dd if="$T/y" of="$dev" bs=1M oflag=direct status=none || fail "IO to 'first' failed after a refused delete"
log "delete of an open volume refused, nothing changed"

# once the loop device is gone, a plain delete works
loop_detach "$dev"
deleted=0
for _ in $(seq 1 60); do
	if ctl 1 volume delete first >/dev/null 2>"$T/del.err"; then
		deleted=1
		break
	fi
	sleep 0.5 # open_clients ages out within 10 s (docs/control-protocol.md)
done
[ "$deleted" = 1 ] || fail "delete still refused 30 s after the loop device was detached: $(cat "$T/del.err")"
wait_path_gone "$T/mnt/first" || fail "deleted 'first' still in the mount"

# --force deletes a volume that is open
dev=$(loop_attach "$T/mnt/later")
for _ in $(seq 1 60); do
	[ "$(ctl 1 --json volume show later | json 'd["open_clients"]')" -ge 1 ] && break
	sleep 0.5
done
expect_ctl_error 1 1 "later" volume delete later
ctl 1 volume delete later --force >/dev/null || fail "volume delete later --force failed"
wait_path_gone "$T/mnt/later" || fail "force-deleted 'later' still in the mount"
# IO through the loop device to the force-deleted volume now fails cleanly
if dd if="$dev" of=/dev/null bs=4096 count=1 iflag=direct status=none 2>/dev/null; then
	log "note: a read of the force-deleted volume through the old loop device still succeeded"
fi
loop_detach "$dev"
assert_eq "$(ctl 1 --json volume list | json 'len(d["volumes"])')" 0 "volumes left"
assert_eq "$(ls -A "$T/mnt")" "" "mount root after all deletes"
