package logic

import (
	"context"
	"fmt"
	"testing"

	"github.com/goimdev/goim/internal/session"
)

func BenchmarkAuthorize(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i&1 == 0 {
			_ = authorize(ActGroupKick, RelAdmin, RelMember) // allowed: no allocation
		} else {
			_ = authorize(ActGroupMute, RelMember, RelAdmin) // refused via the "*" row
		}
	}
}

// BenchmarkEmitGroupEvent measures one group_changed event to 500 members
// with one device each on 4 comets: registry lookup, encoding, one push
// message per comet.
func BenchmarkEmitGroupEvent(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	users := make([]int64, 500)
	for i := range users {
		users[i] = int64(i + 1)
		if err := e.reg.Add(ctx, session.Session{UserID: users[i], Key: fmt.Sprintf("k%d", i), Server: fmt.Sprintf("comet-%d", i%4)}); err != nil {
			b.Fatal(err)
		}
	}
	ev := groupEvent{Type: evGroupChanged, GroupID: 3, Change: changeMemberKicked, UserIDs: []int64{7}, By: 1, Version: 12}
	b.ReportAllocs()
	for b.Loop() {
		e.svc.emit(ctx, evGroupChanged, users, ev)
		e.bus.mu.Lock()
		e.bus.msgs = e.bus.msgs[:0]
		e.bus.mu.Unlock()
	}
}
