package client

import (
	"context"
	"testing"

	"github.com/goimdev/goim/protocol"
)

// BenchmarkRequest measures one request/reply round trip (Op 1000 echoed as
// Op 1001 by the fake server) over loopback.
func BenchmarkRequest(b *testing.B) {
	for _, tr := range transports {
		b.Run(tr, func(b *testing.B) {
			s := newFakeServer(b, tr)
			c := dialT(b, testConfig(s, tr))
			body := []byte("0123456789abcdef0123456789abcdef")
			ctx := context.Background()
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				p, err := c.Request(ctx, 1000, body)
				if err != nil || p.Op != 1001 {
					b.Fatalf("%v op %d", err, p.Op)
				}
			}
		})
	}
}

// BenchmarkRequestParallel pipelines requests from several goroutines on
// one connection.
func BenchmarkRequestParallel(b *testing.B) {
	for _, tr := range transports {
		b.Run(tr, func(b *testing.B) {
			s := newFakeServer(b, tr)
			c := dialT(b, testConfig(s, tr))
			body := []byte("0123456789abcdef0123456789abcdef")
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := c.Request(ctx, 1000, body); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkPush measures receiving server pushes, batched as comet does.
func BenchmarkPush(b *testing.B) {
	s := newFakeServer(b, TransportTCP)
	c := dialT(b, testConfig(s, TransportTCP))
	fc := s.authedConn(b, 0)
	const perBatch = 64
	var enc [][]byte
	for range perBatch {
		enc = append(enc, protocol.Encode(protocol.Packet{Ver: 1, Op: protocol.OpEvent, Body: []byte(`{"type":"typing","conversation_id":"p_7_42","user_id":7}`)}))
	}
	batch := protocol.AppendBatch(nil, enc...)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		for i := 0; i < b.N; i += perBatch {
			if fc.writeRaw(batch) != nil {
				return
			}
		}
	}()
	for i := 0; i < (b.N+perBatch-1)/perBatch*perBatch; i++ {
		<-c.Packets()
	}
}
