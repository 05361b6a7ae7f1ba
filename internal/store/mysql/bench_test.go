package mysql

import (
	"context"
	"testing"
)

// The send path's relation checks on a cache miss: one primary-key lookup
// each, through a prepared statement (one round trip to the server).
func BenchmarkRelationLookups(b *testing.B) {
	s := openTest(b, testDSN(b))
	a, bb := seedPair(b, s)
	ctx := context.Background()
	lookups := []struct {
		name string
		fn   func() error
	}{
		{"Friend", func() error { _, err := s.Friend(ctx, a, bb); return err }},
		{"IsBlocked", func() error { _, err := s.IsBlocked(ctx, a, bb); return err }},
		{"Member", func() error { _, err := s.Member(ctx, seedGroup, bb); return err }},
		{"UserByID", func() error { _, err := s.UserByID(ctx, a); return err }},
	}
	for _, l := range lookups {
		if err := l.fn(); err != nil {
			b.Fatalf("%s: %v", l.name, err)
		}
		b.Run(l.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := l.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(l.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := l.fn(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// The three checks of one group message (sender is a member, not muted)
// and of one direct message (friend, not blocked), back to back.
func BenchmarkSendPathChecks(b *testing.B) {
	s := openTest(b, testDSN(b))
	a, bb := seedPair(b, s)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Friend(ctx, bb, a); err != nil {
			b.Fatal(err)
		}
		if _, err := s.IsBlocked(ctx, bb, a); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Member(ctx, seedGroup, a); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAddRemoveMember(b *testing.B) {
	s := openTest(b, testDSN(b))
	_, bb := seedPair(b, s)
	ctx := context.Background()
	if err := s.RemoveMember(ctx, seedGroup, bb); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.AddMembers(ctx, seedGroup, []int64{bb}, 0); err != nil {
			b.Fatal(err)
		}
		if err := s.RemoveMember(ctx, seedGroup, bb); err != nil {
			b.Fatal(err)
		}
	}
}
