package mysql

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// txRetries counts transactions re-run after losing a deadlock.
var txRetries = promauto.NewCounter(prometheus.CounterOpts{
	Name: "goim_store_mysql_tx_retries_total",
	Help: "MySQL store transactions re-run after a deadlock.",
})
