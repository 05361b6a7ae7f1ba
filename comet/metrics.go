package comet

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Package-level metrics on the default registry: several servers in one
// process share them.
var (
	metricConns = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "goim_comet_connections",
		Help: "Open client connections (authenticated or not), by transport.",
	}, []string{"transport"})
	metricRooms = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "goim_comet_rooms",
		Help: "Rooms with at least one local member.",
	})
	metricPushes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_comet_pushes_total",
		Help: "Push calls received, by kind (keys, room, broadcast).",
	}, []string{"kind"})
	metricDropped = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_comet_dropped_total",
		Help: "Connections cut for not keeping up, by reason (queue_full, write_timeout).",
	}, []string{"reason"})
	metricBytes = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_comet_bytes_total",
		Help: "Client bytes read (in) and written (out), framing included.",
	}, []string{"direction"})
	metricCloses = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "goim_comet_closes_total",
		Help: "Connections closed by the server, by Op 6 code (protocol_error: closed without Op 6).",
	}, []string{"code"})

	metricConnsTCP  = metricConns.WithLabelValues(transportTCP)
	metricConnsWS   = metricConns.WithLabelValues(transportWS)
	metricPushKeys  = metricPushes.WithLabelValues("keys")
	metricPushRoom  = metricPushes.WithLabelValues("room")
	metricPushAll   = metricPushes.WithLabelValues("broadcast")
	metricDropFull  = metricDropped.WithLabelValues("queue_full")
	metricDropWrite = metricDropped.WithLabelValues("write_timeout")
	metricBytesIn   = metricBytes.WithLabelValues("in")
	metricBytesOut  = metricBytes.WithLabelValues("out")
)
