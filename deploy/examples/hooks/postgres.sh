#!/bin/sh
# understudy hooks for a PostgreSQL primary/replica pair (PostgreSQL 12 or later).
#
#   postgres.sh promote     promote hook: make this server the primary (pg_ctl promote)
#   postgres.sh demote      demote hook: fence this server; it comes back only as a standby
#   postgres.sh freshness   freshness command: print this server's WAL position in bytes
#   postgres.sh check       health check: the server answers, and is not in
#                           recovery while this host is the elected primary
#
# Install as /usr/local/libexec/understudy/postgres.sh (mode 0755); see
# deploy/examples/postgres-primary.yaml and postgres-replica.yaml.
#
# The agent runs it with UNDERSTUDY_SERVICE, UNDERSTUDY_HOST, UNDERSTUDY_ROLE,
# UNDERSTUDY_EPOCH, UNDERSTUDY_PREVIOUS_PRIMARY and UNDERSTUDY_REASON set, plus the
# agent's own environment: set the variables below in /etc/understudy/agent.env.
#
#   PGDATA           data directory                    /var/lib/postgresql/16/main
#   PG_BINDIR        directory holding pg_ctl          /usr/lib/postgresql/16/bin
#   PG_AS            prefix that runs a command as the data directory's owner;
#                    empty when the agent itself runs as that user
#                                                      sudo -n -u postgres
#   PG_STOP_TIMEOUT  seconds a graceful (fast) shutdown may take before an
#                    immediate one                     20
#   PG_PROMOTE_TIMEOUT  seconds pg_ctl promote waits at most; it never waits
#                    past UNDERSTUDY_DEADLINE_MS, the promote window the
#                    agent gives (ttl - fence_margin)  5
#   PGHOST, PGPORT, PGUSER, PGDATABASE  how psql connects (libpq); by default
#                    the local socket, as the agent's OS user (role understudy),
#                    database postgres
#   UNDERSTUDY_AGENT_URL  the agent's role endpoints (http_addr)
#                                                      http://127.0.0.1:7422
#
# One-time setup on both hosts:
#   - a login role for the agent's user, peer-authenticated over the local socket
#     (the functions used here need no privileges):
#       CREATE ROLE understudy LOGIN;
#   - sudo rights for PG_AS: deploy/examples/hooks/understudy.sudoers
#   - PostgreSQL always starts as a standby (deploy/systemd/postgresql-standby.conf),
#     so that only this promote hook ever makes a primary, and
#     primary_conninfo names the other host of the pair (a standby follows it
#     across timelines: recovery_target_timeline is latest by default).
#
# Fencing: the demote hook writes standby.signal and stops the server, so it
# accepts no more writes, and whatever starts it again (systemd, a reboot, an
# operator) brings it up read-only. It does not restart it: after a failover
# or a switchover, rejoin the old primary as a standby by hand
# (deploy/OPERATIONS.md, "PostgreSQL: rejoin the old primary").
set -eu

: "${PGDATA:=/var/lib/postgresql/16/main}"
: "${PG_BINDIR:=/usr/lib/postgresql/16/bin}"
: "${PG_AS=sudo -n -u postgres}"
: "${PG_STOP_TIMEOUT:=20}"
: "${PG_PROMOTE_TIMEOUT:=5}"
: "${PGDATABASE:=postgres}"
export PGDATABASE
: "${UNDERSTUDY_AGENT_URL:=http://127.0.0.1:7422}"

log() { printf 'postgres hook: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# as_owner runs a command as the owner of the data directory.
as_owner() {
	# shellcheck disable=SC2086 # PG_AS is a command prefix, split on purpose
	$PG_AS "$@"
}

ctl() { as_owner "$PG_BINDIR/pg_ctl" "$@"; }

# running succeeds while a server runs on PGDATA and fails when none does
# (pg_ctl status exits 3); anything else, such as sudo refusing, is an error.
running() {
	rc=0
	ctl status -D "$PGDATA" >/dev/null 2>&1 || rc=$?
	case $rc in
	0) return 0 ;;
	3) return 1 ;;
	*) die "cannot tell whether PostgreSQL runs: pg_ctl status exited $rc" ;;
	esac
}

sql() { psql -qtAX -v ON_ERROR_STOP=1 -c "$1"; }

