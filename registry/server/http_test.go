package server_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/understudy-dev/understudy/proto/understudy/v1"
	"github.com/understudy-dev/understudy/registry"
	"github.com/understudy-dev/understudy/registry/server"
	"github.com/understudy-dev/understudy/registry/server/servertest"
)

// GET /v1/services/SERVICE answers the view alone; an unknown service is 404
// and a malformed name 400, each saying why.
func TestHTTPGetService(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	base := "http://" + c.Servers[0].HTTPAddr()
	epoch := primaryService(t, cli, "pg", "h1", passing("pg", "h1"), passing("pg", "h2"))
	waitApplied(t, c.Servers[0].Hub(), epoch+1)

	code, body := httpGet(t, base+"/v1/services/pg")
	if code != http.StatusOK {
		t.Fatalf("/v1/services/pg: %d %q", code, body)
	}
	var v pb.View
	if err := protojson.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("/v1/services/pg is not a View: %v\n%s", err, body)
	}
	if v.GetService() != "pg" || v.GetPrimary().GetHost() != "h1" || v.GetPrimary().GetEpoch() != epoch || len(v.GetInstances()) != 2 {
		t.Errorf("/v1/services/pg: %s primary %v, want h1 at epoch %d with 2 instances", servertest.Describe(&v), v.GetPrimary(), epoch)
	}

	tests := []struct {
		path string
		code int
		want string // in the body
	}{
		{"/v1/services/nosuch", http.StatusNotFound, `unknown service "nosuch"`},
		{"/v1/services/-x", http.StatusBadRequest, `service "-x"`},
		{"/v1/services/pg.", http.StatusBadRequest, `service "pg."`},
		{"/v1/services/a%20b", http.StatusBadRequest, `service "a b"`},
		{"/v1/watch?service=pg&service=a%2Fb", http.StatusBadRequest, `service[1] "a/b"`},
		{"/v1/watch?service=", http.StatusBadRequest, "service[0] is empty"},
		{"/v1/watch?from_revision=-1", http.StatusBadRequest, "from_revision"},
		{"/v1/watch?from_revision=ten", http.StatusBadRequest, "from_revision"},
	}
	for _, tt := range tests {
		code, body := httpGet(t, base+tt.path)
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s: %d %q, want %d with %q", tt.path, code, body, tt.code, tt.want)
		}
	}
}

