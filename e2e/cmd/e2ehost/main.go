// Command e2ehost is everything an end-to-end test host runs besides
// understudy itself, in one static binary for an image built FROM scratch:
//
//	e2ehost init [--procfile F]     supervise the host's processes (PID 1)
//	e2ehost kill [--signal S] [--restart-after D] NAME
//	                                signal one supervised process (KILL, STOP,
//	                                CONT, TERM or a number); with
//	                                --restart-after, keep it down that long
//	e2ehost start NAME              end a --restart-after hold now
//	e2ehost kv --host H [--ask=false] ...
//	                                the demo database (--ask=false: takes
//	                                writes like PostgreSQL, never asking)
//	e2ehost hook --kv URL --data D  promote/demote hook telling kv its role
//	e2ehost pool --addr A           a pool member answering TCP connections
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/understudy-dev/understudy/agent/demoservice"
	"github.com/understudy-dev/understudy/e2e/kvdemo"
	"github.com/understudy-dev/understudy/e2e/supervise"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmds := map[string]func([]string) error{"init": initCmd, "kill": killCmd, "start": startCmd, "kv": kvCmd, "hook": hookCmd, "pool": poolCmd}
	run, ok := cmds[os.Args[1]]
	if !ok {
		usage()
	}
	if err := run(os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "e2ehost %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: e2ehost init|kill|start|kv|hook|pool [flags]")
	os.Exit(2)
}

func parse(fs *flag.FlagSet, args []string) {
	fs.Init(fs.Name(), flag.ExitOnError)
	_ = fs.Parse(args)
}

