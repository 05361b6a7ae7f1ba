package logic

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	httpRequests = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_logic_http_requests_total",
		Help: "HTTP API requests by route pattern and status code.",
	}, []string{"route", "code"})
	connects = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_logic_connects_total",
		Help: "Connection authentications (comet Connect) by result.",
	}, []string{"result"})
	pushes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_logic_pushes_total",
		Help: "Push API requests published on the bus, by type (keys, mids, room, all).",
	}, []string{"type"})
	events = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_logic_events_total",
		Help: "Op 22 relation events published on the bus, by event type.",
	}, []string{"type"})
	eventErrors = promauto.NewCounter(prometheus.CounterOpts{
		Name: "goim_logic_event_errors_total",
		Help: "Op 22 relation events not published (session lookup or bus failure); the change itself was made.",
	})
	cacheInvalidateErrors = promauto.NewCounter(prometheus.CounterOpts{
		Name: "goim_logic_cache_invalidate_errors_total",
		Help: "Relation cache invalidations that failed after a change.",
	})
	relationChanges = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_logic_relation_changes_total",
		Help: "Committed relation changes by action (friend.request, group.kick, ...).",
	}, []string{"action"})
	permissionDenials = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_logic_permission_denials_total",
		Help: "Relation actions refused by the permission table, by action and code.",
	}, []string{"action", "code"})
)

// Connect results.
const (
	connectOK           = "ok"
	connectBadRequest   = "bad_request"
	connectUnauthorized = "unauthorized"
	connectLegacyRefuse = "legacy_refused"
	connectKeyInUse     = "key_in_use"
	connectError        = "error"
)

// Messaging metrics.
var (
	sends = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_logic_messages_sent_total",
		Help: "Message sends (Op 4 and POST /api/v1/messages) by result: ok, duplicate, or the refusal code.",
	}, []string{"result"})
	commitBatchSize = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "goim_logic_commit_batch_messages",
		Help:    "Messages per group commit (one AppendMessages transaction).",
		Buckets: prometheus.ExponentialBuckets(1, 2, 13),
	})
	commitSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "goim_logic_commit_seconds",
		Help:    "Duration of one group commit.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	})
	commitErrors = promauto.NewCounter(prometheus.CounterOpts{
		Name: "goim_logic_commit_errors_total",
		Help: "Group commits that failed (every message of the batch answered unavailable).",
	})
	commitRetries = promauto.NewCounter(prometheus.CounterOpts{
		Name: "goim_logic_commit_retries_total",
		Help: "Group commits retried once after a failure (nothing was stored by the failed attempt).",
	})
	typingDropped = promauto.NewCounter(prometheus.CounterOpts{
		Name: "goim_logic_typing_dropped_total",
		Help: "Typing packets dropped (rate limit, not a participant, malformed).",
	})
)
