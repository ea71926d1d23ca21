package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// result is what one subscriber count measured.
type result struct {
	subscribers int
	samples     []sample
	rssBefore   int64 // server VmRSS before any subscriber, bytes
	rssAfter    int64 // server VmRSS with every subscriber attached, bytes
}

// rssPerSubscriber is the server's memory growth divided among subscribers.
// It can come out slightly negative when the Go heap shrinks meanwhile.
func (r result) rssPerSubscriber() float64 {
	return float64(r.rssAfter-r.rssBefore) / float64(r.subscribers)
}

// percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of the
// durations pick selects from samples.
func percentile(samples []sample, p float64, pick func(sample) time.Duration) time.Duration {
	ds := make([]time.Duration, len(samples))
	for i, s := range samples {
		ds[i] = pick(s)
	}
	return nearestRank(ds, p)
}

// nearestRank returns the nearest-rank p-th percentile (0 < p ≤ 100) of ds,
// 0 when ds is empty. ds is left unsorted.
func nearestRank(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Sorted(slices.Values(ds))
	rank := int(math.Ceil(p / 100 * float64(len(ds))))
	return ds[min(max(rank, 1), len(ds))-1]
}

func lastOf(s sample) time.Duration  { return s.last }
func firstOf(s sample) time.Duration { return s.first }
func putOf(s sample) time.Duration   { return s.put }

// printTable writes the figures as an aligned table.
func printTable(w io.Writer, opts options, results []result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "watch fan-out (write → last subscriber), %d writes each\n", opts.writes)
	tw := tabwriter.NewWriter(&b, 0, 8, 3, ' ', 0)
	// The writes land in b, a strings.Builder, which cannot fail.
	row := func(cells ...string) { _, _ = io.WriteString(tw, strings.Join(cells, "\t")+"\n") }
	row("subscribers", "p50", "p99", "max", "rss/subscriber", "rss before", "rss after")
	for _, r := range results {
		row(strconv.Itoa(r.subscribers),
			fmtDur(percentile(r.samples, 50, lastOf)),
			fmtDur(percentile(r.samples, 99, lastOf)),
			fmtDur(percentile(r.samples, 100, lastOf)),
			fmtKiB(r.rssPerSubscriber()),
			fmtBytes(r.rssBefore), fmtBytes(r.rssAfter))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// jsonReport is the -json file: the table's figures plus two that help read
// them (first subscriber, and the etcd write itself).
type jsonReport struct {
	Writes   int           `json:"writes"`
	Warmup   int           `json:"warmup_writes"`
	Results  []jsonResult  `json:"results"`
	Failover *jsonFailover `json:"failover,omitempty"`
}

type jsonResult struct {
	Subscribers           int     `json:"subscribers"`
	P50Ms                 float64 `json:"p50_ms"`
	P99Ms                 float64 `json:"p99_ms"`
	MaxMs                 float64 `json:"max_ms"`
	FirstSubscriberP50Ms  float64 `json:"first_subscriber_p50_ms"`
	EtcdPutP50Ms          float64 `json:"etcd_put_p50_ms"`
	RSSBeforeBytes        int64   `json:"rss_before_bytes"`
	RSSAfterBytes         int64   `json:"rss_after_bytes"`
	RSSPerSubscriberBytes float64 `json:"rss_per_subscriber_bytes"`
}

func writeJSON(path string, opts options, results []result, failover *jsonFailover) error {
	rep := jsonReport{Writes: opts.writes, Warmup: opts.warmup, Failover: failover}
	for _, r := range results {
		rep.Results = append(rep.Results, jsonResult{
			Subscribers:           r.subscribers,
			P50Ms:                 ms(percentile(r.samples, 50, lastOf)),
			P99Ms:                 ms(percentile(r.samples, 99, lastOf)),
			MaxMs:                 ms(percentile(r.samples, 100, lastOf)),
			FirstSubscriberP50Ms:  ms(percentile(r.samples, 50, firstOf)),
			EtcdPutP50Ms:          ms(percentile(r.samples, 50, putOf)),
			RSSBeforeBytes:        r.rssBefore,
			RSSAfterBytes:         r.rssAfter,
			RSSPerSubscriberBytes: math.Round(r.rssPerSubscriber()),
		})
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("-json: %w", err)
	}
	return nil
}

// ms is d in milliseconds, rounded to microseconds.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// fmtDur keeps about three significant digits: 0.85ms, 12.3ms, 1.20s.
func fmtDur(d time.Duration) string {
	m := float64(d) / 1e6
	switch {
	case m < 10:
		return fmt.Sprintf("%.2fms", m)
	case m < 1000:
		return fmt.Sprintf("%.1fms", m)
	default:
		return fmt.Sprintf("%.2fs", m/1000)
	}
}

func fmtKiB(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }

func fmtBytes(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
