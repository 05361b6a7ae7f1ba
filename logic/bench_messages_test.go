package logic

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/goimdev/goim/comet"
	"github.com/goimdev/goim/internal/pushmsg"
	"github.com/goimdev/goim/internal/relcache"
	"github.com/goimdev/goim/internal/session"
	"github.com/goimdev/goim/internal/store"
	"github.com/goimdev/goim/protocol"
)

// BenchmarkSendGroupCommit measures the send path through Receive (Op 4:
// validation, group commit on SQLite, SendAck) with many concurrent
// senders, each on its own connection writing to its own peer. Event
// fan-out runs too (the peers are online). Reported: msgs/s.
func BenchmarkSendGroupCommit(b *testing.B) {
	for _, senders := range []int{1, 16, 128} {
		b.Run(strconv.Itoa(senders), func(b *testing.B) { benchSend(b, senders) })
	}
}

func benchSend(b *testing.B, senders int) {
	// As in the one-process server: relation checks through the in-memory
	// relation cache.
	st := openSQLite(b)
	cache := relcache.New(relcache.NewMemory(relcache.MemoryConfig{}), st, relcache.Config{})
	e := newEnvStore(b, st, cache, noRateLimit)
	ctx := context.Background()
	ids := make([]int64, 2*senders)
	for i := range ids {
		u := &store.User{Username: fmt.Sprintf("bench%d", i), PasswordHash: "x"}
		id, err := e.st.CreateUser(ctx, u)
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = id
	}
	for i := senders; i < 2*senders; i++ {
		if err := e.reg.Add(ctx, session.Session{UserID: ids[i], Key: fmt.Sprint("peer", i), Server: testComet}); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism((senders + 1) / 2) // GOMAXPROCS is 2 here
	commits0, msgs0 := commitStats(b)
	start := time.Now()
	b.ResetTimer()
	send := func(i int) {
		body := fmt.Appendf(nil, `{"client_msg_id":"b%d","to_user":%d,"type":1,"content":{"text":"benchmark message"}}`, seq.Add(1), ids[senders+i])
		p, err := e.svc.Receive(ctx, &comet.ReceiveRequest{Server: testComet, UserID: ids[i], Key: "k" + strconv.Itoa(i), Packet: protocol.Packet{Ver: 1, Op: protocol.OpSendMsg, Seq: 1, Body: body}})
		if err != nil || p.Body[8] != '0' { // {"code":0,...
			b.Errorf("send: %v %s", err, p.Body) // not Fatal: RunParallel goroutines
		}
	}
	if senders == 1 {
		for range b.N {
			send(0)
		}
	} else {
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(1)-1) % senders
			for pb.Next() {
				send(i)
			}
		})
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	commits, msgs := commitStats(b)
	if commits > commits0 {
		b.ReportMetric((msgs-msgs0)/float64(commits-commits0), "msgs/commit")
	}
}

// commitStats reads the commit batch histogram: commits and messages.
func commitStats(b *testing.B) (uint64, float64) {
	var m dto.Metric
	if err := commitBatchSize.Write(&m); err != nil {
		b.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// BenchmarkSendLargeGroup measures sends into one 500-member group (above
// the read-diffusion threshold) with every member online on one comet:
// 8 concurrent senders through Receive. Reported: msgs/s and deliveries/s
// (device keys the events were published to).
func BenchmarkSendLargeGroup(b *testing.B) {
	const members, senders = 500, 8
	st := openSQLite(b)
	cache := relcache.New(relcache.NewMemory(relcache.MemoryConfig{}), st, relcache.Config{})
	e := newEnvStore(b, st, cache, noRateLimit)
	ctx := context.Background()
	ids := make([]int64, members)
	for i := range ids {
		id, err := e.st.CreateUser(ctx, &store.User{Username: fmt.Sprintf("g%d", i), PasswordHash: "x"})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = id
		if err := e.reg.Add(ctx, session.Session{UserID: id, Key: fmt.Sprint("m", i), Server: testComet}); err != nil {
			b.Fatal(err)
		}
	}
	group, err := e.st.CreateGroup(ctx, &store.Group{OwnerID: ids[0], Name: "big", MaxMembers: 1000}, ids[1:])
	if err != nil {
		b.Fatal(err)
	}
	var next, seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(senders / 2)
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(next.Add(1)-1) % members
		for pb.Next() {
			body := fmt.Appendf(nil, `{"client_msg_id":"g%d","group_id":%d,"type":1,"content":{"text":"to everyone"}}`, seq.Add(1), group)
			p, err := e.svc.Receive(ctx, &comet.ReceiveRequest{Server: testComet, UserID: ids[i], Key: fmt.Sprint("m", i), Packet: protocol.Packet{Ver: 1, Op: protocol.OpSendMsg, Seq: 1, Body: body}})
			if err != nil || p.Body[8] != '0' {
				b.Errorf("send: %v %s", err, p.Body) // not Fatal: RunParallel goroutines
				return
			}
		}
	})
	// Wait for the fan-out of the last message, then count deliveries.
	e.svc.Close()
	b.StopTimer()
	el := time.Since(start).Seconds()
	var deliveries int
	e.bus.mu.Lock()
	for _, bm := range e.bus.msgs {
		var m pushmsg.Msg
		if err := m.Unmarshal(bm.Value); err != nil {
			b.Fatal(err)
		}
		deliveries += len(m.Keys)
	}
	e.bus.mu.Unlock()
	b.ReportMetric(float64(b.N)/el, "msgs/s")
	b.ReportMetric(float64(deliveries)/el, "deliveries/s")
}
