#!/usr/bin/env bash
# migrate-evacuate: retiring a server and adding one, under load. A group
# of three of weight 1; volume raw (24 pages of 1 MiB) with a fio verify
# write load on its loop device, volume fs (24 pages of 1 MiB) with ext4
# and files being written. 'server evacuate 3' returns once 3 owns
# nothing: every server shows it with 0 pages, no routing names it, no
# move is left, its data files hold no data (SEEK_DATA), and 'group leave
# 3' succeeds. fio ends with zero errors, a verify-only pass is clean, fsck
# -fn is clean and the files read back. Then server 4 (127.0.0.4) joins,
# 'volume set-servers VOL 1,2,4' for both volumes under a new load: each of
# 1, 2 and 4 ends within 2 pages of its share (pv_apportion), server 4
# included; the routing agrees everywhere, no server holds data of a page
# it does not own, fio and fsck are clean again.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_fuse
need_loop
need_cmd fio losetup mkfs.ext4 fsck.ext4
need_bin "$PEERD" "$PEERCTL" "$FUSED"

RAW_MB=24
FS_MB=24

group_weighted 1 1 1
# placement is under test, not the load rebalancer: a hot page it moves off
# its share (fio runs throughout) would keep set-servers from settling
ctl 1 balance off >/dev/null
for n in 1 2 3; do wait_links_up "$n" 2; done
ctl 1 volume create raw ${RAW_MB}M --page-size 1M >/dev/null
ctl 1 volume create fs ${FS_MB}M --page-size 1M >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)"
wait_path_exists "$T/mnt/fs" || fail "$T/mnt/fs did not appear"
raw=$(loop_attach "$T/mnt/raw")
fsdev=$(loop_attach "$T/mnt/fs")
mkfs.ext4 -q -F -E nodiscard "$fsdev" || fail "mkfs.ext4 failed"
mount_fs "$fsdev" "$T/fs"
make_random "$T/f" 1

# pages_of N ID: the pages member ID owns as server N's group show says.
pages_of()
{
	ctl "$1" group show --json | json "next(m['pages'] for m in d['members'] if m['id'] == $2)"
}

# write_files TAG: four copies of $T/f into the file system, synced.
write_files()
{
	local j
	for ((j = 0; j < 4; j++)); do
		cp "$T/f" "$T/fs/$1-$j"
		sync -f "$T/fs/$1-$j"
	done
}

# check_fs TAGS...: unmounted, fsck -fn clean, every file of TAGS intact;
# mounted again.
check_fs()
{
	local tag j
	umount "$T/fs" || fail "umount $T/fs failed"
	pv_forget mounts "$T/fs"
	fsck.ext4 -fn "$fsdev" >"$T/fsck.out" 2>&1 || { cat "$T/fsck.out" >&2; fail "fsck -fn is not clean"; }
	mount_fs "$fsdev" "$T/fs"
	for tag in "$@"; do
		for ((j = 0; j < 4; j++)); do
			cmp -s "$T/f" "$T/fs/$tag-$j" || fail "file $tag-$j differs"
		done
	done
	log "fsck clean, files ${*} intact"
}

before3=$(pages_of 1 3)
((before3 > 0)) || fail "server 3 owns no page before the evacuation"
rand_write_load "$T/load1.fio" "$raw" 101 ${RAW_MB}M 16M 1m
fio_bg load1 "$T/load1.fio"
write_files a &
cp_pid=$!
PV_PIDS+=("$cp_pid")
sleep 1
t0=$SECONDS
ctl_within 150 1 server evacuate 3 >"$T/evacuate.out" 2>&1 ||
	fail "server evacuate 3 failed: $(cat "$T/evacuate.out")"
log "server evacuate 3: $before3 pages moved off in $((SECONDS - t0)) s"
for n in 1 2 3; do
	assert_eq "$(pages_of "$n" 3)" 0 "pages of server 3 as server $n shows it after the evacuation"
done
wait_no_migrations 30 1 2 3
for vol in raw fs; do
	wait_routing_agree 30 "$vol" 1 2 3 # the same on all three, so one look will do
	grep -qw 3 <<<"$(owners_of 1 "$vol")" && fail "the routing of $vol still names server 3"
done
for vol in raw fs; do
	wait_for 15 "server 3's data file of $vol still holds data" holds_no_data "$(vol_file 3 "$vol")"
done
log "server 3 owns nothing and holds no data"
wait "$cp_pid" || fail "writing files during the evacuation failed"
fio_done load1
fio_verify_only verify1 "$T/load1.fio"
check_fs a

ctl 1 group leave 3 >"$T/leave.out" 2>&1 || fail "group leave 3 after the evacuation failed: $(cat "$T/leave.out")"
log "server 3 left: $(cat "$T/leave.out")"

# a fourth server joins and takes its share
run_peerd 4
ctl 4 group join "$(addr_of 1)" >/dev/null || fail "server 4 could not join"
wait_group_up 1 2 4
rand_write_load "$T/load2.fio" "$raw" 202 ${RAW_MB}M 16M 1m
fio_bg load2 "$T/load2.fio"
write_files b &
cp_pid=$!
PV_PIDS+=("$cp_pid")
for vol in raw fs; do
	t0=$SECONDS
	ctl_within 120 2 volume set-servers "$vol" 1,2,4 >"$T/set.out" 2>&1 ||
		fail "volume set-servers $vol 1,2,4 failed: $(cat "$T/set.out")"
	log "volume set-servers $vol 1,2,4: $((SECONDS - t0)) s"
done
wait_no_migrations 60 1 2 4
for vol in raw fs; do
	wait_routing_agree 30 "$vol" 1 2 4
	npages=$(ctl 1 volume show "$vol" --json | json "d['pages']")
	read -r s1 s2 s4 <<<"$(apportion "$npages" 1 1 1)"
	# shellcheck disable=SC2207
	owners=($(owners_of 1 "$vol"))
	for id in 1 2 4; do
		want=s$id
		got=$(tr ' ' '\n' <<<"${owners[*]}" | grep -cx "$id" || true)
		((got >= ${!want} - 2 && got <= ${!want} + 2)) ||
			fail "$vol: server $id owns $got pages after set-servers 1,2,4, its share is ${!want} (+-2)"
	done
	assert_eq "$(ctl 1 volume show "$vol" --json | json "sorted(d['servers'])")" "[1, 2, 4]" "servers of $vol"
	log "$vol: owners after set-servers: $(tr ' ' '\n' <<<"${owners[*]}" | sort | uniq -c | tr '\n' ' ') (shares $s1 $s2 $s4)"
	wait_no_stray 15 "$vol" 1 2 4
done
wait "$cp_pid" || fail "writing files during set-servers failed"
fio_done load2
fio_verify_only verify2 "$T/load2.fio"
check_fs a b
