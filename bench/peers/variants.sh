# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash disable=SC2034 # the names are used by run.sh, which sources this
# How bench/run.sh starts each variant: sourced by it, not run. Every variant listens on
# 127.0.0.1:PORT (in run.sh's private network namespace) and forwards to the Unix socket
# $UPSTREAM: bench-backend's ($BACKEND_SOCK) in the main and scale phases, nginx's or caddy's in
# the http phase (run.sh's peer_start sets it). Each command runs in the foreground; run.sh puts
# it in its own session so that stopping it reaches every child (nginx workers, socat's
# per-connection processes).

# The order of the table and of the plots; direct is the limit every ratio is taken against.
# sr-auto is sockredir as installed: no --mode, so the default (auto). The one-process variants
# (-1w: --workers 1, haproxy-1t: nbthread 1, nginx-1p: worker_processes 1) are the other half
# of the http phase's comparison, every proxy at one process against every proxy at one per CPU;
# that phase runs them by default (run.sh's HTTP_VARIANTS), the others only when named:
# VARIANTS="direct sr-bpf sr-bpf-1w". The -base variants run another build, $SOCKREDIR_BASE, to
# compare a change with what it changes in the same run:
# SOCKREDIR_BASE=/tmp/old/sockredir VARIANTS="direct direct-tcp sr-bpf sr-bpf-base".
ALL_VARIANTS=(direct direct-tcp sr-auto sr-bpf sr-bpf-upload sr-splice sd-proxyd socat haproxy
	nginx)

declare -A VARIANT_TITLE=(
	[direct]="direct to the Unix backend"
	[direct-tcp]="direct to the same backend on TCP"
	[sr-auto]="sockredir (no --mode: auto)"
	[sr-auto-1w]="sockredir (no --mode: auto) --workers 1"
	[sr-auto-base]="sockredir (no --mode: auto), the \$SOCKREDIR_BASE build"
	[sr-auto-1w-base]="sockredir (no --mode: auto) --workers 1, the \$SOCKREDIR_BASE build"
	[sr-bpf]="sockredir --mode bpf"
	[sr-bpf-1w]="sockredir --mode bpf --workers 1"
	[sr-bpf-upload]="sockredir --mode bpf --kernel-upload --allow-unbounded-upload"
	[sr-splice]="sockredir --mode splice"
	[sr-splice-1w]="sockredir --mode splice --workers 1"
	[sr-bpf-base]="sockredir --mode bpf, the \$SOCKREDIR_BASE build"
	[sr-splice-base]="sockredir --mode splice, the \$SOCKREDIR_BASE build"
	[sd-proxyd]="systemd-socket-proxyd"
	[socat]="socat"
	[haproxy]="haproxy (mode tcp)"
	[haproxy-1t]="haproxy (mode tcp), nbthread 1"
	[nginx]="nginx (stream)"
	[nginx-1p]="nginx (stream), worker_processes 1"
)

declare -A VARIANT_PORT=(
	[direct-tcp]=9100 [sr-bpf]=9101 [sr-bpf-1w]=9108 [sr-bpf-upload]=9102 [sr-splice]=9103 [sd-proxyd]=9104
	[socat]=9105 [haproxy]=9106 [nginx]=9107 [sr-bpf-base]=9109 [sr-splice-base]=9110
	[sr-auto]=9111 [sr-auto-1w]=9112 [sr-splice-1w]=9113 [haproxy-1t]=9114 [nginx-1p]=9115
	[sr-auto-base]=9116 [sr-auto-1w-base]=9117
)

# sockredir runs socket-activated, as it would under systemd: systemd-socket-activate binds the
# port and execs it (same pid) at the first connection, which run.sh's probe makes.
# --drain-timeout only shortens the stop at the end of each measurement. --workers auto (one per
# CPU) as nginx's worker_processes auto and haproxy's default of one thread per CPU; the -1w
# variants add --workers 1, which overrides it.
sockredir_cmd() { # MODE-OPTIONS...
	CMD=(systemd-socket-activate -l "127.0.0.1:$PORT"
		"${SR_BIN:-$SOCKREDIR}" --name "$PIN_NAME" --workers auto "$@" --drain-timeout 2s \
		"$UPSTREAM")
}

