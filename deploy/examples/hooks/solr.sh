#!/bin/sh
# understudy hooks for a Solr primary/replica pair using Solr's replication
# handler (user-managed index replication, not SolrCloud).
#
#   solr.sh promote CORE...     promote hook: serve the index to followers, stop polling
#   solr.sh demote CORE...      demote hook: stop serving, poll the primary again
#   solr.sh freshness CORE      freshness command: print the core's index generation (needs jq)
#
# Install as /usr/local/libexec/understudy/solr.sh (mode 0755); see
# deploy/examples/solr-primary.yaml and solr-replica.yaml.
#
# The agent runs it with UNDERSTUDY_SERVICE, UNDERSTUDY_HOST, UNDERSTUDY_ROLE,
# UNDERSTUDY_EPOCH, UNDERSTUDY_PREVIOUS_PRIMARY and UNDERSTUDY_REASON set, plus the
# agent's own environment (/etc/understudy/agent.env):
#
#   SOLR_URL         this host's Solr                  http://127.0.0.1:8983/solr
#   SOLR_CURL_OPTS   extra curl options, e.g. credentials:
#                    "--netrc-file /etc/understudy/solr.netrc"   (none)
#
# Both hosts configure /replication as leader and follower at once (a
# "repeater"), the follower polling the other host of the pair:
#
#   <requestHandler name="/replication" class="solr.ReplicationHandler">
#     <lst name="leader">
#       <str name="replicateAfter">startup</str>
#       <str name="replicateAfter">commit</str>
#     </lst>
#     <lst name="follower">
#       <str name="leaderUrl">${solr.peer.url}</str>  <!-- the other host's core -->
#       <str name="pollInterval">00:00:20</str>
#     </lst>
#   </requestHandler>
#
# and these hooks switch the roles at run time: the primary serves and does
# not poll, a standby polls and does not serve. With more than two hosts,
# point leaderUrl at an address that always reaches the primary (an HAProxy
# backend checking GET /primary/solr on the agents, see haproxy.cfg.tmpl).
# A restarted Solr starts as a repeater again; a primary whose Solr restarts
# fails its check and hands the role over, so the next term starts clean.
#
# Writes go only to the primary (clients follow it through the registry), so
# a standby never has documents of its own to lose when it polls.
set -eu

: "${SOLR_URL:=http://127.0.0.1:8983/solr}"
: "${SOLR_CURL_OPTS=}"

log() { printf 'solr hook: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# replication sends one command to a core's replication handler. It returns
# curl's exit status: 7 when Solr is not listening at all.
replication() {
	# shellcheck disable=SC2086 # SOLR_CURL_OPTS holds several options, split on purpose
	curl -fsS --max-time 5 $SOLR_CURL_OPTS -o /dev/null "$SOLR_URL/$1/replication?command=$2&wt=json"
}

promote() {
	[ $# -gt 0 ] || die "name the cores: solr.sh promote CORE..."
	log "promoting: epoch ${UNDERSTUDY_EPOCH:-?}, previous primary ${UNDERSTUDY_PREVIOUS_PRIMARY:-none}, ${UNDERSTUDY_REASON:-no reason given}"
	for core in "$@"; do
		# Stop following first: the old primary's index must not
		# replace this one once it is the primary.
		replication "$core" disablepoll || die "$core: disablepoll failed"
		replication "$core" enablereplication || die "$core: enablereplication failed"
		log "$core: leader (serving replication, not polling)"
	done
}

demote() {
	[ $# -gt 0 ] || die "name the cores: solr.sh demote CORE..."
	log "demoting: epoch ${UNDERSTUDY_EPOCH:-?}, ${UNDERSTUDY_REASON:-no reason given}"
	failed=
	for core in "$@"; do
		# Stop serving first, so no follower copies this index any more;
		# then poll the primary (leaderUrl) again.
		rc=0
		replication "$core" disablereplication || rc=$?
		if [ "$rc" -eq 7 ]; then
			log "$core: Solr is not running: nothing to demote"
			continue
		elif [ "$rc" -ne 0 ]; then
			failed="$failed $core"
			continue
		fi
		replication "$core" enablepoll || {
			failed="$failed $core"
			continue
		}
		log "$core: follower (polling the primary, not serving)"
	done
	[ -z "$failed" ] || die "could not demote:$failed"
}

freshness() {
	[ $# -eq 1 ] || die "name one core: solr.sh freshness CORE"
	# shellcheck disable=SC2086 # SOLR_CURL_OPTS holds several options, split on purpose
	curl -fsS --max-time 2 $SOLR_CURL_OPTS "$SOLR_URL/$1/replication?command=details&wt=json" |
		jq -e '.details.generation'
}

cmd=${1:-}
[ $# -eq 0 ] || shift
case $cmd in
promote) promote "$@" ;;
demote) demote "$@" ;;
freshness) freshness "$@" ;;
*)
	echo "usage: $0 promote|demote CORE... | freshness CORE" >&2
	exit 2
	;;
esac
