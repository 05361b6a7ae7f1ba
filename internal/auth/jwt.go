package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// JWT limits and defaults.
const (
	// MinSecretLen is the shortest HS256 secret NewIssuer accepts.
	MinSecretLen = 32
	// MaxTokenLen bounds the tokens Verify parses; longer ones are refused
	// without decoding.
	MaxTokenLen = 4096
	// MaxDeviceIDLen bounds the device id carried in a token.
	MaxDeviceIDLen = 128
	// Leeway is the clock skew tolerated on exp, nbf and iat.
	Leeway = 10 * time.Second
)

// ErrInvalidToken is wrapped by every Verify failure; the jwt package's
// errors (jwt.ErrTokenExpired, jwt.ErrTokenSignatureInvalid, ...) stay in the
// chain for errors.Is.
var ErrInvalidToken = errors.New("auth: invalid token")

// Claims are the verified contents of a token.
type Claims struct {
	UserID    int64
	DeviceID  string
	ExpiresAt time.Time
}

// tokenClaims is the JWT payload: the registered claims plus the device id.
// The user id travels as the decimal subject.
type tokenClaims struct {
	jwt.RegisteredClaims
	DeviceID string `json:"did,omitempty"`
}

// Issuer issues and verifies HS256 tokens with one secret. It is safe for
// concurrent use.
type Issuer struct {
	secret []byte
	issuer string
	now    func() time.Time
	parser *jwt.Parser
}

// NewIssuer returns an Issuer signing with secret (at least MinSecretLen
// bytes) and naming issuer in the iss claim (required on verification).
func NewIssuer(secret []byte, issuer string) (*Issuer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("auth: jwt secret is %d bytes, need at least %d", len(secret), MinSecretLen)
	}
	if issuer == "" {
		return nil, errors.New("auth: empty jwt issuer")
	}
	i := &Issuer{secret: append([]byte(nil), secret...), issuer: issuer, now: time.Now}
	i.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(issuer),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return i.now() }),
	)
	return i, nil
}

// Issue returns a token for userID on deviceID valid for ttl, and its expiry.
func (i *Issuer) Issue(userID int64, deviceID string, ttl time.Duration) (token string, expiresAt time.Time, err error) {
	if userID <= 0 {
		return "", time.Time{}, fmt.Errorf("auth: issue: bad user id %d", userID)
	}
	if ttl <= 0 {
		return "", time.Time{}, fmt.Errorf("auth: issue: non-positive ttl %v", ttl)
	}
	if len(deviceID) > MaxDeviceIDLen || !utf8.ValidString(deviceID) {
		return "", time.Time{}, errors.New("auth: issue: bad device id")
	}
	var jti [12]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("auth: issue: random: %w", err)
	}
	now := i.now().Truncate(time.Second)
	expiresAt = now.Add(ttl).Truncate(time.Second)
	c := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.issuer,
			Subject:   strconv.FormatInt(userID, 10),
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(expiresAt),
			ID:        hex.EncodeToString(jti[:]),
		},
		DeviceID: deviceID,
	}
	token, err = jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(i.secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign: %w", err)
	}
	return token, expiresAt, nil
}

// Verify checks token and returns its claims. It refuses any algorithm but
// HS256 (alg none included), a bad signature, a token that is expired, not yet
// valid, issued in the future, without expiry, with another issuer, or
// without a positive numeric subject. Every error wraps ErrInvalidToken.
func (i *Issuer) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: empty", ErrInvalidToken)
	}
	if len(token) > MaxTokenLen {
		return nil, fmt.Errorf("%w: too long", ErrInvalidToken)
	}
	var c tokenClaims
	if _, err := i.parser.ParseWithClaims(token, &c, i.key); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: missing subject", ErrInvalidToken)
	}
	uid, err := strconv.ParseInt(c.Subject, 10, 64)
	if err != nil || uid <= 0 || strconv.FormatInt(uid, 10) != c.Subject {
		return nil, fmt.Errorf("%w: bad subject", ErrInvalidToken)
	}
	if len(c.DeviceID) > MaxDeviceIDLen {
		return nil, fmt.Errorf("%w: bad device id", ErrInvalidToken)
	}
	return &Claims{UserID: uid, DeviceID: c.DeviceID, ExpiresAt: c.ExpiresAt.Time}, nil
}

func (i *Issuer) key(t *jwt.Token) (any, error) {
	// WithValidMethods already refused every other alg; check the type too so
	// that a future option change cannot hand the secret to another method.
	if _, ok := t.Method.(*jwt.SigningMethodHMAC); !ok || t.Method.Alg() != jwt.SigningMethodHS256.Alg() {
		return nil, fmt.Errorf("unexpected signing method %v", t.Header["alg"])
	}
	return i.secret, nil
}
