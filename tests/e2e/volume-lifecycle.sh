#!/usr/bin/env bash
# volume-lifecycle: peerctl creates, lists, shows and deletes volumes (human
# and --json output agree with docs/control-protocol.md); every bad input is
# refused with exit status 1, one clear line on stderr, and nothing changed;
# a restart on the same --data brings the volumes back.
. "$(dirname "$0")/common.sh"
need_bin "$PEERD" "$PEERCTL" "$PVRAW"
need_cmd python3

run_peerd 1 --max-volume-size 1G

# ---------------------------------------------------------------- create
out=$(ctl 1 volume create vol1 64M)
grep -q "created volume vol1" <<<"$out" || fail "create: unexpected output: $out"
log "create: $out"

ctl 1 --json volume create vol2 4G >/dev/null 2>&1 && fail "4G over --max-volume-size 1G was accepted"
# 512-byte multiples, suffixes, explicit page size
v=$(ctl 1 --json volume create small.vol_2-x 1536)
assert_eq "$(json 'd["name"]' <<<"$v")" small.vol_2-x "create --json name"
assert_eq "$(json 'd["size"]' <<<"$v")" 1536 "create --json size"
assert_eq "$(json 'd["pages"]' <<<"$v")" 1 "1536-byte volume pages"
v=$(ctl 1 --json volume create paged 8M --page-size 1M)
assert_eq "$(json 'd["page_size"]' <<<"$v")" 1048576 "--page-size 1M"
assert_eq "$(json 'd["pages"]' <<<"$v")" 8 "8M volume of 1M pages"
v=$(ctl 1 --json volume create maxsize 1G)
assert_eq "$(json 'd["size"]' <<<"$v")" 1073741824 "volume of exactly --max-volume-size"

# ---------------------------------------------------------------- show
v=$(ctl 1 --json volume show vol1)
assert_eq "$(json 'd["name"]' <<<"$v")" vol1 "show name"
assert_eq "$(json 'd["size"]' <<<"$v")" 67108864 "show size"
assert_eq "$(json 'd["page_size"]' <<<"$v")" 4194304 "default page size"
assert_eq "$(json 'd["pages"]' <<<"$v")" 16 "show pages"
assert_eq "$(json 'd["pages_written"]' <<<"$v")" 0 "pages_written of a new volume"
for key in id servers holders open_clients created bytes_allocated; do
	json "d[\"$key\"]" <<<"$v" >/dev/null || fail "volume show --json lacks '$key': $v"
done
human=$(ctl 1 volume show vol1)
grep -qiE '^ *size: .*64(\.0)? MiB' <<<"$human" || fail "volume show: no 'size: 64.0 MiB' line: $human"
grep -qiE '^ *page.?size: .*4(\.0)? MiB' <<<"$human" || fail "volume show: no page size line: $human"
v=$(ctl 1 --json volume show vol1 --routing)
routing=$(json 'd["routing"]' <<<"$v") || fail "volume show --routing --json has no routing: $v"
assert_eq "$(json 'd["routing"][0]["first_page"]' <<<"$v")" 0 "routing first_page"
assert_eq "$(json 'd["routing"][-1]["last_page"]' <<<"$v")" 15 "routing last_page"
assert_eq "$(json 'd["routing"][0]["owner"]' <<<"$v")" 1 "routing owner"
log "routing: $routing"
human=$(ctl 1 volume show vol1 --routing=full)
grep -qE '^ *PAGES +OWNER +EPOCH' <<<"$human" || fail "show --routing=full: no PAGES OWNER EPOCH table: $human"
grep -qE '^ *0-15 +1 ' <<<"$human" || fail "show --routing=full: no '0-15  1' row: $human"
# the default is a summary per owner: pages (share), bytes, runs
human=$(ctl 1 volume show vol1 --routing)
grep -qE '^ *OWNER +PAGES +BYTES +RUNS' <<<"$human" || fail "show --routing: no OWNER PAGES BYTES RUNS summary: $human"
grep -qE '^ *1 +16 \(100%\) +64(\.0)? MiB +1$' <<<"$human" || fail "show --routing: no '1  16 (100%)  64 MiB  1' row: $human"
grep -qE 'PAGES +OWNER +EPOCH' <<<"$human" && fail "show --routing printed the full table: $human"
expect_ctl_error 1 2 "routing takes no value or =full" volume show vol1 --routing=some

