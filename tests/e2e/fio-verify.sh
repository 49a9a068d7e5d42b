#!/usr/bin/env bash
# fio-verify: fio with verify=crc32c on a loop device attached with
# --direct-io=on over a fused volume file: random 4 KiB writes and
# sequential 1 MiB writes are read back and verified with zero errors, once
# in the same run and once more after a fresh loop device and fused mount
# (so the blocks come from the server, not from any host cache).
. "$(dirname "$0")/common.sh"
need_fuse
need_loop
need_cmd fio python3
need_bin "$PEERD" "$PEERCTL" "$FUSED"

run_peerd 1
ctl 1 volume create vol 256M >/dev/null
mount_fused "$T/mnt" "$(addr_of 1)"
dev=$(loop_attach "$T/mnt/vol")

# rand: 16 MiB of 4 KiB random writes in the first 128 MiB;
# seq:  64 MiB of 1 MiB sequential writes in the last 128 MiB.
jobfile=$T/verify.fio
cat >"$jobfile" <<EOF
[global]
filename=$dev
direct=1
ioengine=libaio
verify=crc32c
verify_fatal=1
verify_dump=0
do_verify=1
randrepeat=1
randseed=4242
group_reporting=0

[rand]
rw=randwrite
bs=4k
iodepth=32
offset=0
size=128M
io_size=16M
norandommap=0

[seq]
stonewall
rw=write
bs=1M
iodepth=8
offset=128M
size=64M
EOF

check_fio()
{
	# check_fio JSON WHAT: every job without error and with verified reads.
	"$PYTHON" - "$1" "$2" <<'EOF' || fail "$2: fio reported errors (see $1)"
import json, sys
d = json.load(open(sys.argv[1]))
bad = False
for j in d["jobs"]:
    print("%s: %s error=%d read=%d KiB write=%d KiB" % (
        sys.argv[2], j["jobname"], j["error"], j["read"]["io_kbytes"], j["write"]["io_kbytes"]))
    if j["error"] != 0 or j["read"]["io_kbytes"] == 0:
        bad = True
sys.exit(1 if bad else 0)
EOF
}

run_fio()
{
	local what=$1 json=$T/fio-$1.json
	shift
	log "fio $what"
	# in $T: fio may leave verify state files in its working directory
	(cd "$T" && timeout 120 fio --verify_state_save=0 --output-format=json --output="$json" "$@" "$jobfile") ||
		{ cat "$json" >&2; fail "fio $what exited non-zero"; }
	check_fio "$json" "$what"
}

run_fio write-and-verify

loop_detach "$dev"
umount_fused "$T/mnt"
mount_fused "$T/mnt2" "$(addr_of 1)"
dev=$(loop_attach "$T/mnt2/vol")
sed -i "s|^filename=.*|filename=$dev|" "$jobfile"
run_fio verify-only --verify_only
