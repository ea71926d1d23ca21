// Package render keeps a file rendered from a Go text/template over the
// registry's views, for programs that only read static configuration: a
// web application's memcache_servers: list and database host, an HAProxy
// backend. It follows the registry's Watch stream (package feed), renders
// after every burst of changes, rewrites the file atomically only when its
// content changes, and then runs a reload command.
//
// The file only ever holds what a registry said, rendered while a registry
// is answering: losing the registry changes nothing, so the last good file
// stays in place for the whole outage (never an empty member list because
// nothing answered), and changes that arrived just before the outage wait
// for a registry to answer again.
// A service that legitimately has no healthy member while the registry is
// reachable is rendered as such: that is the registry's answer, and keeping
// a list of dead members would hide it. Views a registry serves as stale
// (its etcd lost quorum) are its last known state and are rendered like
// any other; .Stale lets a template tell. A template that fails (a syntax
// slip at run time, a missing primary used without `with`, an explicit
// `fail`) keeps the last good file too, and is logged.
package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"text/template"
	"time"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry/feed"
)

// ErrTemplate marks a template that cannot be read or parsed.
var ErrTemplate = errors.New("template")

// Config configures a Renderer.
type Config struct {
	// Template is the path of the text/template file (see Funcs).
	Template string
	// Out is the file kept rendered. Its directory must exist; a symbolic
	// link is followed and its target replaced.
	Out string
	// Exec, when set, runs with `sh -c` after every write of Out, with
	// UNDERSTUDY_RENDER_OUT set to Out: a reload command. Its failure is
	// logged, never fatal.
	Exec string
	// ExecTimeout bounds each run of Exec. Default 30s.
	ExecTimeout time.Duration
	// Debounce collapses a burst of changes into one render: it happens
	// once no change arrived for this long. Default 500ms.
	Debounce time.Duration
	// MaxWait bounds how long a steady stream of changes can put off a
	// render. Default 4 × Debounce.
	MaxWait time.Duration
	Logger  *slog.Logger
}

// DefaultConfig returns a Config with the defaults set; Template and Out
// are left for the caller.
func DefaultConfig() Config {
	return Config{ExecTimeout: 30 * time.Second, Debounce: 500 * time.Millisecond}
}

// Validate checks the configuration, naming the offending field.
func (c *Config) Validate() error {
	switch {
	case c.Template == "":
		return errors.New("template is empty")
	case c.Out == "":
		return errors.New("out is empty")
	case c.Debounce < 0:
		return fmt.Errorf("debounce %v is negative", c.Debounce)
	case c.MaxWait < 0:
		return fmt.Errorf("max-wait %v is negative", c.MaxWait)
	case c.MaxWait > 0 && c.MaxWait < c.Debounce:
		return fmt.Errorf("max-wait %v is shorter than debounce %v", c.MaxWait, c.Debounce)
	case c.ExecTimeout < 0:
		return fmt.Errorf("exec-timeout %v is negative", c.ExecTimeout)
	}
	return nil
}

