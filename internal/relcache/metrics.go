package relcache

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// lookup kinds, the values of the "kind" label of lookups.
const (
	lkFriend = iota
	lkBlock
	lkMember
	numLookupKinds
)

var lookupKindNames = [numLookupKinds]string{"friend", "block", "member"}

var (
	metricLookups = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_relcache_lookups_total",
		Help: "Relation lookups by kind (friend, block, member) and result (hit, miss). A miss queried the store.",
	}, []string{"kind", "result"})
	metricErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_relcache_errors_total",
		Help: "Failed relation cache backend calls, by backend (memory, redis); lookups then read the store.",
	}, []string{"backend"})
	metricInvalidations = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_relcache_invalidations_total",
		Help: "Relation cache invalidation calls, by kind (friend, block, member, group).",
	}, []string{"kind"})
	metricLost = promauto.NewCounter(prometheus.CounterOpts{
		Name: "goim_relcache_invalidations_lost_total",
		Help: "Invalidated keys dropped because the backend was failing and the pending queue was full (stale until TTL).",
	})
	metricEvictions = promauto.NewCounter(prometheus.CounterOpts{
		Name: "goim_relcache_memory_evictions_total",
		Help: "Entries evicted from the in-process relation cache to stay within max_entries.",
	})

	lookupHits, lookupMisses [numLookupKinds]prometheus.Counter
)

func init() {
	for i, k := range lookupKindNames {
		lookupHits[i] = metricLookups.WithLabelValues(k, "hit")
		lookupMisses[i] = metricLookups.WithLabelValues(k, "miss")
	}
}
