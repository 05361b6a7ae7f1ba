package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Password errors.
var (
	// ErrPasswordMismatch means the password does not match the hash.
	ErrPasswordMismatch = errors.New("auth: password does not match")
	// ErrMalformedHash means a stored hash cannot be parsed or has
	// parameters outside the accepted range.
	ErrMalformedHash = errors.New("auth: malformed password hash")
	// ErrPasswordTooLong means the password exceeds MaxPasswordBytes.
	ErrPasswordTooLong = errors.New("auth: password too long")
)

// MaxPasswordBytes bounds the input of a hash computation.
const MaxPasswordBytes = 1024

// Bounds on the parameters read back from a stored hash, so that a corrupted
// or hostile row cannot make a verification allocate gigabytes or spin.
const (
	maxMemoryKiB = 1 << 20 // 1 GiB
	maxTime      = 64
	maxThreads   = 64
	maxSaltLen   = 64
	maxKeyLen    = 128
	minSaltLen   = 8
	minKeyLen    = 16
)

// PasswordParams are the argon2id parameters of new hashes. Each hash
// records its own parameters, so they can change at any time: old hashes
// still verify, and NeedsRehash reports them.
type PasswordParams struct {
	// Time is the number of passes over memory. Default 2.
	Time uint32 `yaml:"time"`
	// MemoryKiB is the memory cost in KiB. Default 19456 (19 MiB, the
	// OWASP minimum for argon2id with Time 2).
	MemoryKiB uint32 `yaml:"memory_kib"`
	// Threads is the parallelism degree. Default 1.
	Threads uint8 `yaml:"threads"`
	// SaltLen is the random salt length in bytes. Default 16.
	SaltLen uint32 `yaml:"salt_len"`
	// KeyLen is the derived key length in bytes. Default 32.
	KeyLen uint32 `yaml:"key_len"`
	// Concurrency bounds the hash computations running at once (each holds
	// MemoryKiB of memory); callers beyond it wait, or give up when their
	// context ends. Default 4.
	Concurrency int `yaml:"concurrency"`
}

// DefaultPasswordParams returns the production parameters.
func DefaultPasswordParams() PasswordParams {
	return PasswordParams{Time: 2, MemoryKiB: 19 * 1024, Threads: 1, SaltLen: 16, KeyLen: 32, Concurrency: 4}
}

// TestPasswordParams returns cheap parameters for tests (about a millisecond
// per hash). Never use them in production.
func TestPasswordParams() PasswordParams {
	return PasswordParams{Time: 1, MemoryKiB: 64, Threads: 1, SaltLen: 16, KeyLen: 32, Concurrency: 4}
}

func (p PasswordParams) withDefaults() PasswordParams {
	d := DefaultPasswordParams()
	if p.Time == 0 {
		p.Time = d.Time
	}
	if p.MemoryKiB == 0 {
		p.MemoryKiB = d.MemoryKiB
	}
	if p.Threads == 0 {
		p.Threads = d.Threads
	}
	if p.SaltLen == 0 {
		p.SaltLen = d.SaltLen
	}
	if p.KeyLen == 0 {
		p.KeyLen = d.KeyLen
	}
	if p.Concurrency <= 0 {
		p.Concurrency = d.Concurrency
	}
	return p
}

func (p PasswordParams) validate() error {
	switch {
	case p.Time > maxTime:
		return fmt.Errorf("auth: argon2 time %d > %d", p.Time, maxTime)
	case p.Threads > maxThreads:
		return fmt.Errorf("auth: argon2 threads %d > %d", p.Threads, maxThreads)
	case p.MemoryKiB > maxMemoryKiB:
		return fmt.Errorf("auth: argon2 memory %d KiB > %d", p.MemoryKiB, maxMemoryKiB)
	case p.MemoryKiB < 8*uint32(p.Threads):
		return fmt.Errorf("auth: argon2 memory %d KiB < 8*threads", p.MemoryKiB)
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Errorf("auth: salt length %d outside [%d,%d]", p.SaltLen, minSaltLen, maxSaltLen)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("auth: key length %d outside [%d,%d]", p.KeyLen, minKeyLen, maxKeyLen)
	}
	return nil
}

// PasswordHasher hashes and verifies passwords with argon2id, encoded in the
// PHC string format:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt, base64 raw std>$<key, base64 raw std>
//
// It bounds the computations running at once. It is safe for concurrent use.
type PasswordHasher struct {
	params PasswordParams
	sem    chan struct{}
	dummy  string // a hash of a random password, for DummyVerify
}

// NewPasswordHasher returns a hasher creating hashes with p (zero fields take
// their defaults).
func NewPasswordHasher(p PasswordParams) (*PasswordHasher, error) {
	p = p.withDefaults()
	if err := p.validate(); err != nil {
		return nil, err
	}
	h := &PasswordHasher{params: p, sem: make(chan struct{}, p.Concurrency)}
	pw := make([]byte, 16)
	if _, err := rand.Read(pw); err != nil {
		return nil, fmt.Errorf("auth: random: %w", err)
	}
	dummy, err := h.hash(pw)
	if err != nil {
		return nil, err
	}
	h.dummy = dummy
	return h, nil
}