# ---------------------------------------------------------------- list
human=$(ctl 1 volume list)
grep -qE '^NAME +SIZE +PAGE +PAGES +WRITTEN +SERVERS +OPEN +STATE' <<<"$human" ||
	fail "volume list: no header line: $human"
for name in vol1 small.vol_2-x paged maxsize; do
	grep -qE "^$name " <<<"$human" || fail "volume list: no row for $name: $human"
done
assert_eq "$(tail -n +2 <<<"$human" | awk '{print $1}' | tr '\n' ' ')" "maxsize paged small.vol_2-x vol1 " "volume list rows sorted by name"

names=$(ctl 1 --json volume list | json '[v["name"] for v in d["volumes"]]')
assert_eq "$names" '["maxsize", "paged", "small.vol_2-x", "vol1"]' "volume list --json names"
[ -f "$(data_of 1)/volumes/vol1.vol" ] || fail "no data file $(data_of 1)/volumes/vol1.vol"

# ---------------------------------------------------------------- bad input
snapshot()
{
	ctl 1 --json volume list | json 'sorted((v["name"], v["size"], v["page_size"], v["id"]) for v in d["volumes"])'
}
before=$(snapshot)
files_before=$(ls "$(data_of 1)/volumes")

bad()
{
	# bad RC REGEX args...: refused, and the volume list did not change.
	expect_ctl_error 1 "$@"
	local after
	after=$(snapshot)
	[ "$after" = "$before" ] || fail "peerctl ${*:3} changed the volume list: $before -> $after"
}

bad 1 'greater than zero' volume create zero 0
bad 1 'multiple of 512' volume create odd 1000
bad 1 'multiple of 512' volume create odd2 513
bad 1 'larger than the maximum' volume create huge 2G
bad 1 'larger than the maximum' volume create huge2 1073742336
bad 6 'already exists' volume create vol1 64M
bad 6 'already exists' volume create vol1 128M
bad 6 'already exists' --json volume create vol1 64M
bad 1 "character '/'" volume create bad/name 1M
bad 1 "character ' '" volume create 'bad name' 1M
bad 1 "character '@'" volume create 'a@b' 1M
bad 1 "must not start with '\.'" volume create .hidden 1M
bad 1 "1 to 64 characters" volume create "$(printf 'n%.0s' {1..65})" 1M
bad 1 "1 to 64 characters" volume create '' 1M
# a name is echoed escaped (one line, nothing raw), naming the character
bad 1 "name 'a\\\\u0001b': character U\+0001 at position 2 is not allowed" volume create $'a\x01b' 1M
bad 1 "name 'a\\\\u000ab': character U\+000A at position 2" volume create $'a\nb' 1M
bad 1 "name 'caf\\\\u00e9': character U\+00E9 at position 4" volume create $'caf\xc3\xa9' 1M
bad 1 "name 'caf\\\\xe9': byte 0xE9 at position 4 is not UTF-8" volume create $'caf\xe9' 1M
bad 1 "name 'x\\\\u001b\[2J': character U\+001B at position 2" volume show $'x\x1b[2J'
bad 1 "size '99999999999999999999' is too large" volume create big 99999999999999999999
bad 1 "size '16384P' is too large" volume create big 16384P
bad 1 "address 'tcp://h\\\\xff:1' is not a ZeroMQ endpoint" group join $'tcp://h\xff:1'
bad 1 'suffix' volume create sfx 12X
bad 1 'not a number' volume create nan abc
bad 5 "(no volume|not found|does not exist|unknown volume).*nope|nope.*(no volume|not found|does not exist|unknown)" volume show nope
bad 5 "(no volume|not found|does not exist|unknown volume).*nope|nope.*(no volume|not found|does not exist|unknown)" volume delete nope
bad 5 "(no volume|not found|does not exist|unknown volume).*nope|nope.*(no volume|not found|does not exist|unknown)" volume delete nope --force
# usage errors: exit 2
bad 2 'unknown command' frobnicate
bad 2 "unknown command 'volum'; did you mean 'volume'\?" volum list
bad 2 "unknown command 'volume lsit'; did you mean 'volume list'\?" volume lsit
bad 1 "size '1.5G': whole numbers only" volume create dec 1.5G
bad 2 'argument' volume create onlyname
bad 2 'unknown option' volume create opt 1M --no-such-option
# a 64-character name is fine
long=$(printf 'l%.0s' {1..64})
ctl 1 volume create "$long" 1M >/dev/null || fail "a 64-character name was refused"
ctl 1 volume delete "$long" >/dev/null || fail "delete of the 64-character name failed"
[ "$(snapshot)" = "$before" ] || fail "volume list changed by create+delete of $long"
assert_eq "$(ls "$(data_of 1)/volumes")" "$files_before" "data files after the bad inputs"
assert_eq "$(ctl 1 --json volume show vol1 | json 'd["size"]')" 67108864 "vol1 size after a duplicate create"

