package msgcache

import "github.com/prometheus/client_golang/prometheus"

// MetricLookups returns the lookups counter of result (tests).
func MetricLookups(result string) prometheus.Counter { return metricLookups.WithLabelValues(result) }
