// Command understudy-chaos runs the chaos suite on the containerised
// five-host topology (make chaos ROUNDS=N SEED=S): it brings the topology
// up, injects faults in seeded random order while writers and watchers
// follow the demo database's primary, checks every invariant, prints a
// table per fault kind and writes the whole report as JSON. It exits 1 when
// any invariant broke.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/understudy-dev/understudy/e2e/chaos"
	"github.com/understudy-dev/understudy/e2e/cluster"
)

func main() {
	rounds := flag.Int("rounds", 100, "fault rounds")
	seed := flag.Uint64("seed", 0, "orders the faults (0: from the clock)")
	kinds := flag.String("kinds", "", "comma-separated fault kinds (default all: "+strings.Join(chaos.Kinds, ",")+")")
	mode := flag.String("mode", cluster.ModeNoAsk, "demo database: noask takes writes like PostgreSQL until demoted; ask asks its agent before each write")
	jsonOut := flag.String("json", "bin/chaos.json", "where to write the JSON report")
	keep := flag.Bool("keep", false, "leave the topology running afterwards")
	verbose := flag.Bool("v", false, "print every docker command")
	flag.Parse()
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	var ks []string
	if *kinds != "" {
		ks = strings.Split(*kinds, ",")
	}
	if *mode != cluster.ModeAsk && *mode != cluster.ModeNoAsk {
		fmt.Fprintf(os.Stderr, "understudy-chaos: -mode %q: want %s or %s\n", *mode, cluster.ModeAsk, cluster.ModeNoAsk)
		os.Exit(2)
	}
	code, err := run(*rounds, *seed, *mode, ks, *jsonOut, *keep, *verbose)
	if err != nil {
		fmt.Fprintln(os.Stderr, "understudy-chaos:", err)
		os.Exit(2)
	}
	os.Exit(code)
}

func run(rounds int, seed uint64, mode string, kinds []string, jsonOut string, keep, verbose bool) (int, error) {
	if err := cluster.Available(); err != nil {
		return 0, err
	}
	root, err := cluster.RepoRoot()
	if err != nil {
		return 0, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(format string, args ...any) {
		fmt.Printf("%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
	c := cluster.New(root)
	c.Mode = mode
	if verbose {
		c.Log = logf
	}
	logf("starting the topology (%s)", c.ComposeFile)
	if err := c.Up(ctx); err != nil {
		return 0, err
	}
	defer func() {
		// Every host's output, for reading a failed round afterwards.
		dir := strings.TrimSuffix(jsonOut, ".json") + "-logs"
		if err := c.SaveLogs(context.Background(), dir); err != nil {
			fmt.Fprintln(os.Stderr, "understudy-chaos: saving host logs:", err)
		} else {
			fmt.Println("host logs:", dir)
		}
		if !keep {
			_ = c.Down(context.Background())
		}
	}()
	logf("chaos: %d rounds, seed %d, %s mode", rounds, seed, mode)
	rep, err := chaos.Run(ctx, chaos.Config{Cluster: c, Rounds: rounds, Seed: seed, Kinds: kinds, Logf: logf})
	if err != nil {
		return 0, err
	}
	fmt.Println()
	if err := rep.WriteTable(os.Stdout); err != nil {
		return 0, err
	}
	f, err := os.Create(jsonOut)
	if err != nil {
		return 0, err
	}
	if err := rep.WriteJSON(f); err != nil {
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	fmt.Println("report:", jsonOut)
	if len(rep.Violations) > 0 {
		return 1, nil
	}
	return 0, nil
}
