package msgcache

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	metricLookups = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_msgcache_lookups_total",
		Help: "Message page reads by result: hit (served from the recent-message cache) or miss (read from the store).",
	}, []string{"result"})
	metricErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_msgcache_errors_total",
		Help: "Failed message cache backend calls, by backend (memory, redis); reads then use the store.",
	}, []string{"backend"})
	metricDrops = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_msgcache_drops_total",
		Help: "Conversation windows dropped, by reason: gap (a commit the cache did not see), recall, error (a failed write).",
	}, []string{"reason"})
	metricLost = promauto.NewCounter(prometheus.CounterOpts{
		Name: "goim_msgcache_invalidations_lost_total",
		Help: "Window invalidations dropped because the backend was failing and the pending queue was full.",
	})
	metricEvictions = promauto.NewCounter(prometheus.CounterOpts{
		Name: "goim_msgcache_memory_evictions_total",
		Help: "Conversation windows evicted from the in-process message cache (LRU) to stay within max_conversations.",
	})

	lookupHit  = metricLookups.WithLabelValues("hit")
	lookupMiss = metricLookups.WithLabelValues("miss")
	dropGap    = metricDrops.WithLabelValues("gap")
	dropRecall = metricDrops.WithLabelValues("recall")
	dropError  = metricDrops.WithLabelValues("error")
)
