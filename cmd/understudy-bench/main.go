// Command understudy-bench measures how fast a registry server fans one etcd
// change out to many Watch subscribers, and what each subscriber costs the
// server in resident memory.
//
// It runs the real binary (`understudy server`, one embedded etcd member on
// loopback) as a subprocess, so that the memory figures are the server's
// alone and the latency includes the real etcd commit and gRPC path. For each
// subscriber count it starts a fresh server, attaches that many Watch streams,
// then writes one instance record at a time straight to etcd and times how
// long the last subscriber takes to see it.
//
// Then, against one more fresh server, it measures failover of a
// primary-mode service between three in-process agents with no-op hooks, as
// one Watch subscriber sees it: graceful switchover, check-failure handoff,
// a crash (the primary's etcd connection blackholed; its lease expires after
// the TTL), and etcd's own election recipe on the same member as the floor.
//
// Usage:
//
//	understudy-bench -understudy bin/understudy [-subscribers 100,1000] [-writes 200]
//	    [-failover-runs 50] [-failover-crash-runs 20] [-json FILE]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command's flags.
type options struct {
	binary        string
	subscribers   []int
	writes        int
	warmup        int
	perConn       int
	writeTimeout  time.Duration
	attachTimeout time.Duration
	timeout       time.Duration
	jsonPath      string
	logDir        string
	failoverRuns  int // each fast failover kind; 0 skips the failover part
	crashRuns     int // crash failovers, each costing about TTL + re-registration
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "understudy-bench:", err)
		os.Exit(2)
	}
	if err := run(opts); err != nil {
		fmt.Fprintln(os.Stderr, "understudy-bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("understudy-bench", flag.ContinueOnError)
	fs.StringVar(&o.binary, "understudy", "bin/understudy", "path of the understudy binary to benchmark")
	subs := fs.String("subscribers", "100,1000", "comma-separated subscriber counts; each gets a fresh server; 0 skips the fan-out part")
	fs.IntVar(&o.writes, "writes", 200, "measured writes per subscriber count, each waited for before the next")
	fs.IntVar(&o.warmup, "warmup", 10, "unmeasured writes before the measured ones (warms connections and caches)")
	fs.IntVar(&o.perConn, "streams-per-conn", 100, "Watch streams sharing one gRPC connection")
	fs.DurationVar(&o.writeTimeout, "write-timeout", 10*time.Second, "how long one write may take to reach every subscriber")
	fs.DurationVar(&o.attachTimeout, "attach-timeout", 2*time.Minute, "how long attaching all subscribers may take")
	fs.IntVar(&o.failoverRuns, "failover-runs", 50, "measured runs of each fast failover kind (switchover, check failure, etcd floor); 0 skips the failover part")
	fs.IntVar(&o.crashRuns, "failover-crash-runs", 20, "measured crash failovers (each about TTL 2s plus re-registration); 0 skips them")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Minute, "bound on the whole run")
	fs.StringVar(&o.jsonPath, "json", "", "also write the figures as JSON to this file")
	fs.StringVar(&o.logDir, "server-log-dir", "", "keep each server's output as DIR/server-<subscribers>.log, the failover part's as DIR/server-failover.log and DIR/agents-failover.log (default: discarded)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var err error
	if strings.TrimSpace(*subs) != "0" {
		if o.subscribers, err = parseCounts(*subs); err != nil {
			return o, fmt.Errorf("-subscribers: %w", err)
		}
	}
	switch {
	case o.failoverRuns < 0 || o.crashRuns < 0:
		return o, errors.New("-failover-runs and -failover-crash-runs must not be negative")
	case o.failoverRuns == 0 && len(o.subscribers) == 0:
		return o, errors.New("nothing to measure: -subscribers 0 and -failover-runs 0")
	case o.writes < 1:
		return o, errors.New("-writes must be at least 1")
	case o.warmup < 0:
		return o, errors.New("-warmup must not be negative")
	case o.perConn < 1:
		return o, errors.New("-streams-per-conn must be at least 1")
	case o.writeTimeout <= 0 || o.attachTimeout <= 0 || o.timeout <= 0:
		return o, errors.New("timeouts must be positive")
	}
	return o, nil
}

// parseCounts parses "100,1000" into positive integers.
func parseCounts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(opts options) error {
	raiseFileLimit()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, opts.timeout)
	defer cancel()

	explain := func(err error) error {
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			return fmt.Errorf("%w (the whole run is bounded by -timeout %v)", err, opts.timeout)
		case ctx.Err() != nil:
			return fmt.Errorf("%w (interrupted)", err)
		}
		return err
	}
	var results []result
	for _, n := range opts.subscribers {
		r, err := benchOne(ctx, opts, n)
		if err != nil {
			return fmt.Errorf("%d subscribers: %w", n, explain(err))
		}
		results = append(results, r)
	}
	if len(results) > 0 {
		if err := printTable(os.Stdout, opts, results); err != nil {
			return err
		}
	}
	var failover *jsonFailover
	if opts.failoverRuns > 0 {
		fr, err := benchFailover(ctx, opts)
		if err != nil {
			return fmt.Errorf("failover: %w", explain(err))
		}
		if len(results) > 0 {
			fmt.Println()
		}
		if err := printFailoverTable(os.Stdout, fr); err != nil {
			return err
		}
		failover = fr.json()
	}
	if opts.jsonPath != "" {
		if err := writeJSON(opts.jsonPath, opts, results, failover); err != nil {
			return err
		}
	}
	return nil
}

