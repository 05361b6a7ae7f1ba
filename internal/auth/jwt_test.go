package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func newTestIssuer(t testing.TB) *Issuer {
	t.Helper()
	i, err := NewIssuer(testSecret, "goim-test")
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestNewIssuer(t *testing.T) {
	if _, err := NewIssuer(testSecret[:31], "goim"); err == nil {
		t.Fatal("NewIssuer accepted a 31-byte secret")
	}
	if _, err := NewIssuer(nil, "goim"); err == nil {
		t.Fatal("NewIssuer accepted a nil secret")
	}
	if _, err := NewIssuer(testSecret, ""); err == nil {
		t.Fatal("NewIssuer accepted an empty issuer")
	}
	secret := append([]byte(nil), testSecret...)
	i, err := NewIssuer(secret, "goim")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, _ := i.Issue(1, "", time.Hour)
	secret[0] ^= 0xff // the caller's slice is copied
	if _, err := i.Verify(tok); err != nil {
		t.Fatalf("Verify after the caller changed its secret slice: %v", err)
	}
}

func TestIssueVerify(t *testing.T) {
	i := newTestIssuer(t)
	before := time.Now()
	tok, exp, err := i.Issue(42, "dev-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if exp.Before(before.Add(time.Hour-2*time.Second)) || exp.After(before.Add(time.Hour+time.Second)) {
		t.Fatalf("expiresAt %v not an hour from now", exp)
	}
	c, err := i.Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.UserID != 42 || c.DeviceID != "dev-1" || !c.ExpiresAt.Equal(exp) {
		t.Fatalf("claims = %+v, want user 42 dev-1 exp %v", c, exp)
	}
	tok2, _, _ := i.Issue(42, "dev-1", time.Hour)
	if tok2 == tok {
		t.Fatal("two tokens are identical: jti missing")
	}
}

func TestIssueRefuses(t *testing.T) {
	i := newTestIssuer(t)
	tests := []struct {
		name string
		uid  int64
		dev  string
		ttl  time.Duration
	}{
		{"zero user", 0, "", time.Hour},
		{"negative user", -1, "", time.Hour},
		{"zero ttl", 1, "", 0},
		{"negative ttl", 1, "", -time.Second},
		{"long device", 1, strings.Repeat("d", MaxDeviceIDLen+1), time.Hour},
		{"invalid utf8 device", 1, "\xff", time.Hour},
	}
	for _, tt := range tests {
		if _, _, err := i.Issue(tt.uid, tt.dev, tt.ttl); err == nil {
			t.Errorf("%s: Issue succeeded", tt.name)
		}
	}
}

// sign builds a token with arbitrary claims and method.
func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claimsAt(now time.Time, mut func(*jwt.RegisteredClaims)) jwt.RegisteredClaims {
	c := jwt.RegisteredClaims{
		Issuer:    "goim-test",
		Subject:   "7",
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
	}
	if mut != nil {
		mut(&c)
	}
	return c
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestVerifyRefuses(t *testing.T) {
	i := newTestIssuer(t)
	now := time.Now()
	good := sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(now, nil))
	if _, err := i.Verify(good); err != nil {
		t.Fatalf("control token refused: %v", err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")

	// alg confusion: header says RS256, signature is HMAC-SHA256 with our secret.
	confHeader := b64(`{"alg":"RS256","typ":"JWT"}`)
	mac := hmac.New(sha256.New, testSecret)
	mac.Write([]byte(confHeader + "." + parts[1]))
	confused := confHeader + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))

	tamperedPayload := parts[0] + "." + b64(`{"iss":"goim-test","sub":"1","exp":`+
		strconv.FormatInt(now.Add(time.Hour).Unix(), 10)+`}`) + "." + parts[2]
	sig := []byte(parts[2])
	if sig[3] == 'A' {
		sig[3] = 'B'
	} else {
		sig[3] = 'A'
	}
	tamperedSig := parts[0] + "." + parts[1] + "." + string(sig)

	tests := []struct {
		name  string
		token string
		is    error // an error the chain must hold besides ErrInvalidToken
	}{
		{"empty", "", nil},
		{"garbage", "not.a.jwt", nil},
		{"two parts", parts[0] + "." + parts[1], jwt.ErrTokenMalformed},
		{"too long", good + strings.Repeat("A", MaxTokenLen), nil},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsAt(now, nil)), jwt.ErrTokenSignatureInvalid},
		{"alg none handmade", b64(`{"alg":"none"}`) + "." + parts[1] + ".", jwt.ErrTokenSignatureInvalid},
		{"alg NONE", b64(`{"alg":"NONE"}`) + "." + parts[1] + ".", nil},
		{"RS256", sign(t, jwt.SigningMethodRS256, rsaKey, claimsAt(now, nil)), jwt.ErrTokenSignatureInvalid},
		{"RS256 header with HMAC signature", confused, jwt.ErrTokenSignatureInvalid},
		{"HS512 same secret", sign(t, jwt.SigningMethodHS512, testSecret, claimsAt(now, nil)), jwt.ErrTokenSignatureInvalid},
		{"HS384 same secret", sign(t, jwt.SigningMethodHS384, testSecret, claimsAt(now, nil)), jwt.ErrTokenSignatureInvalid},
		{"other secret", sign(t, jwt.SigningMethodHS256, []byte("ffffffffffffffffffffffffffffffff"), claimsAt(now, nil)), jwt.ErrTokenSignatureInvalid},
		{"tampered signature", tamperedSig, jwt.ErrTokenSignatureInvalid},
		{"tampered payload", tamperedPayload, jwt.ErrTokenSignatureInvalid},
		{"expired", sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(now, func(c *jwt.RegisteredClaims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(-2 * time.Hour))
			c.NotBefore = c.IssuedAt
			c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute))
		})), jwt.ErrTokenExpired},
		{"no expiry", sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(now, func(c *jwt.RegisteredClaims) {
			c.ExpiresAt = nil
		})), jwt.ErrTokenRequiredClaimMissing},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(now, func(c *jwt.RegisteredClaims) {
			c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute))
		})), jwt.ErrTokenNotValidYet},
		{"issued in the future", sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(now, func(c *jwt.RegisteredClaims) {
			c.IssuedAt = jwt.NewNumericDate(now.Add(time.Minute))
		})), jwt.ErrTokenUsedBeforeIssued},
		{"wrong issuer", sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(now, func(c *jwt.RegisteredClaims) {
			c.Issuer = "someone-else"
		})), jwt.ErrTokenInvalidIssuer},
		{"no issuer", sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(now, func(c *jwt.RegisteredClaims) {
			c.Issuer = ""
		})), jwt.ErrTokenRequiredClaimMissing},
		{"missing subject", sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(now, func(c *jwt.RegisteredClaims) {
			c.Subject = ""
		})), nil},
		{"non-numeric subject", sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(now, func(c *jwt.RegisteredClaims) {
			c.Subject = "alice"
		})), nil},
		{"zero subject", sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(now, func(c *jwt.RegisteredClaims) {
			c.Subject = "0"
		})), nil},
		{"negative subject", sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(now, func(c *jwt.RegisteredClaims) {
			c.Subject = "-7"
		})), nil},
		{"padded subject", sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(now, func(c *jwt.RegisteredClaims) {
			c.Subject = "007"
		})), nil},
		{"overflowing subject", sign(t, jwt.SigningMethodHS256, testSecret, claimsAt(now, func(c *jwt.RegisteredClaims) {
			c.Subject = "99999999999999999999"
		})), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := i.Verify(tt.token)
			if err == nil {
				t.Fatalf("Verify accepted it: %+v", c)
			}
			if !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("error %v does not wrap ErrInvalidToken", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("error %v does not wrap %v", err, tt.is)
			}
		})
	}
}

