package render_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/feed"
	"github.com/understudy-dev/understudy/registry/render"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

func TestMain(m *testing.M) { servertest.VerifyNoLeaks(m) }

// memcacheTemplate renders the healthy memcached pool as a YAML list.
const memcacheTemplate = `memcache_servers: {{ members "memcached" | addresses | json }}` + "\n"

func memcacheFile(addrs ...string) string {
	quoted := make([]string, len(addrs))
	for i, a := range addrs {
		quoted[i] = `"` + a + `"`
	}
	return "memcache_servers: [" + strings.Join(quoted, ",") + "]\n"
}

// fixture is a one-member registry, a template and an output file in a
// temporary directory, and an exec command that logs each run.
type fixture struct {
	t       *testing.T
	c       *servertest.Cluster
	cli     *clientv3.Client
	dir     string
	tmpl    string
	out     string
	execLog string
	logs    *logRecorder
}

func newFixture(t *testing.T, template string) *fixture {
	t.Helper()
	c := servertest.StartCluster(t, 1)
	dir := t.TempDir()
	f := &fixture{
		t: t, c: c, cli: c.Client(t), dir: dir,
		tmpl: filepath.Join(dir, "app.yaml.tmpl"), out: filepath.Join(dir, "app.yaml"), execLog: filepath.Join(dir, "exec.log"),
		logs: &logRecorder{t: t},
	}
	if err := os.WriteFile(f.tmpl, []byte(template), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// config is the fixture's render configuration; exec appends Out's path
// to the exec log.
func (f *fixture) config() render.Config {
	return render.Config{
		Template: f.tmpl, Out: f.out,
		Exec:     `echo "$UNDERSTUDY_RENDER_OUT" >> ` + f.execLog,
		Debounce: 100 * time.Millisecond,
		Logger:   slog.New(f.logs),
	}
}

// run starts a renderer following addrs (server 0 when none) until the
// test ends.
func (f *fixture) run(cfg render.Config, addrs ...string) {
	f.t.Helper()
	if len(addrs) == 0 {
		addrs = []string{f.c.Servers[0].GRPCAddr()}
	}
	r, err := render.New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, feed.Config{Addrs: addrs, RetryPause: 100 * time.Millisecond}) }()
	f.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			f.t.Errorf("Run returned %v after its context ended, want nil", err)
		}
	})
}

func (f *fixture) put(in *pb.Instance) int64 {
	f.t.Helper()
	return f.putRaw(registry.InstanceKey(in.GetHost(), in.GetService()), registry.MustEncode(in))
}

func (f *fixture) putRaw(key, value string) int64 {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := f.cli.Put(ctx, key, value)
	if err != nil {
		f.t.Fatalf("put %s: %v", key, err)
	}
	return resp.Header.Revision
}

// applied waits until the registry has taken in every write so far, so
// that a renderer starting now sees them in its first snapshot.
func (f *fixture) applied() {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := f.cli.Get(ctx, "understudy-test-revision")
	if err != nil {
		f.t.Fatal(err)
	}
	servertest.WaitFor(f.t, 10*time.Second, "the registry to apply every write", func() error {
		if _, rev := f.c.Servers[0].Hub().Views(); rev < resp.Header.Revision {
			return fmt.Errorf("at revision %d of %d", rev, resp.Header.Revision)
		}
		return nil
	})
}

func (f *fixture) delete(key string) int64 {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := f.cli.Delete(ctx, key)
	if err != nil || resp.Deleted != 1 {
		f.t.Fatalf("delete %s: %v (%d deleted)", key, err, resp.Deleted)
	}
	return resp.Header.Revision
}

// execRuns is how many times the exec command ran, checking that each run
// was told the output path.
func (f *fixture) execRuns() int {
	f.t.Helper()
	b, err := os.ReadFile(f.execLog)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		f.t.Fatal(err)
	}
	// Only complete lines count: the command may have opened the log and
	// not yet written its line when the test reads it.
	lines := strings.Split(string(b), "\n")
	lines = lines[:len(lines)-1]
	for _, l := range lines {
		if l != f.out {
			f.t.Errorf("exec saw UNDERSTUDY_RENDER_OUT=%q, want %q", l, f.out)
		}
	}
	return len(lines)
}