// Params returns the parameters of new hashes.
func (h *PasswordHasher) Params() PasswordParams { return h.params }

func (h *PasswordHasher) acquire(ctx context.Context) error {
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("auth: waiting for a hash slot: %w", ctx.Err())
	}
}

func (h *PasswordHasher) release() { <-h.sem }

// Hash returns the encoded argon2id hash of password with a fresh salt.
func (h *PasswordHasher) Hash(ctx context.Context, password string) (string, error) {
	if len(password) > MaxPasswordBytes {
		return "", ErrPasswordTooLong
	}
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	return h.hash([]byte(password))
}

func (h *PasswordHasher) hash(password []byte) (string, error) {
	p := h.params
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: random salt: %w", err)
	}
	key := argon2.IDKey(password, salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen)
	return encodeHash(p, salt, key), nil
}

func encodeHash(p PasswordParams, salt, key []byte) string {
	var b strings.Builder
	b.Grow(48 + base64.RawStdEncoding.EncodedLen(len(salt)) + base64.RawStdEncoding.EncodedLen(len(key)))
	b.WriteString("$argon2id$v=")
	b.WriteString(strconv.Itoa(argon2.Version))
	b.WriteString("$m=")
	b.WriteString(strconv.FormatUint(uint64(p.MemoryKiB), 10))
	b.WriteString(",t=")
	b.WriteString(strconv.FormatUint(uint64(p.Time), 10))
	b.WriteString(",p=")
	b.WriteString(strconv.FormatUint(uint64(p.Threads), 10))
	b.WriteByte('$')
	b.WriteString(base64.RawStdEncoding.EncodeToString(salt))
	b.WriteByte('$')
	b.WriteString(base64.RawStdEncoding.EncodeToString(key))
	return b.String()
}

type decodedHash struct {
	params PasswordParams
	salt   []byte
	key    []byte
}

func decodeHash(encoded string) (decodedHash, error) {
	var d decodedHash
	if len(encoded) > 512 {
		return d, ErrMalformedHash
	}
	parts := strings.Split(encoded, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return d, ErrMalformedHash
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return d, fmt.Errorf("%w: unsupported version %q", ErrMalformedHash, parts[2])
	}
	var seen [3]bool
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return d, ErrMalformedHash
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return d, ErrMalformedHash
		}
		switch k {
		case "m":
			d.params.MemoryKiB, seen[0] = uint32(n), true
		case "t":
			d.params.Time, seen[1] = uint32(n), true
		case "p":
			if n > maxThreads {
				return d, ErrMalformedHash
			}
			d.params.Threads, seen[2] = uint8(n), true
		default:
			return d, ErrMalformedHash
		}
	}
	if !seen[0] || !seen[1] || !seen[2] || d.params.Time == 0 || d.params.Threads == 0 {
		return d, ErrMalformedHash
	}
	var err error
	if d.salt, err = base64.RawStdEncoding.Strict().DecodeString(parts[4]); err != nil {
		return d, ErrMalformedHash
	}
	if d.key, err = base64.RawStdEncoding.Strict().DecodeString(parts[5]); err != nil {
		return d, ErrMalformedHash
	}
	d.params.SaltLen, d.params.KeyLen = uint32(len(d.salt)), uint32(len(d.key))
	if err := d.params.validate(); err != nil {
		return d, fmt.Errorf("%w: %w", ErrMalformedHash, err)
	}
	return d, nil
}

// Verify checks password against an encoded hash made by Hash (with any
// parameters). It returns nil on a match, ErrPasswordMismatch when the
// password is wrong, ErrMalformedHash for an unreadable hash, or the
// context's error while waiting for a slot. The comparison is constant-time.
func (h *PasswordHasher) Verify(ctx context.Context, encoded, password string) error {
	d, err := decodeHash(encoded)
	if err != nil {
		return err
	}
	if len(password) > MaxPasswordBytes {
		return ErrPasswordMismatch
	}
	if err := h.acquire(ctx); err != nil {
		return err
	}
	defer h.release()
	key := argon2.IDKey([]byte(password), d.salt, d.params.Time, d.params.MemoryKiB, d.params.Threads, uint32(len(d.key)))
	if subtle.ConstantTimeCompare(key, d.key) != 1 {
		return ErrPasswordMismatch
	}
	return nil
}

// DummyVerify spends the time of a Verify against a hash of the current
// parameters and always fails. Call it for unknown users so that a login
// answer's timing does not tell whether the user exists.
func (h *PasswordHasher) DummyVerify(ctx context.Context, password string) error {
	if err := h.Verify(ctx, h.dummy, password); err != nil && !errors.Is(err, ErrPasswordMismatch) {
		return err
	}
	return ErrPasswordMismatch
}

// NeedsRehash reports whether encoded was made with parameters other than
// the hasher's (or cannot be read), so that a caller may store a new hash
// after a successful login.
func (h *PasswordHasher) NeedsRehash(encoded string) bool {
	d, err := decodeHash(encoded)
	if err != nil {
		return true
	}
	p := h.params
	return d.params.Time != p.Time || d.params.MemoryKiB != p.MemoryKiB || d.params.Threads != p.Threads ||
		d.params.SaltLen != p.SaltLen || d.params.KeyLen != p.KeyLen
}
