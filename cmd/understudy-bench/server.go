package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// readyTimeout bounds how long a fresh one-member server may take to
	// answer /readyz; etcd bootstraps in about a second on loopback.
	readyTimeout = 60 * time.Second
	// stopTimeout is how long the server gets to shut down after SIGTERM
	// before it is killed. The server itself gives gRPC at most 5 s.
	stopTimeout = 15 * time.Second
)

// serverProc is one `understudy server` subprocess with a one-member etcd
// cluster in a temporary data directory.
type serverProc struct {
	cmd      *exec.Cmd
	dir      string // temporary, removed by stop
	logPath  string
	etcdURL  string
	grpcAddr string
	httpAddr string

	exited   chan struct{} // closed when the process has been reaped
	waitErr  error         // valid after exited is closed
	stopOnce sync.Once
	stopErr  error
}

// startServer starts the binary on free loopback ports and waits until it
// reports ready. Its output goes to logDir/server-<label>.log when logDir is
// set, else to a file in the temporary directory (shown when something fails).
func startServer(ctx context.Context, binary, logDir, label string) (_ *serverProc, err error) {
	dir, err := os.MkdirTemp("", "understudy-bench-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(4)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	p := &serverProc{
		dir:      dir,
		logPath:  filepath.Join(dir, "server.log"),
		etcdURL:  client,
		grpcAddr: fmt.Sprintf("127.0.0.1:%d", ports[2]),
		httpAddr: fmt.Sprintf("127.0.0.1:%d", ports[3]),
		exited:   make(chan struct{}),
	}
	if logDir != "" {
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("-server-log-dir: %w", err)
		}
		p.logPath = filepath.Join(logDir, "server-"+label+".log")
	}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	// Not exec.CommandContext: stop owns the shutdown (SIGTERM, then a
	// grace period), and it must run even after ctx has expired.
	p.cmd = exec.Command(binary, "server",
		"--name", "bench", "--zone", "bench",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--advertise-peer-urls", peer,
		"--initial-cluster", "bench="+peer, "--initial-cluster-state", "new",
		"--grpc-addr", p.grpcAddr, "--http-addr", p.httpAddr,
	)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		_ = logFile.Close()
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		_ = logFile.Close()
		close(p.exited)
	}()
	if err := p.waitReady(ctx); err != nil {
		tail := p.logTail(20)
		_ = p.stop()
		return nil, fmt.Errorf("%w%s", err, tail)
	}
	return p, nil
}

// freePorts returns n distinct loopback ports that were free a moment ago.
// All listeners stay open until every port is picked, so none repeats.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		defer func() { _ = ln.Close() }()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitReady polls /readyz until it answers 200, the process exits, or the
// deadline passes.
func (p *serverProc) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	url := "http://" + p.httpAddr + "/readyz"
	hc := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := hc.Get(url); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("server exited before it was ready: %v", p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("server not ready at %s: %w", url, ctx.Err())
		case <-tick.C:
		}
	}
}

// rss returns the server's resident set size in bytes (VmRSS).
func (p *serverProc) rss() (int64, error) {
	path := fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("server memory: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		// "VmRSS:	   41236 kB": the kernel always reports kB (KiB).
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			break
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			break
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("server memory: no VmRSS line in %s", path)
}

// stop sends SIGTERM, waits for the process (killing it after stopTimeout)
// and removes the temporary directory. Safe to call more than once; it
// reports an unclean exit.
func (p *serverProc) stop() error {
	p.stopOnce.Do(func() {
		select {
		case <-p.exited:
			p.stopErr = fmt.Errorf("server had already exited: %v", p.waitErr)
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
				if p.waitErr != nil {
					p.stopErr = fmt.Errorf("exit after SIGTERM: %w", p.waitErr)
				}
			case <-time.After(stopTimeout):
				_ = p.cmd.Process.Kill()
				<-p.exited
				p.stopErr = fmt.Errorf("still running %v after SIGTERM; killed", stopTimeout)
			}
		}
		p.stopErr = errors.Join(p.stopErr, os.RemoveAll(p.dir))
	})
	return p.stopErr
}

// logTail returns the last n lines of the server's output, indented, for
// error messages; empty when there is none.
func (p *serverProc) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	return "\nserver output (last lines):\n    " + strings.Join(lines, "\n    ")
}
