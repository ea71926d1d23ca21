// Package guard is the fence of a primary that does not need the agent's
// loop: a small process of its own that runs a service's demote hook by the
// fence point the agent last gave it, should the agent stop renewing it.
//
// A real service (PostgreSQL) never asks the agent before a write. If the
// agent is frozen (SIGSTOP), deadlocked or killed, nothing in it demotes the
// service, while a standby elsewhere is promoted once the lease expires: two
// writable primaries. The agent therefore feeds the guard, after every lease
// renewal, with a fence point: the instant by which this host must have
// stopped acting as primary, a margin before its lease could expire. If the
// feeding stops, the guard demotes the service itself by that instant.
//
// # Protocol
//
// JSON lines over a unix stream socket (mode 0600 in a 0700 directory): one
// request line, one response line, any number of requests per connection and
// any number of connections. Requests:
//
//	{"op":"arm","service":S,"epoch":E,"fence_in_ms":N,"fence_at_mono_ns":M,"demote":[argv...],"env":["K=V",...],"timeout_ms":T}
//	{"op":"disarm","service":S,"epoch":E}
//	{"op":"status"}
//
// Response:
//
//	{"ok":true}
//	{"ok":false,"error":"...","code":"stale_epoch"|"demoted"|"demoting"|"bad_request"}
//	{"ok":true,"services":[{"service":S,"epoch":E,"armed":true,"fence_in_ms":N,
//	  "demoting":false,"attempts":0,"fired":false,"fired_epoch":0,
//	  "fired_at":"RFC 3339","demote_error":"..."}]}
//
// A status's fence_in_ms is what is left until the fence point (negative once
// it passed), demoting says a demote hook is running, attempts counts the
// demote hook's runs for the armed epoch, fired/fired_epoch/fired_at record
// the guard's last successful demote and demote_error its last failure.
//
// No wall-clock instant crosses the socket: the fence point travels as an
// instant on the host's CLOCK_MONOTONIC (fence_at_mono_ns), which every
// process of the host shares and no clock step moves, with fence_in as the
// fallback for a peer that cannot read it. The guard turns it into a fence
// point on its own monotonic clock at receipt, taking off whatever delayed
// the request (the agent frozen right after making it, a redial), so a fence
// point is never later than the agent meant.
//
// # Semantics
//
//   - arm(S, E, fence_in): this host may act as primary of S at epoch E until
//     receipt + fence_in. The same epoch again replaces the fence point
//     (extends or shortens it); a higher epoch replaces the whole state (argv,
//     env, timeout) and stops the retries of a failing demote. An epoch lower
//     than the last one armed is refused (code stale_epoch). fence_in ≤ 0
//     means "fire now".
//   - A fence point is final: the same epoch arriving after its fence point
//     passed is refused (code demoting) while the guard demotes, and once the
//     guard's demote succeeded (code demoted), so that an agent that wakes up
//     late learns that its term is over on this host. A higher epoch is refused
//     (code demoting) only while a demote hook is actually running, so that a
//     new term's promote hook never overlaps the old term's demote hook.
//   - When an armed fence point passes, the guard runs the demote argv (no
//     shell) with os.Environ(), the armed env, UNDERSTUDY_SERVICE,
//     UNDERSTUDY_EPOCH, UNDERSTUDY_ROLE=standby and UNDERSTUDY_REASON, bounded
//     by the armed timeout (DefaultDemoteTimeout when 0). A failure (the service
//     is restarting, say) is retried every RetryInterval until it succeeds or
//     a disarm or a higher epoch arrives. On success the service is "fired":
//     not armed any more, with the time and epoch recorded and logged.
//   - disarm(S, E) with E at least the armed epoch: S is not armed any more
//     (the agent demoted the service itself). A lower epoch changes nothing.
//     A demote hook already running is left to finish: killing a demote half
//     way would leave the service in a worse state than either outcome.
//   - A closed connection changes nothing: the guard keeps its fence points,
//     which is the whole point. A restarted agent dials the same guard again.
//   - A guard stopped gracefully (SIGTERM, ctx cancelled) while services are
//     armed demotes them before it exits, whatever their fence points: nothing
//     else would fence them once it is gone. A SIGKILLed guard cannot; the
//     watchdog below covers that.
//
// # Watchdog
//
// With Config.Watchdog set (/dev/watchdog of a hardware watchdog or softdog),
// the guard opens it on the first arm, sets its timeout (WDIOC_SETTIMEOUT),
// and pets it every WatchdogInterval while, for every armed service, the fence
// point is still ahead (a service whose demote succeeded is not armed). Once a
// fence point has passed and its demote has not succeeded, it stops petting,
// and the kernel resets the host within the timeout: the last fence when the
// demote hook cannot stop the service. A frozen or killed guard stops petting
// too. When nothing is armed any more it writes the magic "V" and closes the
// device, which disarms the kernel's timer.
package guard