func (c *Config) setDefaults() {
	d := DefaultConfig()
	if c.ExecTimeout == 0 {
		c.ExecTimeout = d.ExecTimeout
	}
	if c.Debounce == 0 {
		c.Debounce = d.Debounce
	}
	if c.MaxWait == 0 {
		c.MaxWait = 4 * c.Debounce
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Renderer renders one template into one file.
type Renderer struct {
	cfg  Config
	log  *slog.Logger
	tmpl *template.Template
}

// New validates cfg and parses the template. Errors reading or parsing the
// template wrap ErrTemplate.
func New(cfg Config) (*Renderer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	src, err := os.ReadFile(cfg.Template)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	tmpl, err := Parse(filepath.Base(cfg.Template), string(src))
	if err != nil {
		return nil, err
	}
	return &Renderer{cfg: cfg, log: cfg.Logger, tmpl: tmpl}, nil
}

// Parse parses a template with the helpers of Funcs. A key missing from a
// map (.Services.nosuch) is an error when the template runs.
func Parse(name, src string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(Funcs(&Data{})).Parse(src)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	return t, nil
}

// Execute runs a template parsed by Parse over views.
func Execute(t *template.Template, views []*pb.View, rev int64) ([]byte, error) {
	d := NewData(views, rev)
	t, err := t.Clone()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := t.Funcs(Funcs(d)).Execute(&buf, d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Render runs the template over views and returns what Out would hold.
func (r *Renderer) Render(views []*pb.View, rev int64) ([]byte, error) {
	return Execute(r.tmpl, views, rev)
}

// Run follows the registry through fc until ctx is done, keeping Out
// rendered. The first complete state is rendered at once; later changes
// after the debounce. While no registry answers nothing is rendered, not
// even changes that arrived just before the stream broke: they are
// rendered once a registry answers again. It
// returns nil when ctx is done, or the error that ended following (a
// request the registry rejects as malformed, or feed.ErrNoRegistry when
// fc.Rounds is set).
func (r *Renderer) Run(ctx context.Context, fc feed.Config) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu        sync.Mutex
		views     feed.Views
		connected bool // a stream is delivering; false from its end until the next one answers
	)
	onError := fc.OnError
	if onError == nil {
		onError = r.logFeedError
	}
	fc.OnError = func(addr string, err error, next string) {
		mu.Lock()
		connected = false
		mu.Unlock()
		onError(addr, err, next)
	}
	changed := make(chan struct{}, 1)
	followed := make(chan error, 1)
	go func() {
		followed <- feed.Follow(ctx, fc, func(m *pb.WatchResponse) {
			r.log.Debug("render: registry message", "revision", m.GetRevision(), "snapshot", m.GetSnapshot(), "views", len(m.GetViews()))
			mu.Lock()
			views.Apply(m)
			connected = true
			mu.Unlock()
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	}()
	// render renders the views unless no registry is answering: then a
	// change received before the stream broke waits for the next stream,
	// whose first message (the changes since, or a snapshot) triggers a
	// render of what that registry confirms.
	render := func() {
		mu.Lock()
		if !views.Complete() || !connected {
			mu.Unlock()
			return
		}
		all, rev := views.All(), views.Revision()
		mu.Unlock()
		r.update(ctx, all, rev)
	}

	var (
		quiet, limit *time.Timer // both set while a render is pending
		quietC       <-chan time.Time
		limitC       <-chan time.Time
		first        = true
	)
	stop := func() {
		if quiet != nil {
			quiet.Stop()
			limit.Stop()
		}
		quiet, limit, quietC, limitC = nil, nil, nil, nil
	}
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return <-followed // nil: Follow ends without error when ctx is done
		case err := <-followed:
			return err
		case <-changed:
			if first {
				first = false
				render()
				continue
			}
			if quiet == nil {
				quiet, limit = time.NewTimer(r.cfg.Debounce), time.NewTimer(r.cfg.MaxWait)
				quietC, limitC = quiet.C, limit.C
			} else {
				quiet.Reset(r.cfg.Debounce)
			}
		case <-quietC:
			stop()
			render()
		case <-limitC:
			stop()
			render()
		}
	}
}

// Once renders the registry's current state once, from the first server
// in fc that answers (each tried once unless fc.Rounds says otherwise). It
// fails when none answers or the template fails; either way Out keeps what
// it held.
func (r *Renderer) Once(ctx context.Context, fc feed.Config) error {
	if fc.Rounds == 0 {
		fc.Rounds = 1
	}
	if fc.OnError == nil {
		fc.OnError = r.logFeedError
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var views feed.Views
	err := feed.Follow(fctx, fc, func(m *pb.WatchResponse) {
		views.Apply(m)
		if views.Complete() {
			cancel()
		}
	})
	if err == nil && !views.Complete() {
		err = fmt.Errorf("%w: %w", feed.ErrNoRegistry, ctx.Err())
	}
	if err != nil {
		return err
	}
	out, err := r.Render(views.All(), views.Revision())
	if err != nil {
		return fmt.Errorf("render %s: %w", r.cfg.Template, err)
	}
	_, err = r.write(ctx, out)
	return err
}

func (r *Renderer) logFeedError(addr string, err error, next string) {
	r.log.Warn("render: registry stream ended; the file keeps its last content until one answers",
		"registry", addr, "err", err, "next", next)
}

// update renders views and writes Out when the result differs, logging
// what went wrong.
func (r *Renderer) update(ctx context.Context, views []*pb.View, rev int64) {
	out, err := r.Render(views, rev)
	if err != nil {
		r.log.Error("render: template failed; keeping the last good file", "template", r.cfg.Template, "out", r.cfg.Out, "revision", rev, "err", err)
		return
	}
	written, err := r.write(ctx, out)
	switch {
	case err != nil:
		r.log.Error("render: cannot write the file", "out", r.cfg.Out, "revision", rev, "err", err)
	case written:
		r.log.Info("render: file rewritten", "out", r.cfg.Out, "revision", rev, "bytes", len(out))
	default:
		r.log.Debug("render: file unchanged", "out", r.cfg.Out, "revision", rev)
	}
}

// write replaces Out with content unless it already holds exactly that,
// then runs Exec. It reports whether it wrote.
func (r *Renderer) write(ctx context.Context, content []byte) (bool, error) {
	cur, err := os.ReadFile(r.cfg.Out)
	if err == nil && bytes.Equal(cur, content) {
		return false, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		r.log.Warn("render: cannot read the current file; replacing it", "out", r.cfg.Out, "err", err)
	}
	if err := WriteFile(r.cfg.Out, content); err != nil {
		return false, err
	}
	r.exec(ctx)
	return true, nil
}

// maxOutput caps how much of a command's output is logged.
const maxOutput = 4096

// exec runs the reload command, logging its output. A command that has
// started is let finish (within ExecTimeout) even when ctx ends: the file
// is already written, and a reload killed halfway helps nobody.
func (r *Renderer) exec(ctx context.Context) {
	if r.cfg.Exec == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ExecTimeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "sh", "-c", r.cfg.Exec)
	cmd.Env = append(os.Environ(), "UNDERSTUDY_RENDER_OUT="+r.cfg.Out)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	ownGroup(cmd)
	cmd.WaitDelay = time.Second // a child left holding the output open cannot hang us
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	if len(text) > maxOutput {
		text = text[:maxOutput] + "…"
	}
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("killed after %v: %w", r.cfg.ExecTimeout, err)
		}
		r.log.Warn("render: command failed", "exec", r.cfg.Exec, "err", err, "output", text, "took", time.Since(start))
		return
	}
	r.log.Info("render: command ran", "exec", r.cfg.Exec, "output", text, "took", time.Since(start))
}

// WriteFile replaces path with content atomically: readers see the old
// file or the new one, never a part. The content goes to a temporary file
// in the same directory, is synced, takes the old file's permissions (0644
// for a new file) and is renamed over path; then the directory is synced so
// that the rename survives a crash. A symbolic link at path is followed.
func WriteFile(path string, content []byte) error {
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	}
	mode := fs.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if err := writeSync(f, content, mode); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeSync writes content to f, sets its mode, syncs and closes it.
func writeSync(f *os.File, content []byte, mode fs.FileMode) error {
	_, err := f.Write(content)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
