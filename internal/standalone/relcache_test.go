package standalone

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/goimdev/goim/internal/config"
	"github.com/goimdev/goim/internal/testenv"
)

// TestRelationCacheWiring: the server's relation cache (in-process, and
// Redis when GOIM_TEST_REDIS_ADDR is set) answers the send path's checks
// and is invalidated by the HTTP API's changes, end to end.
func TestRelationCacheWiring(t *testing.T) {
	drivers := map[string]func(t *testing.T) func(*config.Config){
		"memory": func(*testing.T) func(*config.Config) { return func(*config.Config) {} },
		"redis": func(t *testing.T) func(*config.Config) {
			addr, prefix := testenv.RedisAddr(t), testenv.RedisPrefix(t)
			return func(c *config.Config) {
				c.Cache.Driver, c.Cache.RedisAddr, c.Cache.Redis.Prefix = "redis", addr, prefix
			}
		},
	}
	for name, mut := range drivers {
		t.Run(name, func(t *testing.T) {
			s := startServer(t, mut(t))
			ctx := testCtx(t)
			a, b := newUser(t, s, "cachea"), newUser(t, s, "cacheb")
			cache := s.Cache()
			check := func(want bool) {
				t.Helper()
				for range 2 { // the second lookup is a hit
					got, err := cache.IsFriend(ctx, a.id, b.id)
					if err != nil || got != want {
						t.Fatalf("IsFriend = %v, %v; want %v", got, err, want)
					}
				}
			}
			check(false)
			var req struct {
				RequestID int64 `json:"request_id"`
			}
			if err := s.api().WithToken(a.token).Do(ctx, http.MethodPost, "/api/v1/friends/requests", map[string]any{"to_user": b.id}, &req); err != nil {
				t.Fatal(err)
			}
			if err := s.api().WithToken(b.token).Do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/friends/requests/%d/accept", req.RequestID), nil, nil); err != nil {
				t.Fatal(err)
			}
			check(true)
			if err := s.api().WithToken(b.token).Do(ctx, http.MethodDelete, fmt.Sprintf("/api/v1/friends/%d", a.id), nil, nil); err != nil {
				t.Fatal(err)
			}
			check(false)

			blocked := func(want bool) {
				t.Helper()
				for range 2 {
					got, err := cache.IsBlocked(ctx, b.id, a.id)
					if err != nil || got != want {
						t.Fatalf("IsBlocked = %v, %v; want %v", got, err, want)
					}
				}
			}
			blocked(false)
			if err := s.api().WithToken(b.token).Do(ctx, http.MethodPut, fmt.Sprintf("/api/v1/blocks/%d", a.id), nil, nil); err != nil {
				t.Fatal(err)
			}
			blocked(true)
			if st := cache.Stats(); st.Total().Hits == 0 {
				t.Fatalf("no cache hits recorded: %+v", st)
			}
		})
	}
}