// Until the hub has read the keyspace the JSON and event endpoints answer
// 503 at once (a client retries); malformed requests are still 400.
func TestHTTPBeforeViewsLoadedIs503(t *testing.T) {
	s, err := server.Start(server.Config{
		EtcdEndpoints: []string{"http://127.0.0.1:1"}, // nothing listens: the hub never loads
		GRPCAddr:      "127.0.0.1:0",
		HTTPAddr:      "127.0.0.1:0",
		Logger:        servertest.Quiet(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	base := "http://" + s.HTTPAddr()
	for _, path := range []string{"/v1/services", "/v1/services/pg", "/v1/watch", "/v1/watch?service=pg"} {
		code, body := httpGet(t, base+path)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, server.ErrNotReady.Error()) {
			t.Errorf("GET %s before the views are loaded: %d %q, want 503 %q", path, code, body, server.ErrNotReady)
		}
	}
	if code, body := httpGet(t, base+"/v1/services/-x"); code != http.StatusBadRequest {
		t.Errorf("GET /v1/services/-x before the views are loaded: %d %q, want 400", code, body)
	}
}

// A plain HTTP client follows a failover on /v1/watch: the snapshot shows
// the old primary, a view event the new one with a higher epoch, every id is
// a revision that only grows, and a stream filtered to one service carries
// nothing else.
func TestHTTPWatchFollowsFailover(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	base := "http://" + c.Servers[0].HTTPAddr()
	putInstance(t, cli, instance("h1", "cache", "10.0.0.1:11211"))
	epoch1 := primaryService(t, cli, "pg", "h1", passing("pg", "h1"), passing("pg", "h2"))
	waitApplied(t, c.Servers[0].Hub(), epoch1+1)

	all := servertest.GetEvents(t, base+"/v1/watch", nil)
	pg := servertest.GetEvents(t, base+"/v1/watch?service=pg", nil)
	for name, s := range map[string]*servertest.EventStream{"all": all, "pg": pg} {
		s.Wait(5*time.Second, name+" snapshot", func(evs []servertest.Event, _ []string) bool { return len(evs) > 0 })
	}
	snap := pg.Events()[0]
	if snap.Type != "snapshot" || eventRev(t, snap) < epoch1+1 {
		t.Fatalf("first pg event: %s id %s, want a snapshot at revision ≥ %d", snap.Type, snap.ID, epoch1+1)
	}
	if got := serviceNames(snap.Views); !slices.Equal(got, []string{"pg"}) {
		t.Fatalf("pg snapshot holds %v, want [pg]", got)
	}
	if p := snap.Views[0].GetPrimary(); p.GetHost() != "h1" || p.GetEpoch() != epoch1 {
		t.Fatalf("pg snapshot primary %v, want h1 at epoch %d", p, epoch1)
	}
	if got := serviceNames(all.Events()[0].Views); !slices.Equal(got, []string{"cache", "pg"}) {
		t.Fatalf("unfiltered snapshot holds %v, want [cache pg]", got)
	}

	// The primary resigns; h2 wins the leader key and writes its record.
	deleteKey(t, cli, registry.PrimaryKey("pg"))
	deleteKey(t, cli, registry.LeaderKey("pg"))
	epoch2 := promote(t, cli, "pg", "h2")
	for name, s := range map[string]*servertest.EventStream{"all": all, "pg": pg} {
		v, ev := s.WaitView("pg", 5*time.Second, name+": h2 primary", func(v *pb.View) bool {
			return v.GetPrimary().GetHost() == "h2" && v.GetStatus() == pb.Status_STATUS_READ_WRITE
		})
		if v.GetPrimary().GetEpoch() != epoch2 || epoch2 <= epoch1 {
			t.Errorf("%s: new primary epoch %d, want %d (> %d)", name, v.GetPrimary().GetEpoch(), epoch2, epoch1)
		}
		if ev.Type != "view" || eventRev(t, ev) < v.GetRevision() {
			t.Errorf("%s: new primary came as %s id %s, want a view event with id ≥ its revision %d", name, ev.Type, ev.ID, v.GetRevision())
		}
	}

	putInstance(t, cli, instance("h2", "cache", "10.0.0.2:11211"))
	all.WaitView("cache", 5*time.Second, "second cache instance", instances(2))
	for name, s := range map[string]*servertest.EventStream{"all": all, "pg": pg} {
		last := int64(0)
		for _, ev := range s.Events() {
			if rev := eventRev(t, ev); rev <= last {
				t.Errorf("%s: event id %d after %d, want ids that grow", name, rev, last)
			} else {
				last = rev
			}
			if name == "pg" && slices.ContainsFunc(ev.Views, func(v *pb.View) bool { return v.GetService() != "pg" }) {
				t.Errorf("pg stream carried another service: %s", ev.Data)
			}
		}
	}
}

// A client that reconnects with Last-Event-ID (or ?from_revision=) gets
// only what changed since, as view events, not a new snapshot.
func TestHTTPWatchResumes(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	cli := c.Client(t)
	base := "http://" + c.Servers[0].HTTPAddr()
	rev := putInstance(t, cli, instance("h1", "pg", "10.0.0.1:5432"))
	waitApplied(t, c.Servers[0].Hub(), rev)

	s := servertest.GetEvents(t, base+"/v1/watch?service=pg", nil)
	s.Wait(5*time.Second, "snapshot", func(evs []servertest.Event, _ []string) bool { return len(evs) > 0 })
	seen := s.Events()[0].ID
	s.Close()

	putInstance(t, cli, instance("h2", "pg", "10.0.0.2:5432"))
	rev = putInstance(t, cli, instance("h1", "cache", "10.0.0.1:11211")) // not watched
	waitApplied(t, c.Servers[0].Hub(), rev)

	resumes := []struct {
		name   string
		query  string
		header http.Header
	}{
		{"Last-Event-ID", "", http.Header{"Last-Event-Id": {seen}}},
		{"from_revision", "&from_revision=" + seen, nil},
		{"Last-Event-ID wins", "&from_revision=0", http.Header{"Last-Event-Id": {seen}}},
	}
	for _, r := range resumes {
		t.Run(r.name, func(t *testing.T) {
			s := servertest.GetEvents(t, base+"/v1/watch?service=pg"+r.query, r.header)
			s.Wait(5*time.Second, "first event", func(evs []servertest.Event, _ []string) bool { return len(evs) > 0 })
			ev := s.Events()[0]
			if ev.Type != "view" || len(ev.Views) != 1 || len(ev.Views[0].GetInstances()) != 2 {
				t.Fatalf("first event after resuming from %s: %s %s, want one pg view with 2 instances", seen, ev.Type, ev.Data)
			}
		})
	}

	t.Run("nothing changed since", func(t *testing.T) {
		s := servertest.GetEvents(t, base+"/v1/watch?service=pg&from_revision="+strconv.FormatInt(rev, 10), nil)
		s.Wait(5*time.Second, "a comment", func(_ []servertest.Event, cs []string) bool { return len(cs) > 0 })
		putInstance(t, cli, instance("h3", "pg", "10.0.0.3:5432"))
		s.WaitView("pg", 5*time.Second, "third instance", instances(3))
		if ev := s.Events()[0]; ev.Type != "view" {
			t.Errorf("first event after a resume with nothing missed: %s, want view", ev.Type)
		}
	})

	t.Run("bad Last-Event-ID", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, base+"/v1/watch", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Last-Event-ID", "yesterday")
		req.Close = true
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "Last-Event-ID") {
			t.Errorf("Last-Event-ID: yesterday: %d %q, want 400 naming Last-Event-ID", resp.StatusCode, body)
		}
	})
}

