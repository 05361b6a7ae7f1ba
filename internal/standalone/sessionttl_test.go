package standalone

import (
	"testing"
	"time"
)

func TestSessionTTLCoversThreeHeartbeats(t *testing.T) {
	for _, hb := range []time.Duration{0, time.Second, 30 * time.Second, 5 * time.Minute, time.Hour} {
		eff := hb
		if eff == 0 {
			eff = 30 * time.Second // the comet's default
		}
		if got := sessionTTL(hb); got < 3*eff {
			t.Errorf("sessionTTL(%v) = %v, want at least %v", hb, got, 3*eff)
		}
	}
}
