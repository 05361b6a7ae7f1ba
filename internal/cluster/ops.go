package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// opsServer is a process's HTTP server: /healthz, /readyz, /metrics, and
// the logic's API when api is set.
type opsServer struct {
	ln    net.Listener
	srv   *http.Server
	done  chan error
	ready atomic.Bool
}

func startOps(addr string, api http.Handler, log *slog.Logger) (*opsServer, error) {
	o := &opsServer{done: make(chan error, 1)}
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
		if !o.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"not_ready"}`))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ready"}`))
	})
	mux.Handle("GET /metrics", promhttp.Handler())
	if os.Getenv("GOIM_PPROF") == "1" {
		// Opt-in profiling (benchmarks): never on a public address by default.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	o.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen: %w", err)
	}
	o.ln = ln
	go func() { o.done <- o.srv.Serve(ln) }()
	return o, nil
}

func (o *opsServer) addr() string { return o.ln.Addr().String() }

func (o *opsServer) stop(ctx context.Context) error {
	o.ready.Store(false)
	err := o.srv.Shutdown(ctx)
	if serr := <-o.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
