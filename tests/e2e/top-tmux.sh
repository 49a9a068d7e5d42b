#!/usr/bin/env bash
# top-tmux: 'peerctl top' on a terminal (a tmux pane of its own tmux
# server, under $T): it shows every server of the group (a group of two,
# one volume over both), redraws every second (two captures of the pane
# a little over a second apart differ, and both show the servers), and q
# quits it with exit 0.
. "$(dirname "$0")/common.sh"
. "$(dirname "$0")/group-lib.sh"
need_cmd tmux
need_bin "$PEERD" "$PEERCTL"
TMUX_SOCK=$T/tmux.sock
tm() { tmux -S "$TMUX_SOCK" -f /dev/null "$@"; }

# pane: what the pane shows now.
pane() { tm capture-pane -p -t top; }

# shows_servers TEXT: whether TEXT has the header and a line for server 1
# and server 2, each with its 16 pages (else prints TEXT).
shows_servers()
{
	grep -q '^peervol top ' <<<"$1" && grep -qE '^ *SERVER +READ/s' <<<"$1" &&
		grep -qE '^ *1 .* 16$' <<<"$1" && grep -qE '^ *2 .* 16$' <<<"$1" ||
		{ echo "$1"; return 1; }
}

# top_shows: shows_servers on the pane now.
top_shows() { shows_servers "$(pane)"; }

group_weighted 1 1
ctl 1 volume create vol 32M --page-size 1M >/dev/null

# a detached session 160x50; its exit status goes to $T/top.rc
TERM=xterm-256color tm new-session -d -s top -x 160 -y 50 \
	"'$PEERCTL' -s '$(sock_of 2)' top; echo \$? >'$T/top.rc'"
pid=$(tm display-message -p -t top '#{pid}') # the tmux server: cleanup ends it
pv_record pids "$pid"
PV_PIDS+=("$pid")
log "tmux server $pid runs peerctl top on server 2"

wait_for 10 "peerctl top does not show both servers" top_shows >/dev/null
first=$(pane)
sleep 1.3
second=$(pane)
shows_servers "$second" >/dev/null || fail "after a redraw, top does not show both servers: $second"
[ "$first" != "$second" ] || fail "peerctl top did not redraw in 1.3 s: $second"
log "top shows servers 1 and 2 and redraws:"
printf '%s\n' "$second" | sed '/^$/d' >&2

tm send-keys -t top q
wait_path_exists "$T/top.rc" 10 || fail "peerctl top did not quit on q: $(pane)"
assert_eq "$(cat "$T/top.rc")" 0 "peerctl top's exit status after q"
log "q quit peerctl top (exit 0)"