func TestVerifyLeewayAndClock(t *testing.T) {
	i := newTestIssuer(t)
	base := time.Unix(1_800_000_000, 0)
	i.now = func() time.Time { return base }
	tok, exp, err := i.Issue(5, "d", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		at time.Time
		ok bool
	}{
		{base, true},
		{base.Add(-Leeway / 2), true},  // small skew: still valid
		{base.Add(-2 * Leeway), false}, // not yet valid
		{exp.Add(Leeway / 2), true},    // within leeway after expiry
		{exp.Add(Leeway + time.Second), false},
	}
	for _, tt := range tests {
		i.now = func() time.Time { return tt.at }
		_, err := i.Verify(tok)
		if (err == nil) != tt.ok {
			t.Errorf("at %v: Verify err = %v, want ok=%v", tt.at.Sub(base), err, tt.ok)
		}
	}
}

func FuzzVerify(f *testing.F) {
	i, err := NewIssuer(testSecret, "goim-test")
	if err != nil {
		f.Fatal(err)
	}
	tok, _, _ := i.Issue(1, "dev", time.Hour)
	f.Add(tok)
	f.Add("")
	f.Add("a.b.c")
	f.Add(b64(`{"alg":"none"}`) + "." + b64(`{"sub":"1"}`) + ".")
	f.Add(b64(`{"alg":"HS256"}`) + "." + b64(`{"sub":"1","exp":"x","nbf":[1]}`) + ".AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := i.Verify(s)
		if err == nil && (c == nil || c.UserID <= 0) {
			t.Fatalf("Verify(%q) accepted bad claims %+v", s, c)
		}
		if err != nil && !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("Verify(%q) error %v does not wrap ErrInvalidToken", s, err)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	i := newTestIssuer(b)
	tok, _, _ := i.Issue(1, "dev", time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := i.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
