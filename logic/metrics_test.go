package logic

import (
	"context"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	reqs := httpRequests.WithLabelValues("POST /api/v1/auth/register", "400")
	unmatched := httpRequests.WithLabelValues("unmatched", "404")
	okConn := connects.WithLabelValues(connectOK)
	badConn := connects.WithLabelValues(connectUnauthorized)
	room := pushes.WithLabelValues("room")
	before := []float64{counterValue(t, reqs), counterValue(t, unmatched), counterValue(t, okConn), counterValue(t, badConn), counterValue(t, room)}

	if st, _ := e.do(t, "POST", "/api/v1/auth/register", "{}"); st != http.StatusBadRequest {
		t.Fatalf("register: %d", st)
	}
	if st, _ := e.do(t, "GET", "/nope", nil); st != http.StatusNotFound {
		t.Fatalf("unmatched: %d", st)
	}
	_, tok := e.signup(t, "metrics")
	if _, err := e.svc.Connect(context.Background(), connectReq(authBody(t, map[string]any{"token": tok}))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Connect(context.Background(), connectReq(`{"token":"bad"}`)); err == nil {
		t.Fatal("bad token accepted")
	}
	if st, _ := e.do(t, "POST", "/goim/push/room?operation=1000&type=live&room=1", "x"); st != http.StatusOK {
		t.Fatalf("push room: %d", st)
	}
	after := []float64{counterValue(t, reqs), counterValue(t, unmatched), counterValue(t, okConn), counterValue(t, badConn), counterValue(t, room)}
	for i, name := range []string{"http 400 register", "http unmatched", "connect ok", "connect unauthorized", "push room"} {
		if after[i]-before[i] != 1 {
			t.Errorf("%s counter moved by %v, want 1", name, after[i]-before[i])
		}
	}
}
