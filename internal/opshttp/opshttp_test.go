package opshttp

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

func TestHandler(t *testing.T) {
	var ready atomic.Bool
	api := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := Handler(api, &ready)
	get := func(path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec.Code
	}
	if c := get("/readyz"); c != http.StatusServiceUnavailable {
		t.Fatalf("readyz before ready: %d", c)
	}
	ready.Store(true)
	for path, want := range map[string]int{"/readyz": 200, "/healthz": 200, "/metrics": 200, "/api/v1/x": http.StatusTeapot,
		"/debug/pprof/": http.StatusTeapot /* off unless GOIM_PPROF=1: the API gets it */} {
		if c := get(path); c != want {
			t.Errorf("%s: %d, want %d", path, c, want)
		}
	}
	t.Setenv("GOIM_PPROF", "1")
	h = Handler(nil, &ready)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/", nil))
	if rec.Code != 200 {
		t.Fatalf("pprof with GOIM_PPROF=1: %d", rec.Code)
	}
}
