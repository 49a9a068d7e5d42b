#!/usr/bin/env bash
# peerd-help: --help of peerd, fused, peerctl and peerctl's commands exits 0,
# prints on stdout and mentions every documented option and command; the
# man pages, where they exist, mention the same options.
. "$(dirname "$0")/common.sh"
need_bin "$PEERD" "$PEERCTL" "$FUSED"

# check_help WHAT WORD... -- CMD...: CMD exits 0 and its stdout has each WORD.
check_help()
{
	local what=$1 words=() w out rc
	shift
	while [ "$1" != -- ]; do
		words+=("$1")
		shift
	done
	shift
	out=$("$@" 2>"$T/help.err") && rc=0 || rc=$?
	[ "$rc" = 0 ] || fail "$what: exit $rc (stderr: $(cat "$T/help.err"))"
	[ -n "$out" ] || fail "$what: nothing on stdout (stderr: $(head -c 300 "$T/help.err"))"
	for w in "${words[@]}"; do
		grep -qF -- "$w" <<<"$out" || fail "$what does not mention '$w':
$out"
	done
	log "ok: $what mentions ${words[*]}"
}

# check_man FILE WORD...: a man page source that exists mentions each WORD.
check_man()
{
	local file=$PV_REPO/$1 w text
	shift
	if [ ! -s "$file" ]; then
		log "note: no man page $file yet"
		return 0
	fi
	text=$(sed 's/\\-/-/g; s/\\f[BIRP]//g' "$file")
	for w in "$@"; do
		grep -qF -- "$w" <<<"$text" || fail "man page $file does not mention '$w'"
	done
	log "ok: $file mentions $*"
}

PEERD_OPTS=(--id --listen --data --control --weight --max-volume-size --workers --daemon --debug --help)
check_help "peerd --help" "${PEERD_OPTS[@]}" -- "$PEERD" --help
check_man peerd/peerd.8 "${PEERD_OPTS[@]:0:9}"
# peerd rejects what it does not know, with a usage error
expect_fail_msg "--no-such-option" "$PEERD" --no-such-option
# the link options (the bounds of issue 18), and their limits
LINK_OPTS=(--link-port --link-memory --link-per-source)
check_help "peerd --help (links)" "${LINK_OPTS[@]}" -- "$PEERD" --help
check_man peerd/peerd.8 "${LINK_OPTS[@]}"
expect_fail_msg "at least 16M" "$PEERD" --link-memory 1M
expect_fail_msg "--link-per-source must be" "$PEERD" --link-per-source 0
# the load monitor and the metrics endpoint (issue 14)
check_help "peerd --help (load, metrics)" --no-load-monitor --metrics-listen -- "$PEERD" --help
check_man peerd/peerd.8 --no-load-monitor --metrics-listen
EXPECT_RC=2 expect_fail_msg "--metrics-listen must be IP:PORT" "$PEERD" --metrics-listen localhost:80
EXPECT_RC=2 expect_fail_msg "--metrics-listen must be IP:PORT" "$PEERD" --metrics-listen 127.0.0.1:0

FUSED_OPTS=(--group --timeout --max-background -f -d)
check_help "fused --help" "${FUSED_OPTS[@]}" -- "$FUSED" --help
check_man fused/fused.8 --group --timeout --max-background

check_help "peerctl --help" -s --json --timeout status volume group create list show delete init join -- "$PEERCTL" --help
check_man peerd/ctl/peerctl.8 --json --page-size --servers --routing --force
check_help "peerctl volume create --help" --page-size --servers NAME SIZE -- "$PEERCTL" volume create --help
check_help "peerctl volume show --help" --routing NAME -- "$PEERCTL" volume show --help
check_help "peerctl volume delete --help" --force NAME -- "$PEERCTL" volume delete --help
check_help "peerctl volume list --help" list -- "$PEERCTL" volume list --help
check_help "peerctl status --help" status -- "$PEERCTL" status --help
check_help "peerctl group join --help" ADDR -- "$PEERCTL" group join --help
check_help "peerctl group show --help" show -- "$PEERCTL" group show --help
# snapshots (issue 15): the commands, their options, and the man pages
check_help "peerctl --help (snapshots)" "snapshot create" "snapshot list" "snapshot show" \
	"snapshot delete" "snapshot rollback" "snapshot diff" --with-snapshots -- "$PEERCTL" --help
check_help "peerctl snapshot --help" create list show delete rollback diff -- "$PEERCTL" snapshot --help
check_help "peerctl snapshot create --help" --mode --timeout hold timestamp VOLUME NAME -- \
	"$PEERCTL" snapshot create --help
check_help "peerctl snapshot rollback --help" --force -- "$PEERCTL" snapshot rollback --help
check_help "peerctl snapshot diff --help" --from OLDER -- "$PEERCTL" snapshot diff --help
check_help "peerctl volume delete --help (snapshots)" --with-snapshots -- "$PEERCTL" volume delete --help
check_man peerd/ctl/peerctl.8 "snapshot create" "snapshot list" "snapshot show" "snapshot delete" \
	"snapshot rollback" "snapshot diff" --mode --timeout --from --with-snapshots
check_man fused/fused.8 "Snapshot files" 0444 EROFS ESTALE "losetup -r"

# usage errors exit 2 with a one-line message
EXPECT_RC=2 expect_fail_msg "peerctl:" "$PEERCTL"
EXPECT_RC=2 expect_fail_msg "unknown command" "$PEERCTL" -s "$T/x.sock" nosuchcommand
