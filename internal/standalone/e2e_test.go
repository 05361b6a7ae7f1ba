package standalone

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/goimdev/goim/client"
	"github.com/goimdev/goim/protocol"
)

// TestEndToEnd is a new user's path over each transport with the SDK:
// register, log in, connect, authenticate, heartbeat, join a room and
// receive room, mid, key and broadcast pushes, with accepts filtering.
func TestEndToEnd(t *testing.T) {
	forEachStore(t, testEndToEnd)
}

func testEndToEnd(t *testing.T, s *Server) {
	for i, transport := range []string{"tcp", "ws"} {
		t.Run(transport, func(t *testing.T) {
			ctx := testCtx(t)
			alice := newUser(t, s, fmt.Sprintf("alice%d", i))
			bob := newUser(t, s, fmt.Sprintf("bob%d", i))
			room := fmt.Sprintf("live://e2e-%s", transport)

			a := dial(t, s, transport, alice, client.Config{Accepts: []int32{1000}, Platform: "pc"})
			b := dial(t, s, transport, bob, client.Config{Room: room})
			if got := a.AuthReply(); got.UserID != alice.id || got.Key == "" || got.HeartbeatS <= 0 || got.Node == "" {
				t.Fatalf("AuthReply %+v", got)
			}

			// Heartbeat: bob is alone in his room.
			if n, err := b.Heartbeat(ctx); err != nil || n != 1 {
				t.Fatalf("bob heartbeat: online %d, err %v; want 1", n, err)
			}
			if err := a.JoinRoom(ctx, room); err != nil {
				t.Fatal(err)
			}
			if n, err := a.Heartbeat(ctx); err != nil || n != 2 {
				t.Fatalf("alice heartbeat: online %d, err %v; want 2", n, err)
			}

			api := s.api()
			// Room push: ignores accepts, reaches both.
			roomType, roomID, _ := cutRoom(room)
			if err := api.PushRoom(ctx, 1005, roomType, roomID, []byte("room-1")); err != nil {
				t.Fatal(err)
			}
			expect(t, a, 1005, "room-1")
			expect(t, b, 1005, "room-1")

			// Mid push: alice accepts 1000 only. 1001 is sent first and
			// must be filtered; 1000 then arrives.
			if err := api.PushMids(ctx, 1001, []int64{alice.id}, []byte("mid-filtered")); err != nil {
				t.Fatal(err)
			}
			if err := api.PushMids(ctx, 1000, []int64{alice.id}, []byte("mid-1")); err != nil {
				t.Fatal(err)
			}
			expect(t, a, 1000, "mid-1")

			// Key push.
			if err := api.PushKeys(ctx, 1000, []string{a.Key()}, []byte("key-1")); err != nil {
				t.Fatal(err)
			}
			expect(t, a, 1000, "key-1")

			// Sub adds 1001; Unsub removes 1000.
			if err := a.Sub(ctx, 1001); err != nil {
				t.Fatal(err)
			}
			if err := a.Unsub(ctx, 1000); err != nil {
				t.Fatal(err)
			}
			if err := api.PushKeys(ctx, 1000, []string{a.Key()}, []byte("key-unsubbed")); err != nil {
				t.Fatal(err)
			}
			if err := api.PushKeys(ctx, 1001, []string{a.Key()}, []byte("key-subbed")); err != nil {
				t.Fatal(err)
			}
			expect(t, a, 1001, "key-subbed")

			// Broadcast: reaches the connections accepting the op.
			if err := api.PushAll(ctx, 1001, 0, []byte("all-1")); err != nil {
				t.Fatal(err)
			}
			expect(t, a, 1001, "all-1")
			// bob accepts nothing: the 1001 broadcast is filtered, the
			// next room push is the first business packet he sees.
			if err := api.PushRoom(ctx, 1006, roomType, roomID, []byte("room-2")); err != nil {
				t.Fatal(err)
			}
			expect(t, b, 1006, "room-2")
			expect(t, a, 1006, "room-2")

			// Leaving the room stops room pushes.
			if err := b.JoinRoom(ctx, ""); err != nil {
				t.Fatal(err)
			}
			if err := api.PushRoom(ctx, 1007, roomType, roomID, []byte("room-3")); err != nil {
				t.Fatal(err)
			}
			expect(t, a, 1007, "room-3")
			// bob, out of the room, subscribes to 1008 and gets a mid push.
			if err := b.Sub(ctx, 1008); err != nil {
				t.Fatal(err)
			}
			if err := api.PushMids(ctx, 1008, []int64{bob.id}, []byte("mid-bob")); err != nil {
				t.Fatal(err)
			}
			expect(t, b, 1008, "mid-bob")
		})
	}
}

func cutRoom(room string) (typ, id string, ok bool) {
	i := bytes.Index([]byte(room), []byte("://"))
	if i < 0 {
		return "", "", false
	}
	return room[:i], room[i+3:], true
}

// TestTokenRefusals: forged, tampered, expired and unknown-user tokens are
// refused with Op 6 unauthorized, and the server keeps serving.
func TestTokenRefusals(t *testing.T) {
	s := startServer(t)
	good := newUser(t, s, "carol")
	expired, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject:   strconv.FormatInt(good.id, 10),
		Issuer:    "goim",
		IssuedAt:  jwt.NewNumericDate(time.Now().Add(-2 * time.Hour)),
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Hour)),
	}).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	unknown, _, err := s.Issuer().Issue(good.id+1000, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tampered := []byte(good.token)
	tampered[len(tampered)-3] ^= 'A' ^ 'B'
	tests := map[string]string{
		"empty":        "",
		"garbage":      "not.a.jwt",
		"tampered":     string(tampered),
		"expired":      expired,
		"unknown user": unknown,
		"alg none":     algNone(good.id),
	}
	for name, tok := range tests {
		for _, transport := range []string{"tcp", "ws"} {
			t.Run(name+"/"+transport, func(t *testing.T) {
				_, err := client.Dial(testCtx(t), client.Config{Addr: s.addr(transport), Transport: transport, Token: tok})
				var ae *client.AuthError
				if !errors.As(err, &ae) || ae.Code != protocol.CodeUnauthorized {
					t.Fatalf("dial with %s token: %v, want AuthError unauthorized", name, err)
				}
				c := dial(t, s, transport, good, client.Config{})
				if _, err := c.Heartbeat(testCtx(t)); err != nil {
					t.Fatalf("server stopped serving after a %s token: %v", name, err)
				}
			})
		}
	}
}

func algNone(uid int64) string {
	enc := func(s string) string { return base64URL([]byte(s)) }
	return enc(`{"alg":"none","typ":"JWT"}`) + "." +
		enc(`{"sub":"`+strconv.FormatInt(uid, 10)+`","iss":"goim","exp":4102444800}`) + "."
}

func be32(n int32) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, uint32(n))
	return b
}

func base64URL(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