// hostname is the container's host name: the default for --host.
func hostname() string {
	h, _ := os.Hostname()
	return h
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

const runDir = "/run/e2ehost"

func initCmd(args []string) error {
	fs := flag.NewFlagSet("init", flag.ExitOnError)
	procfile := fs.String("procfile", "/etc/understudy/Procfile", "processes to run, one \"name: command\" a line")
	parse(fs, args)
	f, err := os.Open(*procfile)
	if err != nil {
		return err
	}
	procs, err := supervise.ParseProcfile(f)
	_ = f.Close()
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	return supervise.Run(ctx, supervise.Config{Procs: procs, RunDir: runDir,
		RestartDelay: time.Second, StopTimeout: 20 * time.Second, Out: os.Stdout})
}

// signals killCmd knows by name.
var signals = map[string]syscall.Signal{"KILL": syscall.SIGKILL, "TERM": syscall.SIGTERM, "STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT}

func killCmd(args []string) error {
	fs := flag.NewFlagSet("kill", flag.ExitOnError)
	sigName := fs.String("signal", "KILL", "signal: KILL, TERM, STOP, CONT or a number")
	restartAfter := fs.Duration("restart-after", 0, "keep the process down this long before it is restarted (0: the supervisor's usual delay)")
	parse(fs, args)
	if fs.NArg() != 1 {
		return errors.New("want one process name")
	}
	sig, ok := signals[strings.TrimPrefix(strings.ToUpper(*sigName), "SIG")]
	if !ok {
		n, err := strconv.Atoi(*sigName)
		if err != nil {
			return fmt.Errorf("signal %q: want KILL, TERM, STOP, CONT or a number", *sigName)
		}
		sig = syscall.Signal(n)
	}
	name := fs.Arg(0)
	if *restartAfter > 0 {
		// The hold is in place before the process can exit.
		if err := supervise.Hold(runDir, name, time.Now().Add(*restartAfter)); err != nil {
			return err
		}
	}
	if err := supervise.Kill(runDir, name, sig); err != nil {
		_ = supervise.Release(runDir, name)
		return err
	}
	return nil
}

func startCmd(args []string) error {
	fs := flag.NewFlagSet("start", flag.ExitOnError)
	parse(fs, args)
	if fs.NArg() != 1 {
		return errors.New("want one process name")
	}
	return supervise.Release(runDir, fs.Arg(0))
}

func kvCmd(args []string) error {
	fs := flag.NewFlagSet("kv", flag.ExitOnError)
	var cfg kvdemo.Config
	fs.StringVar(&cfg.Host, "host", hostname(), "this host's name")
	fs.StringVar(&cfg.Service, "service", "db", "service name the agent knows this server by")
	fs.StringVar(&cfg.DataDir, "data", "/data/kv", "directory of the write log")
	fs.StringVar(&cfg.AgentURL, "agent", "http://127.0.0.1:7422", "local agent's HTTP address, asked before each write")
	ask := fs.Bool("ask", true, "ask the agent before each write and check the client's epoch; false: take writes like PostgreSQL")
	addr := fs.String("addr", ":8080", "listen address")
	parse(fs, args)
	cfg.NoAsk = !*ask
	s, l, err := kvdemo.Listen(cfg, *addr)
	if err != nil {
		return err
	}
	defer func() { _ = s.Close() }()
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signalContext()
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	st := s.State()
	fmt.Printf("kv %s serving on %s as %s at epoch %d, highest epoch %d, ask %v\n", cfg.Host, l.Addr(), st.Role, st.Epoch, st.Highest, *ask)
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// hookCmd tells the kv server the role the agent's transition gives it.
//
// A demotion is first written to the data dir's role file, so that it also
// holds for a server that is down or restarting; then the server is told.
// Nothing listening ("connection refused") means no server takes writes,
// and the next one starts as a standby (kvdemo.Listen). Any other failure
// to tell a running server fails the hook.
func hookCmd(args []string) error {
	fs := flag.NewFlagSet("hook", flag.ExitOnError)
	kv := fs.String("kv", "http://127.0.0.1:8080", "kv server's base URL")
	data := fs.String("data", "/data/kv", "kv server's data directory, where a demotion is recorded first")
	app := fs.String("app", "app", "supervised process name of the kv server, killed when it does not answer a demotion (empty: never)")
	parse(fs, args)
	role := os.Getenv("UNDERSTUDY_ROLE")
	epoch, err := strconv.ParseInt(os.Getenv("UNDERSTUDY_EPOCH"), 10, 64)
	if err != nil && role != kvdemo.RoleStandby {
		return fmt.Errorf("UNDERSTUDY_EPOCH: %w", err)
	}
	if role == kvdemo.RoleStandby {
		if err := kvdemo.DemoteOnDisk(*data); err != nil {
			return fmt.Errorf("record the demotion: %w", err)
		}
	}
	body, _ := json.Marshal(kvdemo.RoleRequest{Role: role, Epoch: epoch})
	timeout := 5 * time.Second
	if role == kvdemo.RoleStandby {
		timeout = time.Second // a demotion must fit in the fence margin
	}
	c := &http.Client{Timeout: timeout}
	resp, err := c.Post(*kv+"/role", "application/json", bytes.NewReader(body))
	if err != nil {
		if role == kvdemo.RoleStandby && errors.Is(err, syscall.ECONNREFUSED) {
			fmt.Printf("standby: kv is down; recorded in %s\n", *data)
			return nil
		}
		if role == kvdemo.RoleStandby && *app != "" {
			// The server hangs: it cannot be told, so it must not run on.
			// It restarts as the standby its role file now says it is,
			// as pg_ctl stop -m immediate leaves a PostgreSQL behind
			// standby.signal.
			if kerr := supervise.Kill(runDir, *app, syscall.SIGKILL); kerr != nil {
				return fmt.Errorf("kv did not answer (%v), and killing it failed: %w", err, kerr)
			}
			fmt.Printf("standby: kv did not answer (%v); killed it, it restarts as standby\n", err)
			return nil
		}
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("kv answered %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	fmt.Printf("%s at epoch %d: %s", os.Getenv("UNDERSTUDY_ROLE"), epoch, msg)
	return nil
}

func poolCmd(args []string) error {
	fs := flag.NewFlagSet("pool", flag.ExitOnError)
	name := fs.String("name", "cache", "greeting name")
	addr := fs.String("addr", ":11211", "listen address")
	parse(fs, args)
	s, err := demoservice.Start(*name, *addr)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Printf("pool %s serving on %s\n", *name, s.Addr())
	ctx, stop := signalContext()
	defer stop()
	<-ctx.Done()
	return nil
}
