// Package opshttp is the HTTP server every GoIM process runs for operations:
// /healthz, /readyz, /metrics (Prometheus), /debug/pprof when GOIM_PPROF=1,
// and, on a process that has one, the API under everything else.
package opshttp

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler routes the operations endpoints, and api (may be nil) for every
// other path. /readyz answers 503 until ready holds true.
func Handler(api http.Handler, ready *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	if api != nil {
		mux.Handle("/", api)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"not_ready"}`))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ready"}`))
	})
	mux.Handle("GET /metrics", promhttp.Handler())
	if os.Getenv("GOIM_PPROF") == "1" {
		// Opt-in profiling (benchmarks): never served by default.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Server returns an http.Server for h with GoIM's limits: header, read,
// write and idle timeouts, a 64 KiB header cap, errors logged at warn.
func Server(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}