# variant_cmd VARIANT: set the array CMD to the command line for VARIANT. The caller sets
# $PORT, $DIR (a scratch directory for this instance), $PIN_NAME and $UPSTREAM. direct-tcp is
# bench-backend itself; the http phase doesn't start it (its servers listen on TCP themselves).
variant_cmd() {
	case $1 in
	direct-tcp)
		# No proxy: the backend itself on TCP. What any proxy with TCP clients could reach
		# at best, since every variant below adds a TCP loopback leg to the Unix one.
		CMD=("$BACKEND" --listen "127.0.0.1:$PORT" --procs 2)
		;;
	sr-auto) sockredir_cmd ;;
	sr-auto-1w) sockredir_cmd --workers 1 ;;
	sr-auto-base) SR_BIN=$SOCKREDIR_BASE sockredir_cmd ;;
	sr-auto-1w-base) SR_BIN=$SOCKREDIR_BASE sockredir_cmd --workers 1 ;;
	sr-bpf) sockredir_cmd --mode bpf ;;
	sr-bpf-1w) sockredir_cmd --mode bpf --workers 1 ;;
	sr-bpf-upload) sockredir_cmd --mode bpf --kernel-upload --allow-unbounded-upload ;;
	sr-splice) sockredir_cmd --mode splice ;;
	sr-splice-1w) sockredir_cmd --mode splice --workers 1 ;;
	sr-bpf-base) SR_BIN=$SOCKREDIR_BASE sockredir_cmd --mode bpf ;;
	sr-splice-base) SR_BIN=$SOCKREDIR_BASE sockredir_cmd --mode splice ;;
	sd-proxyd)
		# The default --connections-max is 256, which would fail every scale level above
		# it; 10,000 is the highest level measured.
		CMD=(systemd-socket-activate -l "127.0.0.1:$PORT"
			/lib/systemd/systemd-socket-proxyd --connections-max=10000 "$UPSTREAM")
		;;
	socat)
		# One process per connection (fork); a 64 KiB transfer buffer instead of 8 KiB,
		# TCP_NODELAY like the others, and a listen backlog like the others'.
		CMD=(socat -b 65536
			"TCP-LISTEN:$PORT,bind=127.0.0.1,fork,reuseaddr,nodelay,backlog=4096"
			"UNIX-CONNECT:$UPSTREAM")
		;;
	haproxy | haproxy-1t)
		# haproxy-1t: "nbthread 1" added as the first line of the global section; haproxy
		# has no "auto" to write for the default, one thread per CPU.
		local threads=()
		[ "$1" = haproxy ] || threads=(-e 's/^global$/&\n\tnbthread 1/')
		sed -e "s|@PORT@|$PORT|g" -e "s|@BACKEND@|$UPSTREAM|g" -e "s|@DIR@|$DIR|g" \
			"${threads[@]}" "$BENCH/peers/haproxy.cfg" >"$DIR/haproxy.cfg"
		CMD=(haproxy -db -f "$DIR/haproxy.cfg")
		;;
	nginx | nginx-1p)
		local workers=auto
		[ "$1" = nginx ] || workers=1
		sed -e "s|@PORT@|$PORT|g" -e "s|@BACKEND@|$UPSTREAM|g" -e "s|@DIR@|$DIR|g" \
			-e "s|@WORKERS@|$workers|g" "$BENCH/peers/nginx.conf" >"$DIR/nginx.conf"
		CMD=(nginx -p "$DIR/" -c "$DIR/nginx.conf" -e "$DIR/nginx-error.log")
		;;
	*) return 1 ;;
	esac
}
