package comet

import (
	"context"
	"testing"
	"time"
)

// TestShutdownRightAfterStart: a Shutdown that comes before the event
// loops' Serve goroutines set their servers up must still stop them (it
// used to leave Serve waiting forever and Shutdown timed out).
func TestShutdownRightAfterStart(t *testing.T) {
	for range 20 {
		s, err := New(testConfig(), &fakeLogic{}, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = s.Shutdown(ctx)
		cancel()
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	}
}
