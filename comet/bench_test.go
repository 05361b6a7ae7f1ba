package comet

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/cloudwego/netpoll"

	"github.com/goimdev/goim/protocol"
)

func BenchmarkReadPacket(b *testing.B) {
	pkt := protocol.Encode(protocol.Packet{Ver: 1, Op: protocol.OpSendMsg, Seq: 1, Body: make([]byte, 200)})
	lb := netpoll.NewLinkBuffer(4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		buf, _ := lb.Malloc(len(pkt))
		copy(buf, pkt)
		_ = lb.Flush()
		if _, _, err := readPacket(lb, noBlock{}, 1024, 0); err != nil {
			b.Fatal(err)
		}
		_ = lb.Release()
	}
}

func BenchmarkReadWSFrame(b *testing.B) {
	frame := wsFrameBytes(0x2, true, protocol.Encode(protocol.Packet{Ver: 1, Op: protocol.OpSendMsg, Seq: 1, Body: make([]byte, 200)}))
	lb := netpoll.NewLinkBuffer(4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		buf, _ := lb.Malloc(len(frame))
		copy(buf, frame)
		_ = lb.Flush()
		if _, _, err := readWSFrame(lb, noBlock{}, 1024); err != nil {
			b.Fatal(err)
		}
		_ = lb.Release()
	}
}

// BenchmarkPushRoom measures a room push fanned out to N connections over
// loopback, until every byte is received.
func BenchmarkPushRoom(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			cfg := testConfig()
			cfg.WSAddr = ""
			cfg.OutQueue = 1 << 16
			cfg.OutQueueBytes = 64 << 20
			s := startServer(b, cfg, &fakeLogic{})
			var received atomic.Int64
			for i := range n {
				c := dialTCP(b, s)
				c.auth("uid:"+strconv.Itoa(i+1), "", "live://bench")
				go func(conn net.Conn) {
					_, _ = io.Copy(countWriter{&received}, conn)
				}(c.c)
			}
			batch := protocol.Encode(protocol.Packet{Ver: 1, Op: 1000, Body: make([]byte, 64)})
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := s.PushRoom(ctx, "live://bench", batch); err != nil {
					b.Fatal(err)
				}
			}
			want := int64(b.N) * int64(n) * int64(len(batch))
			waitFor(b, "delivery", func() bool { return received.Load() >= want })
			b.StopTimer()
			b.ReportMetric(float64(b.N)*float64(n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

type countWriter struct{ n *atomic.Int64 }

func (w countWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}
