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