// waitFile waits until Out holds want.
func (f *fixture) waitFile(want string) {
	f.t.Helper()
	servertest.WaitFor(f.t, 10*time.Second, fmt.Sprintf("%s to hold %q", f.out, want), func() error {
		got, err := os.ReadFile(f.out)
		if err != nil {
			return err
		}
		if string(got) != want {
			return fmt.Errorf("holds %q", got)
		}
		return nil
	})
}

// waitExecRuns waits until the exec command ran n times.
func (f *fixture) waitExecRuns(n int) {
	f.t.Helper()
	servertest.WaitFor(f.t, 10*time.Second, fmt.Sprintf("exec to run %d times", n), func() error {
		if got := f.execRuns(); got != n {
			return fmt.Errorf("ran %d times", got)
		}
		return nil
	})
}

// fileState is what must not change when a file is left alone.
type fileState struct {
	content string
	inode   uint64
	mtime   time.Time
	mode    os.FileMode
}

func stat(t *testing.T, path string) fileState {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fileState{content: string(b), inode: fi.Sys().(*syscall.Stat_t).Ino, mtime: fi.ModTime(), mode: fi.Mode().Perm()}
}

func passing(service, host, addr string) *pb.Instance {
	return &pb.Instance{Host: host, Service: service, Zone: "z1", Address: addr, Mode: pb.Mode_MODE_POOL, Health: pb.Health_HEALTH_PASSING}
}