// An idle stream gets keepalive comments; every stream ends when the server
// stops.
func TestHTTPWatchKeepaliveAndShutdown(t *testing.T) {
	c := servertest.StartCluster(t, 1)
	ts := httptest.NewServer(c.Servers[0].WatchEventsHandler(50 * time.Millisecond))
	t.Cleanup(ts.Close)
	idle := servertest.GetEvents(t, ts.URL+"?service=nosuch", nil)
	idle.Wait(5*time.Second, "two keepalives", func(_ []servertest.Event, cs []string) bool {
		return len(cs) >= 2 && cs[0] == "keepalive" && cs[1] == "keepalive"
	})
	if evs := idle.Events(); len(evs) != 1 || evs[0].Type != "snapshot" || len(evs[0].Views) != 0 {
		t.Errorf("events of a stream watching nothing that exists: %v, want one empty snapshot", evs)
	}

	real := servertest.GetEvents(t, "http://"+c.Servers[0].HTTPAddr()+"/v1/watch", nil)
	real.Wait(5*time.Second, "snapshot", func(evs []servertest.Event, _ []string) bool { return len(evs) > 0 })
	start := time.Now()
	c.Stop(0)
	for name, s := range map[string]*servertest.EventStream{"idle": idle, "real": real} {
		if err := s.WaitEnd(10 * time.Second); !errors.Is(err, io.EOF) {
			t.Errorf("%s stream ended with %v, want the server to close it (EOF)", name, err)
		}
	}
	t.Logf("streams ended %v after the server was told to stop", time.Since(start))
}

func eventRev(t *testing.T, ev servertest.Event) int64 {
	t.Helper()
	rev, err := strconv.ParseInt(ev.ID, 10, 64)
	if err != nil {
		t.Fatalf("event id %q is not a revision", ev.ID)
	}
	return rev
}