// benchOne measures n subscribers against a fresh server, so that the memory
// figures are not blurred by what an earlier round left on the server's heap.
func benchOne(ctx context.Context, opts options, n int) (res result, err error) {
	progress("%d subscribers: starting %s server", n, opts.binary)
	srv, err := startServer(ctx, opts.binary, opts.logDir, strconv.Itoa(n))
	if err != nil {
		return res, err
	}
	defer func() {
		if serr := srv.stop(); serr != nil {
			progress("%d subscribers: server did not stop cleanly: %v", n, serr)
		}
	}()

	w, err := newWriter(srv.etcdURL)
	if err != nil {
		return res, err
	}
	defer w.close()
	// The record exists before anyone subscribes, so every snapshot carries
	// the service and "RSS before" already includes its view.
	if _, err := w.put(ctx, 0); err != nil {
		return res, err
	}
	if err := waitForView(ctx, srv.grpcAddr); err != nil {
		return res, err
	}

	res.subscribers = n
	if res.rssBefore, err = srv.rss(); err != nil {
		return res, err
	}
	start := time.Now()
	f, err := attach(ctx, srv.grpcAddr, n, opts.perConn, opts.attachTimeout)
	if err != nil {
		return res, fmt.Errorf("attaching subscribers: %w%s", err, srv.logTail(20))
	}
	defer f.close()
	if res.rssAfter, err = srv.rss(); err != nil {
		return res, err
	}
	progress("%d subscribers: attached in %v; server RSS %s → %s", n, time.Since(start).Round(time.Millisecond),
		fmtBytes(res.rssBefore), fmtBytes(res.rssAfter))

	seq := int64(0)
	for i := range opts.warmup + opts.writes {
		seq++
		s, err := f.measure(ctx, w, seq, opts.writeTimeout)
		if err != nil {
			return res, fmt.Errorf("write %d: %w%s", seq, err, srv.logTail(20))
		}
		if i >= opts.warmup {
			res.samples = append(res.samples, s)
		}
	}
	progress("%d subscribers: %d writes done", n, opts.writes)
	return res, nil
}

// raiseFileLimit lifts the soft open-files limit to the hard one: a thousand
// streams share few connections, but the etcd client, the server's own
// sockets and the Go runtime add up, and a low soft limit fails late and
// confusingly.
func raiseFileLimit() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur >= lim.Max {
		return
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		progress("cannot raise the open-files limit: %v", err)
	}
}

// progress reports what the bench is doing on stderr, keeping stdout for the table.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
