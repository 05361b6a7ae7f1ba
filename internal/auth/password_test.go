package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func newTestHasher(t testing.TB, p PasswordParams) *PasswordHasher {
	t.Helper()
	h, err := NewPasswordHasher(p)
	if err != nil {
		t.Fatalf("NewPasswordHasher: %v", err)
	}
	return h
}

func TestPasswordRoundTrip(t *testing.T) {
	ctx := context.Background()
	h := newTestHasher(t, TestPasswordParams())
	for _, pw := range []string{"correct horse battery staple", "pässwörd✓", strings.Repeat("x", MaxPasswordBytes), ""} {
		enc, err := h.Hash(ctx, pw)
		if err != nil {
			t.Fatalf("Hash(%q): %v", pw, err)
		}
		if !strings.HasPrefix(enc, "$argon2id$v=19$m=64,t=1,p=1$") {
			t.Fatalf("encoding %q lacks the parameters", enc)
		}
		if err := h.Verify(ctx, enc, pw); err != nil {
			t.Fatalf("Verify(right password): %v", err)
		}
		if err := h.Verify(ctx, enc, pw+"!"); !errors.Is(err, ErrPasswordMismatch) {
			t.Fatalf("Verify(wrong password) = %v, want ErrPasswordMismatch", err)
		}
		enc2, err := h.Hash(ctx, pw)
		if err != nil {
			t.Fatal(err)
		}
		if enc2 == enc {
			t.Fatal("two hashes of one password are equal: salt not random")
		}
	}
}

func TestPasswordTooLong(t *testing.T) {
	h := newTestHasher(t, TestPasswordParams())
	if _, err := h.Hash(context.Background(), strings.Repeat("x", MaxPasswordBytes+1)); !errors.Is(err, ErrPasswordTooLong) {
		t.Fatalf("Hash(too long) = %v", err)
	}
	enc, _ := h.Hash(context.Background(), "abcdefgh")
	if err := h.Verify(context.Background(), enc, strings.Repeat("x", MaxPasswordBytes+1)); !errors.Is(err, ErrPasswordMismatch) {
		t.Fatalf("Verify(too long) = %v", err)
	}
}

func TestPasswordParamsChange(t *testing.T) {
	ctx := context.Background()
	oldP := TestPasswordParams()
	newP := TestPasswordParams()
	newP.Time, newP.MemoryKiB, newP.KeyLen, newP.SaltLen = 2, 128, 24, 20
	oldH, newH := newTestHasher(t, oldP), newTestHasher(t, newP)
	enc, err := oldH.Hash(ctx, "password1")
	if err != nil {
		t.Fatal(err)
	}
	if err := newH.Verify(ctx, enc, "password1"); err != nil {
		t.Fatalf("a hash made with old parameters does not verify: %v", err)
	}
	if !newH.NeedsRehash(enc) {
		t.Fatal("NeedsRehash = false for old parameters")
	}
	if oldH.NeedsRehash(enc) {
		t.Fatal("NeedsRehash = true for current parameters")
	}
	if !newH.NeedsRehash("garbage") {
		t.Fatal("NeedsRehash = false for garbage")
	}
	enc2, _ := newH.Hash(ctx, "password1")
	if !strings.Contains(enc2, "$m=128,t=2,p=1$") {
		t.Fatalf("new hash %q does not carry the new parameters", enc2)
	}
}

func TestPasswordMalformedHash(t *testing.T) {
	h := newTestHasher(t, TestPasswordParams())
	good, _ := h.Hash(context.Background(), "password1")
	parts := strings.Split(good, "$")
	salt, key := parts[4], parts[5]
	tests := []struct{ name, enc string }{
		{"empty", ""},
		{"bcrypt", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{"argon2i", "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key},
		{"version", "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key},
		{"missing param", "$argon2id$v=19$m=64,t=1$" + salt + "$" + key},
		{"unknown param", "$argon2id$v=19$m=64,t=1,p=1,x=2$" + salt + "$" + key},
		{"zero time", "$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + key},
		{"zero threads", "$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + key},
		{"huge memory", "$argon2id$v=19$m=4194304,t=1,p=1$" + salt + "$" + key},
		{"huge time", "$argon2id$v=19$m=64,t=100000,p=1$" + salt + "$" + key},
		{"huge threads", "$argon2id$v=19$m=64,t=1,p=255$" + salt + "$" + key},
		{"negative", "$argon2id$v=19$m=-64,t=1,p=1$" + salt + "$" + key},
		{"bad salt", "$argon2id$v=19$m=64,t=1,p=1$!!!$" + key},
		{"short salt", "$argon2id$v=19$m=64,t=1,p=1$AAAA$" + key},
		{"short key", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$AAAA"},
		{"padded salt", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + key},
		{"extra field", good + "$x"},
		{"too long", good + strings.Repeat("A", 600)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := h.Verify(context.Background(), tt.enc, "password1"); !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("Verify = %v, want ErrMalformedHash", err)
			}
		})
	}
}

func TestPasswordBadParams(t *testing.T) {
	tests := []PasswordParams{
		{MemoryKiB: 2 << 20},
		{Time: 1000},
		{SaltLen: 4},
		{KeyLen: 8},
		{Threads: 4, MemoryKiB: 16},
	}
	for _, p := range tests {
		if _, err := NewPasswordHasher(p); err == nil {
			t.Errorf("NewPasswordHasher(%+v) accepted bad parameters", p)
		}
	}
	h := newTestHasher(t, PasswordParams{MemoryKiB: 64, Time: 1})
	if got := h.Params(); got.Threads != 1 || got.SaltLen != 16 || got.KeyLen != 32 || got.Concurrency != 4 {
		t.Fatalf("zero fields did not take defaults: %+v", got)
	}
}

func TestDummyVerify(t *testing.T) {
	h := newTestHasher(t, TestPasswordParams())
	if err := h.DummyVerify(context.Background(), "anything"); !errors.Is(err, ErrPasswordMismatch) {
		t.Fatalf("DummyVerify = %v", err)
	}
}

func TestPasswordConcurrencyLimit(t *testing.T) {
	p := TestPasswordParams()
	p.Concurrency = 1
	h := newTestHasher(t, p)
	enc, _ := h.Hash(context.Background(), "password1")
	// Hold the only slot: callers wait, and give up with their context.
	if err := h.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := h.Verify(ctx, enc, "password1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Verify with no free slot = %v, want deadline exceeded", err)
	}
	if _, err := h.Hash(ctx, "password1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Hash with no free slot = %v, want deadline exceeded", err)
	}
	h.release()
	if err := h.Verify(context.Background(), enc, "password1"); err != nil {
		t.Fatalf("Verify after release: %v", err)
	}
}

func BenchmarkPasswordVerifyDefault(b *testing.B) {
	h := newTestHasher(b, DefaultPasswordParams())
	enc, _ := h.Hash(context.Background(), "password1")
	b.ReportAllocs()
	for b.Loop() {
		if err := h.Verify(context.Background(), enc, "password1"); err != nil {
			b.Fatal(err)
		}
	}
}
