package comet

import (
	"context"
	"slices"
	"strconv"
	"testing"

	"github.com/goimdev/goim/protocol"
)

// TestPushKeysBatchOrder: every connection receives the entries that name
// it in list order, and a business op reaches only connections accepting it.
func TestPushKeysBatchOrder(t *testing.T) {
	s := startServer(t, testConfig(), &fakeLogic{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			a, b := "a-"+tr, "b-"+tr
			ca := dial(t, s, tr)
			ca.auth("uid:1", a, "")
			cb := dial(t, s, tr)
			cb.auth("uid:2", b, "", 1001)

			var keys [][]string
			var ps []protocol.Packet
			var wantA, wantB []string
			for i := range 30 {
				var k []string
				switch i % 3 {
				case 0:
					k = []string{a}
				case 1:
					k = []string{b, "nobody"}
				case 2:
					k = []string{a, b}
				}
				op := protocol.OpEvent
				if i%5 == 4 {
					op = 1001 // only b accepts it
				}
				body := strconv.Itoa(i)
				keys = append(keys, k)
				ps = append(ps, protocol.Packet{Ver: 1, Op: op, Body: []byte(body)})
				if slices.Contains(k, a) && op == protocol.OpEvent {
					wantA = append(wantA, body)
				}
				if slices.Contains(k, b) {
					wantB = append(wantB, body)
				}
			}
			if err := s.PushKeysBatch(context.Background(), keys, ps); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				cl   *client
				want []string
			}{{ca, wantA}, {cb, wantB}} {
				var got []string
				for len(got) < len(c.want) {
					p, err := c.cl.read()
					if err != nil {
						t.Fatal(err)
					}
					got = append(got, string(p.Body))
				}
				if !slices.Equal(got, c.want) {
					t.Errorf("got %v, want %v", got, c.want)
				}
			}
		})
	}
}

func TestPushKeysBatchErrors(t *testing.T) {
	s := startServer(t, testConfig(), &fakeLogic{})
	p := protocol.Packet{Ver: 1, Op: protocol.OpEvent}
	if err := s.PushKeysBatch(context.Background(), [][]string{{"k"}}, nil); err == nil {
		t.Error("mismatched lengths: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.PushKeysBatch(ctx, [][]string{{"k"}}, []protocol.Packet{p}); err == nil {
		t.Error("cancelled ctx: no error")
	}
	if err := s.PushKeysBatch(context.Background(), nil, nil); err != nil {
		t.Errorf("empty batch: %v", err)
	}
}
