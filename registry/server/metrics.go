package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics live in the default registry, beside the embedded etcd member's.
var (
	metricSubscribers = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "understudy_watch_subscribers",
		Help: "Watch subscribers currently attached to this server's hub.",
	})
	metricViewChanges = promauto.NewCounter(prometheus.CounterOpts{
		Name: "understudy_view_changes_total",
		Help: "Service views changed by etcd events.",
	})
	metricRevision = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "understudy_registry_revision",
		Help: "The etcd revision the hub's views are complete up to.",
	})
	metricStale = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "understudy_registry_stale",
		Help: "1 while the hub serves its last known views because etcd has no quorum.",
	})
	metricBadKeys = promauto.NewCounter(prometheus.CounterOpts{
		Name: "understudy_registry_skipped_records_total",
		Help: "Keys or values under /understudy/v1/ that could not be read and were skipped.",
	})
	metricWatchMessages = promauto.NewCounter(prometheus.CounterOpts{
		Name: "understudy_watch_messages_sent_total",
		Help: "Messages sent on Watch streams.",
	})
)