// A change to what the template shows rewrites the file, keeping the
// existing file's permissions, and runs the exec command each time; an
// instance turning critical leaves the list.
func TestChangeRewritesFileAndRunsExec(t *testing.T) {
	f := newFixture(t, memcacheTemplate)
	f.put(passing("memcached", "h1", "10.0.0.1:11211"))
	f.put(passing("memcached", "h2", "10.0.0.2:11211"))
	if err := os.WriteFile(f.out, []byte("written by hand\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.applied()
	f.run(f.config())
	f.waitFile(memcacheFile("10.0.0.1:11211", "10.0.0.2:11211"))
	f.waitExecRuns(1)
	if st := stat(t, f.out); st.mode != 0o600 {
		t.Errorf("mode %v after rewrite, want the old file's 0600", st.mode)
	}

	f.put(passing("memcached", "h3", "10.0.0.3:11211"))
	f.waitFile(memcacheFile("10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"))
	f.waitExecRuns(2)

	sick := passing("memcached", "h2", "10.0.0.2:11211")
	sick.Health = pb.Health_HEALTH_CRITICAL
	f.put(sick)
	f.waitFile(memcacheFile("10.0.0.1:11211", "10.0.0.3:11211"))
	f.waitExecRuns(3)

	entries, err := os.ReadDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") && e.Name() != filepath.Base(f.tmpl) {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

// Output identical to the file's content leaves the file alone (same inode,
// same mtime) and runs nothing: at start, and on changes the template does
// not show.
func TestUnchangedOutputIsNotRewritten(t *testing.T) {
	f := newFixture(t, memcacheTemplate)
	f.put(passing("memcached", "h1", "10.0.0.1:11211"))
	if err := os.WriteFile(f.out, []byte(memcacheFile("10.0.0.1:11211")), 0o644); err != nil {
		t.Fatal(err)
	}
	before := stat(t, f.out)
	f.applied()
	f.run(f.config())
	f.logs.wait(t, "first render", "render: file unchanged", 0)

	tagged := passing("memcached", "h1", "10.0.0.1:11211")
	tagged.Tags = []string{"new-tag"}
	f.put(tagged)
	rev := f.put(passing("other", "h1", "10.0.0.1:9000"))
	f.logs.wait(t, "render of the unshown changes", "render: file unchanged", rev)

	if after := stat(t, f.out); after != before {
		t.Errorf("file changed: %+v, want %+v", after, before)
	}
	if n := f.execRuns(); n != 0 {
		t.Errorf("exec ran %d times, want 0", n)
	}
}

// While no registry answers nothing is rendered: the registry loses every
// member meanwhile, and the file keeps its last good content (same inode,
// no exec) for the whole outage. Once a registry answers again, the empty
// pool is its real answer and is rendered.
func TestRegistryDownKeepsFile(t *testing.T) {
	f := newFixture(t, memcacheTemplate)
	f.put(passing("memcached", "h1", "10.0.0.1:11211"))
	f.put(passing("memcached", "h2", "10.0.0.2:11211"))
	gate := servertest.NewGate(t, f.c.Servers[0].GRPCAddr())
	f.applied()
	f.run(f.config(), gate.Addr())
	f.waitFile(memcacheFile("10.0.0.1:11211", "10.0.0.2:11211"))
	f.waitExecRuns(1)
	before := stat(t, f.out)

	gate.Off()
	outage := time.Now()
	f.delete(registry.InstanceKey("h1", "memcached"))
	f.delete(registry.InstanceKey("h2", "memcached"))
	for time.Since(outage) < 2*time.Second {
		if after := stat(t, f.out); after != before {
			t.Fatalf("file changed %v into the outage: %+v, want %+v", time.Since(outage), after, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := f.execRuns(); n != 1 {
		t.Errorf("exec ran %d times by the end of the outage, want 1", n)
	}
	if n := f.logs.count("render: registry stream ended", 0); n < 2 {
		t.Errorf("%d failed attempts to reach the registry logged during the outage, want several", n)
	}

	gate.On()
	f.waitFile(memcacheFile())
	f.waitExecRuns(2)
}

// A change that arrived just before the registry went away is not rendered
// while nothing answers, even when its debounce ends during the outage; it
// is once a registry answers again.
func TestChangeBeforeOutageWaitsForRegistry(t *testing.T) {
	f := newFixture(t, memcacheTemplate)
	f.put(passing("memcached", "h1", "10.0.0.1:11211"))
	gate := servertest.NewGate(t, f.c.Servers[0].GRPCAddr())
	f.applied()
	cfg := f.config()
	cfg.Debounce, cfg.MaxWait = 500*time.Millisecond, 500*time.Millisecond
	f.run(cfg, gate.Addr())
	f.waitFile(memcacheFile("10.0.0.1:11211"))
	f.waitExecRuns(1)
	before := stat(t, f.out)

	rev := f.put(passing("memcached", "h2", "10.0.0.2:11211"))
	f.logs.wait(t, "the change to reach the renderer", "render: registry message", rev)
	gate.Off()
	outage := time.Now()
	for time.Since(outage) < 3*cfg.MaxWait {
		if after := stat(t, f.out); after != before {
			t.Fatalf("file changed %v into the outage: %+v, want %+v", time.Since(outage), after, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	gate.On()
	f.waitFile(memcacheFile("10.0.0.1:11211", "10.0.0.2:11211"))
	f.waitExecRuns(2)
}

// A burst of 20 changes, each less than the debounce after the last,
// renders and runs exec once.
func TestBurstRendersOnce(t *testing.T) {
	f := newFixture(t, memcacheTemplate)
	f.put(passing("memcached", "h00", "10.0.0.100:11211"))
	cfg := f.config()
	cfg.Debounce = time.Second
	f.applied()
	f.run(cfg)
	f.waitFile(memcacheFile("10.0.0.100:11211"))
	f.waitExecRuns(1)

	addrs := []string{"10.0.0.100:11211"}
	start := time.Now()
	var rev int64
	for i := 1; i <= 20; i++ {
		addr := fmt.Sprintf("10.0.0.%d:11211", 100+i)
		rev = f.put(passing("memcached", fmt.Sprintf("h%02d", i), addr))
		addrs = append(addrs, addr)
	}
	t.Logf("20 changes written in %v (debounce %v)", time.Since(start), cfg.Debounce)
	f.logs.wait(t, "the burst rendered", "render: file rewritten", rev)
	f.waitFile(memcacheFile(addrs...))
	if n := f.logs.count("render: file rewritten", 0); n != 2 {
		t.Errorf("file written %d times, want 2: at start and once for the burst", n)
	}
	if n := f.execRuns(); n != 2 {
		t.Errorf("exec ran %d times, want 2", n)
	}
}

// A template that fails (here: fail, when the primary is gone) keeps the
// last good file and runs nothing; the next good render writes again.
func TestTemplateErrorKeepsLastGoodFile(t *testing.T) {
	const tmpl = `{{ with primary "pg" -}}
db_parameters: {host: {{ .AddrHost }}, port: {{ .AddrPort }}}
{{ else }}{{ fail "pg has no primary" }}{{ end -}}
`
	f := newFixture(t, tmpl)
	for _, h := range []string{"h1", "h2"} {
		in := passing("pg", h, "10.0.0."+h[1:]+":5432")
		in.Mode = pb.Mode_MODE_PRIMARY
		f.put(in)
	}
	promote := func(host, addr string) {
		epoch := f.putRaw(registry.LeaderKey("pg"), registry.MustEncode(&pb.Leader{Host: host, Address: addr}))
		f.putRaw(registry.PrimaryKey("pg"), registry.MustEncode(&pb.Primary{Host: host, Address: addr, Epoch: epoch}))
	}
	promote("h1", "10.0.0.1:5432")
	f.applied()
	f.run(f.config())
	f.waitFile("db_parameters: {host: 10.0.0.1, port: 5432}\n")
	f.waitExecRuns(1)
	before := stat(t, f.out)

	f.delete(registry.LeaderKey("pg")) // the view does not show the leader key: no change, no render
	rev := f.delete(registry.PrimaryKey("pg"))
	rec := f.logs.wait(t, "the failed render", "render: template failed; keeping the last good file", rev)
	if err := rec["err"]; !strings.Contains(err, "pg has no primary") {
		t.Errorf("logged error %q, want it to say why", err)
	}
	if after := stat(t, f.out); after != before {
		t.Errorf("file changed after a template error: %+v, want %+v", after, before)
	}
	if n := f.execRuns(); n != 1 {
		t.Errorf("exec ran %d times, want 1", n)
	}

	promote("h2", "10.0.0.2:5432")
	f.waitFile("db_parameters: {host: 10.0.0.2, port: 5432}\n")
	f.waitExecRuns(2)
}

// Once renders the current state from the first registry that answers;
// with none answering it fails with ErrNoRegistry and writes nothing.
func TestOnce(t *testing.T) {
	f := newFixture(t, memcacheTemplate)
	f.put(passing("memcached", "h1", "10.0.0.1:11211"))
	f.applied()
	r, err := render.New(f.config())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fc := feed.Config{Addrs: []string{"127.0.0.1:1", f.c.Servers[0].GRPCAddr()}}
	if err := r.Once(ctx, fc); err != nil {
		t.Fatalf("Once: %v", err)
	}
	if got, _ := os.ReadFile(f.out); string(got) != memcacheFile("10.0.0.1:11211") {
		t.Errorf("file after Once: %q", got)
	}
	before := stat(t, f.out)
	if err := r.Once(ctx, fc); err != nil {
		t.Fatalf("second Once: %v", err)
	}
	if after := stat(t, f.out); after != before || f.execRuns() != 1 {
		t.Errorf("second Once with nothing changed: file %+v (was %+v), exec ran %d times; want untouched, 1", after, before, f.execRuns())
	}

	cfg := f.config()
	cfg.Out = filepath.Join(f.dir, "never.yaml")
	r, err = render.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Once(ctx, feed.Config{Addrs: []string{"127.0.0.1:1"}})
	if !errors.Is(err, feed.ErrNoRegistry) {
		t.Errorf("Once with no registry: %v, want ErrNoRegistry", err)
	}
	if _, err := os.Stat(cfg.Out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Once with no registry wrote %s (%v)", cfg.Out, err)
	}
}

// logRecorder is a slog.Handler that keeps every record for tests to wait
// on and prints it with t.Log.
type logRecorder struct {
	t      *testing.T
	mu     sync.Mutex
	recs   []map[string]string // "msg" and every attribute
	attrs  []slog.Attr
	parent *logRecorder
}

func (l *logRecorder) root() *logRecorder {
	if l.parent != nil {
		return l.parent.root()
	}
	return l
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := map[string]string{"msg": r.Message}
	add := func(a slog.Attr) bool { rec[a.Key] = a.Value.String(); return true }
	for _, a := range l.attrs {
		add(a)
	}
	r.Attrs(add)
	root := l.root()
	root.mu.Lock()
	root.recs = append(root.recs, rec)
	root.mu.Unlock()
	root.t.Log(r.Level, r.Message, rec)
	return nil
}

func (l *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &logRecorder{t: l.t, attrs: append(append([]slog.Attr(nil), l.attrs...), as...), parent: l.root()}
}

func (l *logRecorder) WithGroup(string) slog.Handler { return l }

// find returns the records whose message starts with msg and a revision of at least
// rev (any revision when rev is 0).
func (l *logRecorder) find(msg string, rev int64) []map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]string
	for _, r := range l.recs {
		if !strings.HasPrefix(r["msg"], msg) {
			continue
		}
		if rev > 0 {
			var got int64
			if _, err := fmt.Sscan(r["revision"], &got); err != nil || got < rev {
				continue
			}
		}
		out = append(out, r)
	}
	return out
}

func (l *logRecorder) count(msg string, rev int64) int { return len(l.find(msg, rev)) }

// reset forgets every record so far.
func (l *logRecorder) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = nil
}

// wait waits for a record with message msg at revision rev or later.
func (l *logRecorder) wait(t *testing.T, what, msg string, rev int64) map[string]string {
	t.Helper()
	var found []map[string]string
	servertest.WaitFor(t, 10*time.Second, what, func() error {
		if found = l.find(msg, rev); len(found) == 0 {
			return fmt.Errorf("no %q logged at revision ≥ %d", msg, rev)
		}
		return nil
	})
	return found[0]
}

// A reload command that fails or hangs is logged with its output and
// killed after ExecTimeout; the render itself succeeds.
func TestExecFailureIsLoggedNotFatal(t *testing.T) {
	f := newFixture(t, memcacheTemplate)
	f.put(passing("memcached", "h1", "10.0.0.1:11211"))
	f.applied()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fc := feed.Config{Addrs: []string{f.c.Servers[0].GRPCAddr()}}
	tests := []struct {
		name, exec, want string
	}{
		{"exit 3", "echo boom >&2; exit 3", "exit status 3"},
		{"hangs", "echo started; sleep 30", "killed after 200ms"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.config()
			cfg.Out = filepath.Join(f.dir, fmt.Sprintf("out%d.yaml", i))
			cfg.Exec, cfg.ExecTimeout = tt.exec, 200*time.Millisecond
			r, err := render.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := r.Once(ctx, fc); err != nil {
				t.Fatalf("Once with a failing command: %v, want nil", err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("Once took %v with ExecTimeout 200ms", took)
			}
			if got, _ := os.ReadFile(cfg.Out); string(got) != memcacheFile("10.0.0.1:11211") {
				t.Errorf("file %q, want it written before the command ran", got)
			}
			rec := f.logs.wait(t, "the failure logged", "render: command failed", 0)
			if !strings.Contains(rec["err"], tt.want) || rec["output"] == "" {
				t.Errorf("logged %v, want err with %q and the output", rec, tt.want)
			}
			f.logs.reset()
		})
	}
}