# no control socket: a clear message, exit 1
EXPECT_RC=1 expect_fail_msg "no peerd control socket" "$PEERCTL" -s "$T/none.sock" status

# ---------------------------------------------------------------- restart keeps the catalog
stop_peerd 1
# the data file of a volume the catalog does not have (a delete that a
# crash cut short before the file was removed): moved aside at start, so a
# volume created later under the name starts empty, and kept, never
# destroyed on a guess
printf 'stale data of a deleted volume' | dd of="$(data_of 1)/volumes/ghost.vol" bs=1M conv=notrunc status=none
run_peerd 1 --max-volume-size 1G
assert_eq "$(snapshot)" "$before" "volume list after restart"
[ -e "$(data_of 1)/volumes/ghost.vol" ] && fail "the data file of a volume not in the catalog stayed in volumes/"
ls "$(data_of 1)"/orphans/ghost.vol.* >/dev/null 2>&1 || fail "the orphaned data file was not kept in orphans/"
grep -q "moved .*ghost.vol to .*orphans" "$T/peerd1.log" || fail "peerd did not log the orphaned data file"
ctl 1 volume create ghost 1M >/dev/null
got=$("$PVRAW" "$(addr_of 1)" read ghost 0 4096 "$T/ghost.read") || true
assert_eq "$got" OK "READ of the new volume ghost"
cmp -s "$T/ghost.read" <(head -c 4096 /dev/zero) || fail "a new volume shows the data of an orphaned file of its name"
ctl 1 volume delete ghost >/dev/null

# ---------------------------------------------------------------- delete
old_id=$(ctl 1 --json volume show vol1 | json 'd["id"]')
out=$(ctl 1 volume delete vol1)
grep -q "deleted volume vol1" <<<"$out" || fail "delete: unexpected output: $out"
out=$(ctl 1 --json volume delete paged)
assert_eq "$(json 'd["name"]' <<<"$out")" paged "delete --json name"
names=$(ctl 1 --json volume list | json 'sorted(v["name"] for v in d["volumes"])')
assert_eq "$names" '["maxsize", "small.vol_2-x"]' "volume list after deletes"
[ -e "$(data_of 1)/volumes/vol1.vol" ] && fail "data file of deleted vol1 still there"
expect_ctl_error 1 5 'vol1' volume show vol1
# the name can be used again, and the new volume starts empty with a new id
v=$(ctl 1 --json volume create vol1 32M)
assert_eq "$(json 'd["size"]' <<<"$v")" 33554432 "re-created vol1 size"
[ "$(json 'd["id"]' <<<"$v")" != "$old_id" ] || fail "a re-created volume reused id $old_id"

stop_peerd 1