# state prints primary, standby or down.
state() {
	if ! r=$(sql 'select pg_is_in_recovery()' 2>/dev/null); then
		echo down
	elif [ "$r" = f ]; then
		echo primary
	else
		echo standby
	fi
}

promote() {
	case $(state) in
	primary)
		log "already primary: nothing to do (epoch ${UNDERSTUDY_EPOCH:-?})"
		return 0
		;;
	down) die "PostgreSQL does not answer: cannot promote" ;;
	esac
	log "promoting: epoch ${UNDERSTUDY_EPOCH:-?}, previous primary ${UNDERSTUDY_PREVIOUS_PRIMARY:-none}, ${UNDERSTUDY_REASON:-no reason given}"
	wait=$PG_PROMOTE_TIMEOUT
	if [ -n "${UNDERSTUDY_DEADLINE_MS:-}" ]; then
		# Leave a second of the window to read the state back.
		left=$(( UNDERSTUDY_DEADLINE_MS / 1000 - 1 ))
		[ "$left" -ge 1 ] || die "no time left in the promote window (${UNDERSTUDY_DEADLINE_MS}ms)"
		[ "$left" -lt "$wait" ] && wait=$left
	fi
	ctl promote -D "$PGDATA" -w -t "$wait"
	[ "$(state)" = primary ] || die "still in recovery after pg_ctl promote"
	log "promoted"
}

demote() {
	reason=${UNDERSTUDY_REASON:-}
	# A planned handover or a failed check may take a fast shutdown (clients
	# are disconnected, WAL is flushed to the standby); anything else - the
	# lease is running out, the role was lost, a promotion failed half way -
	# means another host may be promoted any moment: stop at once.
	case $reason in
	switchover | "check failed" | shutdown) mode=fast ;;
	*) mode=immediate ;;
	esac
	log "fencing: epoch ${UNDERSTUDY_EPOCH:-?}, ${reason:-no reason given}; $mode shutdown"
	# Whatever starts this server again starts a standby. Stopping it
	# matters more, so a failure here is reported only at the end.
	signal=ok
	as_owner touch "$PGDATA/standby.signal" || signal=failed
	stop "$mode"
	[ "$signal" = ok ] || die "stopped, but could not write $PGDATA/standby.signal: the next start would be a primary"
}

stop() {
	if ! running; then
		log "not running: fenced already"
		return 0
	fi
	if ctl stop -D "$PGDATA" -m "$1" -w -t "$PG_STOP_TIMEOUT"; then
		log "stopped"
		return 0
	fi
	running || return 0 # it stopped meanwhile
	if [ "$1" = fast ]; then
		log "fast shutdown did not end within ${PG_STOP_TIMEOUT}s: stopping immediately"
		ctl stop -D "$PGDATA" -m immediate -w -t 10 && return 0
		running || return 0
	fi
	die "PostgreSQL is still running"
}

freshness() {
	# Bytes of WAL: what a standby has received (or replayed), what a primary has written.
	sql "select pg_wal_lsn_diff(case when pg_is_in_recovery()
		then coalesce(greatest(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), '0/0')
		else pg_current_wal_lsn() end, '0/0')::bigint"
}

# check passes while PostgreSQL answers. It fails when this host is the
# acting primary but the server is in recovery (it was restarted, and came
# back as a standby): the role must move to a host that can take writes.
check() {
	service=${UNDERSTUDY_SERVICE:-postgres}
	s=$(state)
	if [ "$s" = down ]; then
		echo "PostgreSQL does not answer"
		return 1
	fi
	# 200: this host is the acting primary; 503 or 404: it is not; 000:
	# the agent's endpoints are off (http_addr: off), so nothing to compare.
	code=$(curl -s -o /dev/null --max-time 0.5 -w '%{http_code}' "$UNDERSTUDY_AGENT_URL/primary/$service" || true)
	# (A primary that is not elected passes: an agent restarting on the
	# primary checks before it resumes the role.)
	if [ "$s:$code" = standby:200 ]; then
		echo "elected primary, but PostgreSQL is in recovery"
		return 1
	fi
	echo "$s"
}

case ${1:-} in
promote) promote ;;
demote) demote ;;
freshness) freshness ;;
check) check ;;
*)
	echo "usage: $0 promote|demote|freshness|check" >&2
	exit 2
	;;
esac
