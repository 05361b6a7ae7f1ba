package job

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Push types, the values of the "type" label.
const (
	typeKeys      = "keys"
	typeRoom      = "room"
	typeBroadcast = "broadcast"
)

var (
	metricPushes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_job_pushes_total",
		Help: "Push messages consumed from the bus, by type (keys, room, broadcast).",
	}, []string{"type"})
	metricRoomBatches = promauto.NewCounter(prometheus.CounterOpts{
		Name: "goim_job_room_batches_total",
		Help: "Room batches flushed (each sent to every comet with members in the room).",
	})
	metricRoomBatchSize = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "goim_job_room_batch_size",
		Help:    "Messages per room batch.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 10), // 1 .. 512
	})
	metricKeysBatches = promauto.NewCounter(prometheus.CounterOpts{
		Name: "goim_job_keys_batches_total",
		Help: "PushKeysBatch calls to the comets (the keys pushes of one bus batch for one comet).",
	})
	metricKeysBatchSize = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "goim_job_keys_batch_size",
		Help:    "Keys pushes per PushKeysBatch call.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 10), // 1 .. 512
	})
	metricPushErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_job_push_errors_total",
		Help: "Failed Comet calls and session registry lookups, by push type; a failed PushKeysBatch counts each keys push it carried.",
	}, []string{"type"})
	metricDropped = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_job_dropped_total",
		Help: "Push messages dropped, by reason (corrupt, unknown_server).",
	}, []string{"reason"})

	pushesKeys      = metricPushes.WithLabelValues(typeKeys)
	pushesRoom      = metricPushes.WithLabelValues(typeRoom)
	pushesBroadcast = metricPushes.WithLabelValues(typeBroadcast)
	droppedCorrupt  = metricDropped.WithLabelValues("corrupt")
	droppedUnknown  = metricDropped.WithLabelValues("unknown_server")
)
